"""A store's identity (DESIGN.md §2, Membership): a new incarnation with every store file, a
cluster id and genesis written once, and a store of the first schema kept, not reset."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from paxlock.coordinator.core import membership
from paxlock.coordinator.core.ballot import Ballot
from paxlock.coordinator.core.messages import Member, PromiseRecord
from paxlock.persistence import CorruptStore, ForeignStore, SqliteStore
from paxlock.persistence.schema import MIGRATIONS

GENESIS = membership.genesis([Member("n1", "i1", "http://a:1"), Member("n2", "i2", "http://b:2")])
CLUSTER = membership.cluster_id_of(GENESIS)


async def test_a_new_store_has_a_fresh_incarnation_and_no_cluster(tmp_path: Path) -> None:
    incarnations = set()
    for name in ("a", "b"):
        async with await SqliteStore.open(tmp_path / name, node_id="n1") as store:
            assert store.cluster_id is None and store.load().durable.genesis is None
            assert len(store.incarnation) == 32 and int(store.incarnation, 16) >= 0
            incarnations.add(store.incarnation)
    assert len(incarnations) == 2, "the same member id, another store: another incarnation"
    async with await SqliteStore.open(tmp_path / "a", node_id="n1") as again:
        assert again.incarnation in incarnations, "reopening keeps it"


async def test_bootstrap_is_written_once_and_survives_a_reopen(tmp_path: Path) -> None:
    async with await SqliteStore.open(tmp_path, node_id="n1") as store:
        await store.bootstrap(CLUSTER, GENESIS)
        await store.bootstrap(CLUSTER, GENESIS)  # the same again: a no-op
        other = membership.genesis([Member("n1", "i1", "http://a:1")])
        with pytest.raises(ForeignStore, match=f"already bootstrapped into cluster {CLUSTER}"):
            await store.bootstrap(membership.cluster_id_of(other), other)
        with pytest.raises(ValueError, match="not the digest"):
            await store.bootstrap("0" * 32, GENESIS)
        assert store.load().durable.genesis == GENESIS
    async with await SqliteStore.open(tmp_path, node_id="n1", cluster_id=CLUSTER) as store:
        assert (store.cluster_id, store.load().durable.genesis) == (CLUSTER, GENESIS)
    with pytest.raises(ForeignStore, match=f"belongs to cluster {CLUSTER}, not cluster 'x'"):
        await SqliteStore.open(tmp_path, node_id="n1", cluster_id="x")


async def test_a_forged_cluster_id_in_the_file_is_corruption(tmp_path: Path) -> None:
    async with await SqliteStore.open(tmp_path, node_id="n1") as store:
        await store.bootstrap(CLUSTER, GENESIS)
    with closing(sqlite3.connect(tmp_path / "paxlock.db")) as db, db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'cluster_id'", ("f" * 32,))
    with pytest.raises(CorruptStore, match="is not its genesis's digest"):
        await SqliteStore.open(tmp_path, node_id="n1")


async def test_a_first_schema_store_keeps_its_state_and_counts_as_legacy(tmp_path: Path) -> None:
    """Not silently reset: its promise is still there, it gets an incarnation, and it is
    not bootstrapped (``legacy``: it bootstraps only with every other such member)."""
    async with await SqliteStore.open(tmp_path, node_id="n1",
                                      migrations=MIGRATIONS[:1]) as old:  # fmt: skip
        await old.append([PromiseRecord(Ballot(7, "n2"))])
    with closing(sqlite3.connect(tmp_path / "paxlock.db")) as db, db:  # as version 1 wrote it
        db.execute("DELETE FROM meta WHERE key = 'incarnation'")
        db.execute("INSERT INTO meta VALUES ('cluster_id', 'paxlock')")
    async with await SqliteStore.open(tmp_path, node_id="n1") as store:
        assert store.load().durable.promised == Ballot(7, "n2")
        assert store.cluster_id is None and store.identity.legacy
        assert len(store.incarnation) == 32
        first = store.incarnation
        await store.bootstrap(CLUSTER, GENESIS)
    async with await SqliteStore.open(tmp_path, node_id="n1") as store:
        assert store.incarnation == first and not store.identity.legacy
        assert store.cluster_id == CLUSTER
