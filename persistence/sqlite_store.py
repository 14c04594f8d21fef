"""Durable acceptor state, chosen log and snapshots on SQLite, with group commit.

The runtime's one hard rule (DESIGN.md §1) is that a promise or acceptance is on disk before
the reply reporting it leaves. ``append`` returns only once its records are committed with
fsync; appends that arrive while a commit is running are merged into the next transaction, so
many callers share one fsync (group commit) without any of them returning early.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from paxlock.coordinator.core.ballot import Ballot
from paxlock.coordinator.core.messages import (
    AcceptedEntry,
    AcceptRecord,
    ChosenRecord,
    Configuration,
    PromiseRecord,
    Record,
    Value,
)
from paxlock.persistence.codec import Codec
from paxlock.persistence.errors import ForeignStore, StoreClosed, StoreFailed, StoreOverloaded
from paxlock.persistence.identity import StoreIdentity, read_identity, write_bootstrap
from paxlock.persistence.opening import (
    connect_rw,
    create,
    inspect_read_only,
    lock_data_dir,
    migrate,
    read_state,
    unlock_data_dir,
    wal_path,
)
from paxlock.persistence.schema import MIGRATIONS, Migration
from paxlock.persistence.state import LoadedState, Mirror

T = TypeVar("T")
DB_NAME = "paxlock.db"
LOCK_NAME = "LOCK"


@dataclass(slots=True)
class StoreStats:
    """Counters for the runtime's metrics (batch sizes, fsync latency); never reset.
    ``appends`` counts completed calls (``save_snapshot`` and empty barriers included)."""

    appends: int = 0
    records: int = 0
    commits: int = 0
    commit_s_total: float = 0.0
    commit_s_max: float = 0.0


@dataclass(slots=True)
class _Op:
    """One ``append`` or ``save_snapshot`` call waiting for its commit."""

    records: tuple[Record, ...]
    snapshot: tuple[int, bytes] | None
    done: asyncio.Future[None]


@dataclass(slots=True)
class _Batch:
    """The net effect of several ops, in their order, as rows to write in one transaction."""

    promise: Ballot | None = None
    accepted: dict[int, AcceptedEntry] = field(default_factory=dict)
    chosen: dict[int, Value] = field(default_factory=dict)
    snapshot: tuple[int, bytes] | None = None

    @classmethod
    def of(cls, ops: Sequence[_Op]) -> _Batch:
        batch = cls()
        for op in ops:
            if op.snapshot is not None:  # later ops may write below it again: keep those
                batch.snapshot = op.snapshot
                upto = op.snapshot[0]
                batch.accepted = {s: e for s, e in batch.accepted.items() if s > upto}
                batch.chosen = {s: v for s, v in batch.chosen.items() if s > upto}
            for record in op.records:
                match record:
                    case PromiseRecord(ballot=ballot):
                        batch.promise = ballot
                    case AcceptRecord(slot=slot, ballot=ballot, value=value):
                        batch.accepted[slot] = AcceptedEntry(slot, ballot, value)
                    case ChosenRecord(slot=slot, value=value):
                        batch.chosen.setdefault(slot, value)
        return batch

    def empty(self) -> bool:
        return self.promise is None and not self.accepted and not self.chosen and (
            self.snapshot is None
        )


class SqliteStore:
    """The SQLite adapter of the runtime's store port. Build it with ``await open(...)``.

    One instance per data dir and process: ``open`` takes an exclusive lock on the data dir
    that is held until ``close``. The store owns one task, the committer, started by
    ``open`` and joined by ``close``; a commit that fails poisons the store (``StoreFailed``).
    """

    def __init__(
        self,
        data_dir: Path,
        db: aiosqlite.Connection,
        lock_fd: int,
        loaded: LoadedState,
        codec: Codec,
        *,
        batch_records_max: int,
        pending_records_max: int,
    ) -> None:
        assert batch_records_max > 0 and pending_records_max > 0
        self.data_dir = data_dir
        self.stats = StoreStats()
        self.identity = StoreIdentity("", None, loaded.durable.genesis, legacy=False)
        """Set by ``open`` (``persistence.identity``)."""
        self._db = db
        self._lock_fd: int | None = lock_fd
        self._codec = codec
        self._batch_records_max = batch_records_max
        self._pending_records_max = pending_records_max
        self._tentative = Mirror(loaded)
        """Every record admitted so far: what new records are checked against."""
        self._committed = Mirror(loaded)
        """Exactly what the file holds (what ``load`` returns)."""
        self._queue: deque[_Op] = deque()
        self._pending_records = 0
        self._wakeup = asyncio.Event()
        self._closing = False
        self._failure: StoreFailed | None = None
        self._committer = asyncio.create_task(self._commit_loop(), name=f"store {data_dir}")

    @classmethod
    async def open(
        cls,
        data_dir: str | os.PathLike[str],
        *,
        node_id: str,
        cluster_id: str | None = None,
        migrations: Sequence[Migration] = MIGRATIONS,
        batch_records_max: int = 4096,
        pending_records_max: int = 65536,
    ) -> SqliteStore:
        """Lock ``data_dir``, check and load (creating or migrating) its store.

        ``cluster_id``, when given, is the cluster the store must belong to once it is
        bootstrapped (an operator's expectation, not a name the store takes).
        Raises ``StoreLocked``, ``ForeignStore``, ``UnknownSchema``, ``CorruptStore`` or
        ``MigrationFailed`` without having written to an existing database file.
        ``migrations`` is replaceable only so tests can exercise the migration mechanism.
        """
        if not node_id or cluster_id == "":
            raise ValueError("node_id (and cluster_id, when given) must be non-empty")
        data_dir = Path(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        db_path = data_dir / DB_NAME
        lock_fd = lock_data_dir(data_dir / LOCK_NAME)
        try:
            if db_path.exists() or wal_path(db_path).exists():
                version = await inspect_read_only(
                    db_path, node_id=node_id, known_version=len(migrations)
                )
            else:
                await create(db_path, node_id=node_id, migrations=migrations)
                version = len(migrations)
            codec = Codec()
            db = await connect_rw(db_path)
            try:
                await migrate(db, db_path, version, migrations)
                identity = await read_identity(db, db_path)
                if cluster_id is not None and identity.cluster_id not in (None, cluster_id):
                    raise ForeignStore(f"{db_path}: belongs to cluster {identity.cluster_id}, "
                                       f"not cluster {cluster_id!r}")  # fmt: skip
                loaded = await read_state(db, db_path, codec, identity.genesis)
            except BaseException:
                await db.close()
                raise
        except BaseException:
            unlock_data_dir(lock_fd)
            raise
        store = cls(
            data_dir,
            db,
            lock_fd,
            loaded,
            codec,
            batch_records_max=batch_records_max,
            pending_records_max=pending_records_max,
        )
        store.identity = identity
        return store

    @property
    def incarnation(self) -> str:
        """This store's member incarnation: random, made when the file was created."""
        return self.identity.incarnation

    @property
    def cluster_id(self) -> str | None:
        """The cluster this store was bootstrapped into; None until ``bootstrap``."""
        return self.identity.cluster_id

    async def bootstrap(self, cluster_id: str, genesis: Configuration) -> None:
        """Write the cluster id and the genesis configuration, once (fsynced); the same
        values again are a no-op, others ``ForeignStore``. Before any ``append``: bootstrap
        comes before the replica runs."""
        assert not self._queue and self._pending_records == 0, "bootstrap before appends"
        self._check_open()
        self.identity = await write_bootstrap(self._db, self.data_dir / DB_NAME, self.identity,
                                              cluster_id, genesis)  # fmt: skip
        self._tentative.durable.genesis = self._committed.durable.genesis = genesis

    @property
    def durable_calls(self) -> int:
        """Completed ``append`` and ``save_snapshot`` calls (the runtime's seam check)."""
        return self.stats.appends

    def load(self) -> LoadedState:
        """The durable state as of the last completed commit (a copy): what the core is
        rebuilt from right after ``open``."""
        return self._committed.loaded()

    async def append(self, records: Sequence[Record]) -> None:
        """Make ``records`` durable in one transaction, possibly shared with other callers.

        Returns once they, and everything appended before them, are committed and fsynced;
        an empty ``records`` is therefore a barrier. Records are checked against everything
        appended so far, with ``DurableState.apply``'s invariants (AssertionError on a
        programmer error, and nothing is written). A caller cancelled while waiting does not
        withdraw its records: they are committed all the same.
        """
        if not records and self._pending_records == 0:
            self._check_open()
            return  # a barrier with nothing before it
        await self._submit(tuple(records), None)

    async def save_snapshot(self, slot: int, data: bytes) -> None:
        """Store the state-machine snapshot taken at ``slot`` and, in the same transaction,
        drop accepted and chosen slots at or below it (compaction). Ordered like appends."""
        assert slot >= 0, "slots are non-negative"
        await self._submit((), (slot, bytes(data)))

    async def close(self) -> None:
        """Commit what is queued, then close the database and release the data dir lock."""
        if self._lock_fd is None:
            return
        self._closing = True
        self._wakeup.set()
        try:
            await asyncio.shield(self._committer)
        except asyncio.CancelledError:
            if not self._committer.cancelled():
                raise  # close() itself was cancelled; a cancelled committer is just done
        finally:
            try:
                await self._db.close()
            finally:
                unlock_data_dir(self._lock_fd)
                self._lock_fd = None

    async def __aenter__(self) -> SqliteStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- submission (synchronous up to the await, so call order is commit order) ---------

    def _check_open(self) -> None:
        if self._failure is not None:
            raise StoreFailed(str(self._failure)) from self._failure.__cause__
        if self._closing:
            raise StoreClosed(f"{self.data_dir}: store is closed")

    def _submit(self, records: tuple[Record, ...], snapshot: tuple[int, bytes] | None) -> (
        asyncio.Future[None]
    ):
        self._check_open()
        if self._pending_records and (
            self._pending_records + len(records) > self._pending_records_max
        ):
            raise StoreOverloaded(
                f"{self.data_dir}: {self._pending_records} records already waiting for commit"
            )
        self._tentative.admit(records)
        if snapshot is not None:
            self._tentative.compact(*snapshot)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(_Op(records, snapshot, done))
        self._pending_records += len(records) or 1
        self._wakeup.set()
        return done

    # --- the committer ------------------------------------------------------------------

    def _take(self) -> list[_Op]:
        ops = [self._queue.popleft()]
        count = len(ops[0].records)
        while self._queue and count + len(self._queue[0].records) <= self._batch_records_max:
            op = self._queue.popleft()
            ops.append(op)
            count += len(op.records)
        return ops

    async def _commit_loop(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            ops = self._take()
            try:
                await self._write(_Batch.of(ops))
            except BaseException as exc:
                self._fail(ops, exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                return
            for op in ops:
                self._committed.admit(op.records)
                if op.snapshot is not None:
                    self._committed.compact(*op.snapshot)
                self._pending_records -= len(op.records) or 1
                self.stats.appends += 1
                self.stats.records += len(op.records)
                if not op.done.done():
                    op.done.set_result(None)

    async def _write(self, batch: _Batch) -> None:
        """One transaction, handed to the connection's thread once (``_transaction``): each
        ``await db.execute`` is a round trip between threads, and under load those hops, not
        the fsync, were most of a commit (bench_store: 1.4 ms a commit over a 0.25 ms fsync)."""
        if batch.empty():
            return  # only barriers: everything before them is already committed
        started = time.perf_counter()
        await run_in_connection_thread(self._db, _transaction, self._db._conn,  # noqa: SLF001
                                       batch, self._codec.encode)  # fmt: skip
        elapsed = time.perf_counter() - started
        self.stats.commits += 1
        self.stats.commit_s_total += elapsed
        self.stats.commit_s_max = max(self.stats.commit_s_max, elapsed)

    def _fail(self, ops: list[_Op], exc: BaseException) -> None:
        """Poison the store and fail every waiter: after a failed commit nothing that follows
        may be reported durable (see ``StoreFailed``)."""
        self._failure = StoreFailed(f"{self.data_dir}: commit failed ({exc!r}); reopen the store")
        self._failure.__cause__ = exc
        for op in (*ops, *self._queue):
            if not op.done.done():
                op.done.set_exception(self._failure)
        self._queue.clear()
        self._pending_records = 0


def run_in_connection_thread(db: aiosqlite.Connection, fn: Callable[..., T], *args: Any) -> (
    Awaitable[T]
):
    """Run ``fn(*args)`` on ``db``'s own thread, where its sqlite3 connection lives, in one
    hand-off. aiosqlite has no public call for this; ``Connection._execute`` is the one its
    own methods use (aiosqlite 0.17 to 0.22), and ``test_store_one_handoff`` fails if it goes."""
    execute: Callable[..., Awaitable[T]] = db._execute  # noqa: SLF001 (untyped in aiosqlite)
    return execute(fn, *args)


def _transaction(conn: sqlite3.Connection, batch: _Batch, encode: Callable[[Any], bytes]) -> None:
    """The rows of ``batch`` in one ``BEGIN IMMEDIATE`` .. ``COMMIT`` (fsynced: WAL with
    ``synchronous = FULL``), on the connection's thread. Rolled back when a statement fails
    (the store is poisoned all the same: see ``_fail``)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        if batch.snapshot is not None:
            slot, data = batch.snapshot
            conn.execute("DELETE FROM accepted WHERE slot <= ?", (slot,))
            conn.execute("DELETE FROM chosen WHERE slot <= ?", (slot,))
            conn.execute(
                "INSERT INTO snapshot (id, slot, data) VALUES (1, ?, ?) ON CONFLICT (id) "
                "DO UPDATE SET slot = excluded.slot, data = excluded.data",
                (slot, data),
            )
        if batch.promise is not None:
            conn.execute(
                "INSERT INTO promise (id, ballot) VALUES (1, ?) ON CONFLICT (id) "
                "DO UPDATE SET ballot = excluded.ballot",
                (encode(batch.promise),),
            )
        if batch.accepted:
            conn.executemany(
                "INSERT INTO accepted (slot, ballot, value) VALUES (?, ?, ?) ON CONFLICT (slot) "
                "DO UPDATE SET ballot = excluded.ballot, value = excluded.value",
                [(e.slot, encode(e.ballot), encode(e.value)) for e in batch.accepted.values()],
            )
        if batch.chosen:
            conn.executemany(
                "INSERT INTO chosen (slot, value) VALUES (?, ?) ON CONFLICT (slot) DO NOTHING",
                [(slot, encode(value)) for slot, value in batch.chosen.items()],
            )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
