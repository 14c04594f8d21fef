"""A store refuses to open — with a typed, one-line error and without touching the file — when
the data dir is in use, belongs to someone else, is newer than this code, or is corrupt."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from contextlib import closing
import sys
from pathlib import Path

import pytest

from paxlock.coordinator.core.ballot import Ballot
from paxlock.coordinator.core import membership
from paxlock.coordinator.core.messages import (
    NOOP, AcceptRecord, ChosenRecord, Member, PromiseRecord,
)  # fmt: skip
from paxlock.persistence import (
    CorruptStore,
    ForeignStore,
    SqliteStore,
    StoreError,
    StoreLocked,
    UnknownSchema,
)

NODE = "n1"
GENESIS = membership.genesis([Member(NODE, "i1", "http://127.0.0.1:1")])
CLUSTER = membership.cluster_id_of(GENESIS)


def fingerprint(data_dir: Path) -> dict[str, bytes]:
    """The bytes of the database and its WAL (the -shm index and the lock file are not data:
    a read-only reader may rebuild the former)."""
    return {
        p.name: p.read_bytes()
        for p in sorted(data_dir.iterdir())
        if p.name in ("paxlock.db", "paxlock.db-wal")
    }


async def make_store(data_dir: Path, slots: int = 50) -> None:
    async with await SqliteStore.open(data_dir, node_id=NODE) as store:
        await store.bootstrap(CLUSTER, GENESIS)
        await store.append([PromiseRecord(Ballot(1, NODE))])
        await store.append(
            [AcceptRecord(s, Ballot(1, NODE), NOOP) for s in range(1, slots + 1)]
            + [ChosenRecord(s, NOOP) for s in range(1, slots + 1)]
        )


async def refused(
    data_dir: Path, error: type[StoreError], match: str, *, node: str = NODE,
    cluster: str | None = None,
) -> StoreError:
    before = fingerprint(data_dir)
    with pytest.raises(error, match=match) as caught:
        await SqliteStore.open(data_dir, node_id=node, cluster_id=cluster)
    message = str(caught.value)
    assert "\n" not in message and str(data_dir) in message
    assert fingerprint(data_dir) == before, "a refused file must be left as it was"
    return caught.value


async def test_another_node_id_is_refused(tmp_path: Path) -> None:
    await make_store(tmp_path)
    await refused(tmp_path, ForeignStore, "belongs to node 'n1'.*not node 'n2'", node="n2")


async def test_another_cluster_id_is_refused(tmp_path: Path) -> None:
    await make_store(tmp_path)
    await refused(tmp_path, ForeignStore, f"belongs to cluster {CLUSTER}, not cluster 'c9'",
                  cluster="c9")


async def test_a_foreign_store_with_an_unmerged_wal_is_refused_untouched(tmp_path: Path) -> None:
    """A copy of a live store: its latest commits are still only in the WAL."""
    live, copy = tmp_path / "live", tmp_path / "copy"
    await make_store(live)
    async with await SqliteStore.open(live, node_id=NODE, cluster_id=CLUSTER) as store:
        await store.append([PromiseRecord(Ballot(2, NODE))])
        copy.mkdir()
        for name in ("paxlock.db", "paxlock.db-wal"):
            shutil.copyfile(live / name, copy / name)
    assert (copy / "paxlock.db-wal").stat().st_size > 0
    await refused(copy, ForeignStore, "belongs to node", node="n2")


async def test_a_sqlite_file_of_another_application_is_refused(tmp_path: Path) -> None:
    with closing(sqlite3.connect(tmp_path / "paxlock.db")) as db, db:
        db.execute("CREATE TABLE t (x)")
    await refused(tmp_path, ForeignStore, "not a paxlock store")


async def test_a_newer_schema_version_is_refused(tmp_path: Path) -> None:
    await make_store(tmp_path)
    with closing(sqlite3.connect(tmp_path / "paxlock.db")) as db, db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    await refused(tmp_path, UnknownSchema, "schema version 99 is newer")


@pytest.mark.parametrize(
    "content", [b"", b"SQLite", b"this is not a database\n" * 100], ids=["empty", "short", "text"]
)
async def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "paxlock.db").write_bytes(content)
    await refused(tmp_path, CorruptStore, "not a SQLite database")


async def test_a_wal_whose_database_is_gone_is_refused(tmp_path: Path) -> None:
    live = tmp_path / "live"
    await make_store(live)
    async with await SqliteStore.open(live, node_id=NODE, cluster_id=CLUSTER) as store:
        await store.append([PromiseRecord(Ballot(2, NODE))])
        shutil.copyfile(live / "paxlock.db-wal", tmp_path / "paxlock.db-wal")
    await refused(tmp_path, CorruptStore, "missing, but its WAL paxlock.db-wal exists")
    assert not (tmp_path / "paxlock.db").exists()


async def test_a_damaged_page_is_refused(tmp_path: Path) -> None:
    await make_store(tmp_path, slots=400)
    db_path = tmp_path / "paxlock.db"
    data = bytearray(db_path.read_bytes())
    page_size = int.from_bytes(data[16:18], "big")
    assert len(data) >= 6 * page_size
    for page in range(2, len(data) // page_size):  # every b-tree page but the first
        start = page * page_size + 8
        data[start : start + 64] = b"\xa5" * 64
    db_path.write_bytes(bytes(data))
    await refused(tmp_path, CorruptStore, "integrity check failed|unreadable|malformed")


async def test_a_store_missing_its_identity_is_refused(tmp_path: Path) -> None:
    await make_store(tmp_path)
    with closing(sqlite3.connect(tmp_path / "paxlock.db")) as db, db:
        db.execute("DELETE FROM meta WHERE key = 'node_id'")
    await refused(tmp_path, CorruptStore, "meta table incomplete")


async def test_a_row_that_does_not_decode_is_refused(tmp_path: Path) -> None:
    await make_store(tmp_path)
    with closing(sqlite3.connect(tmp_path / "paxlock.db")) as db, db:
        db.execute("UPDATE accepted SET value = x'c1' WHERE slot = 7")
    await refused(tmp_path, CorruptStore, "accepted slot 7 does not decode")


async def test_a_data_dir_in_use_in_this_process_is_refused(tmp_path: Path) -> None:
    async with await SqliteStore.open(tmp_path, node_id=NODE, cluster_id=CLUSTER):
        await refused(tmp_path, StoreLocked, "in use by another live store")
    async with await SqliteStore.open(tmp_path, node_id=NODE, cluster_id=CLUSTER):
        pass  # released on close


HOLDER = """
import asyncio, sys
from paxlock.persistence import SqliteStore
async def main():
    async with await SqliteStore.open(sys.argv[1], node_id="n1"):
        print("open", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
asyncio.run(main())
"""


async def test_a_data_dir_in_use_by_another_process_is_refused(tmp_path: Path) -> None:
    await make_store(tmp_path)
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, str(tmp_path),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert await asyncio.wait_for(holder.stdout.readline(), 30) == b"open\n"
        error = await refused(tmp_path, StoreLocked, "in use by another live store")
        assert f"pid {holder.pid}" in str(error)
        holder.stdin.close()
        assert await asyncio.wait_for(holder.wait(), 30) == 0
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()
    async with await SqliteStore.open(tmp_path, node_id=NODE, cluster_id=CLUSTER) as store:
        assert store.load().durable.promised == Ballot(1, NODE)
