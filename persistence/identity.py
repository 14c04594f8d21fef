"""A store's identity: its member incarnation, and the cluster it was bootstrapped into.

The incarnation is made when the store file is created (``opening.create``), so a store
that is lost and made again under the same member id is a new incarnation, which no
configuration lists (DESIGN.md §2, Membership). The cluster id and the genesis
configuration are written once, by ``write_bootstrap``; a store without them is either new
(``legacy`` False) or was made by a paxlock before member identity (``legacy`` True: it
holds acceptor state, so it may bootstrap only together with every other such member).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import aiosqlite
import msgspec

from paxlock.coordinator.core.membership import cluster_id_of
from paxlock.coordinator.core.messages import Configuration
from paxlock.persistence.errors import CorruptStore, ForeignStore

_genesis_decoder = msgspec.msgpack.Decoder(Configuration)


@dataclass(frozen=True, slots=True)
class StoreIdentity:
    incarnation: str
    cluster_id: str | None
    genesis: Configuration | None
    legacy: bool
    """Made by schema version 1 and not bootstrapped since: it holds state, but no cluster id."""


def encode_genesis(genesis: Configuration) -> str:
    return msgspec.msgpack.encode(genesis).hex()


def decode_genesis(text: str) -> Configuration:
    return _genesis_decoder.decode(bytes.fromhex(text))


async def read_identity(db: aiosqlite.Connection, db_path: Path) -> StoreIdentity:
    """The identity rows of ``meta`` (after migration), checked: a cluster id and a genesis go
    together, and the id is the genesis's digest."""
    meta = {k: v for k, v in await db.execute_fetchall("SELECT key, value FROM meta")}
    cluster_id, genesis_text = meta.get("cluster_id"), meta.get("genesis")
    if "incarnation" not in meta or (cluster_id is None) != (genesis_text is None):
        raise CorruptStore(f"{db_path}: meta table incomplete (identity)")
    genesis = None
    if genesis_text is not None:
        try:
            genesis = decode_genesis(genesis_text)
        except (ValueError, msgspec.DecodeError) as exc:
            raise CorruptStore(f"{db_path}: the genesis configuration does not decode") from exc
        if cluster_id_of(genesis) != cluster_id:
            raise CorruptStore(f"{db_path}: cluster id {cluster_id} is not its genesis's digest")
    legacy = cluster_id is None and "legacy_cluster_name" in meta
    return StoreIdentity(meta["incarnation"], cluster_id, genesis, legacy)


async def write_bootstrap(db: aiosqlite.Connection, db_path: Path, current: StoreIdentity,
                          cluster_id: str, genesis: Configuration) -> StoreIdentity:  # fmt: skip
    """Store the cluster id and genesis in one fsynced transaction (``synchronous=FULL``).
    The same values again are a no-op; different ones are refused (``ForeignStore``)."""
    if cluster_id_of(genesis) != cluster_id:
        raise ValueError(f"cluster id {cluster_id} is not the digest of the genesis given")
    if current.cluster_id is not None:
        if (current.cluster_id, current.genesis) != (cluster_id, genesis):
            raise ForeignStore(f"{db_path}: already bootstrapped into cluster "
                               f"{current.cluster_id}, not {cluster_id}")  # fmt: skip
        return current
    await db.execute("BEGIN IMMEDIATE")
    try:
        await db.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?)",
            [("cluster_id", cluster_id), ("genesis", encode_genesis(genesis))],
        )
        await db.execute("COMMIT")
    except BaseException:
        await db.execute("ROLLBACK")
        raise
    return StoreIdentity(current.incarnation, cluster_id, genesis, legacy=False)
