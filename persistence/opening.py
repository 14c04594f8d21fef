"""Opening a data dir safely: lock it, inspect the file read-only, create or migrate, load.

Every check that can refuse runs before anything writes to the database file: the lock is
taken on a separate file, the header is read with plain ``open()``, and the integrity and
identity checks run on a ``mode=ro`` connection. A refused file is left byte-for-byte as found.
"""

from __future__ import annotations

import errno
import fcntl
import os
import sqlite3
import uuid
from collections.abc import Sequence
from pathlib import Path

import aiosqlite
import msgspec

from paxlock.coordinator.core.ballot import ZERO_BALLOT
from paxlock.coordinator.core.messages import AcceptedEntry, Configuration, Value
from paxlock.coordinator.core.ready import DurableState
from paxlock.persistence.codec import Codec
from paxlock.persistence.errors import (
    CorruptStore,
    ForeignStore,
    MigrationFailed,
    StoreLocked,
    UnknownSchema,
)
from paxlock.persistence.schema import APPLICATION_ID, Migration
from paxlock.persistence.state import LoadedState, verify_loaded

SQLITE_MAGIC = b"SQLite format 3\x00"
SQLITE_HEADER_BYTES = 100


# --- the data dir lock ----------------------------------------------------------------------


def lock_data_dir(lock_path: Path) -> int:
    """Take an exclusive ``flock`` on ``lock_path`` for the store's lifetime; return its fd.

    ``flock`` belongs to the open file description, so the kernel drops it when the holder
    dies, even by SIGKILL: a stale lock file never blocks a restart. The holder's pid is
    written into the file only to make the refusal message useful.
    """
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise StoreLocked(
                f"{lock_path.parent}: data dir is in use by another live store (pid {holder})"
            ) from None
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def unlock_data_dir(fd: int) -> None:
    os.close(fd)  # closing the only descriptor releases the flock


# --- read-only inspection -------------------------------------------------------------------


def wal_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + "-wal")


def check_header(db_path: Path) -> None:
    """Refuse a file that is not a SQLite database before SQLite ever opens it.

    A WAL without its database is refused too: SQLite would replay it into whatever new
    database took the name, resurrecting another store's pages.
    """
    if not db_path.exists():
        raise CorruptStore(f"{db_path}: missing, but its WAL {wal_path(db_path).name} exists")
    with open(db_path, "rb") as f:
        header = f.read(SQLITE_HEADER_BYTES)
    if len(header) < SQLITE_HEADER_BYTES or not header.startswith(SQLITE_MAGIC):
        raise CorruptStore(f"{db_path}: not a SQLite database (no SQLite header)")


def _ro_uri(db_path: Path) -> str:
    """Read-only, and creating nothing: without a WAL file the database file holds the
    whole state, so it is opened ``immutable`` (otherwise SQLite would create an empty WAL and
    its index beside it); with one, SQLite must read it, and may rebuild only the -shm index.
    """
    uri = db_path.absolute().as_uri() + "?mode=ro"
    if not wal_path(db_path).exists():
        uri += "&immutable=1"
    return uri


def _rw_uri(db_path: Path) -> str:
    """``mode=rw`` never creates the file: a database that vanished is an error, not a reset."""
    return db_path.absolute().as_uri() + "?mode=rw"


async def inspect_read_only(db_path: Path, *, node_id: str, known_version: int) -> int:
    """Check integrity and identity on a read-only connection; return the schema version."""
    check_header(db_path)
    try:
        async with aiosqlite.connect(_ro_uri(db_path), uri=True) as db:
            problems = [row[0] for row in await db.execute_fetchall("PRAGMA quick_check(3)")]
            if problems != ["ok"]:
                summary = "; ".join(str(p) for p in problems).replace("\n", " ")
                raise CorruptStore(f"{db_path}: integrity check failed: {summary}")
            (app_id,) = next(iter(await db.execute_fetchall("PRAGMA application_id")))
            if app_id != APPLICATION_ID:
                raise ForeignStore(
                    f"{db_path}: not a paxlock store (SQLite application_id {app_id:#x})"
                )
            meta = {k: v for k, v in await db.execute_fetchall("SELECT key, value FROM meta")}
    except sqlite3.DatabaseError as exc:
        raise CorruptStore(f"{db_path}: unreadable: {exc}") from exc
    return _check_meta(db_path, meta, node_id, known_version)


def _check_meta(db_path: Path, meta: dict[str, str], node_id: str, known_version: int) -> int:
    """The node id must be this node's: which cluster the store belongs to is checked by
    the node (``SqliteStore.open``'s ``cluster_id``, and on every peer connection)."""
    try:
        version = int(meta["schema_version"])
        stored_node = meta["node_id"]
        if version >= 2 and "incarnation" not in meta:  # version 2 gave every store one
            raise KeyError("incarnation")
    except (KeyError, ValueError) as exc:
        raise CorruptStore(f"{db_path}: meta table incomplete ({exc!r})") from exc
    if version > known_version:
        raise UnknownSchema(
            f"{db_path}: schema version {version} is newer than this paxlock knows "
            f"({known_version}); upgrade paxlock"
        )
    if version < 1:
        raise CorruptStore(f"{db_path}: impossible schema version {version}")
    if stored_node != node_id:
        cluster = meta.get("cluster_id") or meta.get("legacy_cluster_name")
        of = f" of cluster {cluster!r}" if cluster else ""
        raise ForeignStore(f"{db_path}: belongs to node {stored_node!r}{of}, "
                           f"not node {node_id!r}")  # fmt: skip
    return version


# --- creation and migration -----------------------------------------------------------------


def _fsync_path(path: Path, *, directory: bool = False) -> None:
    fd = os.open(path, (os.O_RDONLY | os.O_DIRECTORY) if directory else os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def create(db_path: Path, *, node_id: str, migrations: Sequence[Migration]) -> None:
    """Build a new store beside its final name, then rename it into place. It gets a fresh
    incarnation and no cluster id: that is written once, by ``SqliteStore.bootstrap``.

    A crash at any point leaves either no store or a complete one: a half-built file only
    ever exists under the temporary name, which the next open deletes.
    """
    tmp = db_path.with_name(db_path.name + ".new")
    for leftover in (tmp, *(tmp.with_name(tmp.name + s) for s in ("-journal", "-wal", "-shm"))):
        leftover.unlink(missing_ok=True)
    async with aiosqlite.connect(str(tmp), isolation_level=None) as db:
        await db.execute("PRAGMA synchronous = FULL")
        await db.execute("BEGIN IMMEDIATE")
        await db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        for step in migrations:
            for statement in step:
                await db.execute(statement)
        await db.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?)",
            [
                ("node_id", node_id),
                ("incarnation", uuid.uuid4().hex),
                ("schema_version", str(len(migrations))),
            ],
        )
        await db.execute("COMMIT")
    _fsync_path(tmp)
    os.rename(tmp, db_path)
    _fsync_path(db_path.parent, directory=True)


async def connect_rw(db_path: Path) -> aiosqlite.Connection:
    """The store's one read-write connection.

    WAL with ``synchronous=FULL``: every COMMIT fsyncs the WAL before it returns, so a
    committed promise or acceptance survives power loss, not only a process crash (NORMAL
    would sync only at checkpoints and could lose the last commits, i.e. votes already
    reported to a proposer). WAL rather than a rollback journal because a commit is one
    sequential append and one fsync, instead of journal + database + directory syncs.
    """
    db = await aiosqlite.connect(_rw_uri(db_path), uri=True, isolation_level=None)
    try:
        (mode,) = next(iter(await db.execute_fetchall("PRAGMA journal_mode = WAL")))
        if str(mode).lower() != "wal":
            raise CorruptStore(f"{db_path}: cannot switch to WAL journal (got {mode!r})")
        await db.execute("PRAGMA synchronous = FULL")
        (sync,) = next(iter(await db.execute_fetchall("PRAGMA synchronous")))
        assert sync == 2, "synchronous=FULL must stick"
    except BaseException:
        await db.close()
        raise
    return db


async def migrate(
    db: aiosqlite.Connection, db_path: Path, version: int, migrations: Sequence[Migration]
) -> None:
    """Run the steps from ``version`` on, each in its own transaction with its version bump."""
    for index in range(version, len(migrations)):
        await db.execute("BEGIN IMMEDIATE")
        try:
            for statement in migrations[index]:
                await db.execute(statement)
            await db.execute(
                "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(index + 1),)
            )
            await db.execute("COMMIT")
        except sqlite3.Error as exc:
            await db.execute("ROLLBACK")
            raise MigrationFailed(
                f"{db_path}: migration to schema version {index + 1} failed and was rolled "
                f"back: {exc}"
            ) from exc


# --- loading --------------------------------------------------------------------------------


async def read_state(db: aiosqlite.Connection, db_path: Path, codec: Codec,
                     genesis: Configuration | None = None) -> LoadedState:  # fmt: skip
    """Read and decode every row; a row that does not decode is corruption, not a crash."""
    where = "promise"
    try:
        durable = DurableState(ZERO_BALLOT, {}, {}, genesis=genesis)
        for (blob,) in await db.execute_fetchall("SELECT ballot FROM promise WHERE id = 1"):
            durable.promised = codec.decode_ballot(blob)
        for slot, ballot_blob, value_blob in await db.execute_fetchall(
            "SELECT slot, ballot, value FROM accepted ORDER BY slot"
        ):
            where = f"accepted slot {slot}"
            ballot, value = codec.decode_ballot(ballot_blob), codec.decode_value(value_blob)
            durable.accepted[slot] = AcceptedEntry(slot, ballot, value)
        for slot, value_blob in await db.execute_fetchall(
            "SELECT slot, value FROM chosen ORDER BY slot"
        ):
            where = f"chosen slot {slot}"
            chosen: Value = codec.decode_value(value_blob)
            durable.chosen[slot] = chosen
        snapshot_slot, snapshot = 0, None
        for slot, data in await db.execute_fetchall("SELECT slot, data FROM snapshot"):
            snapshot_slot, snapshot = int(slot), bytes(data)
    except (msgspec.DecodeError, TypeError) as exc:
        raise CorruptStore(f"{db_path}: {where} does not decode: {exc}") from exc
    if (problem := verify_loaded(durable)) is not None:
        raise CorruptStore(f"{db_path}: {problem}")
    return LoadedState(durable, snapshot_slot, snapshot)
