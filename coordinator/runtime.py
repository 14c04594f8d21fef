"""The asyncio runtime that drives the pure ``LeaseReplica``: *persist, then send*.

Every call into the replica (a message from a peer, a client request, a timer) runs at once
and synchronously; its ``ReplicaReady`` is merged into the *unsent batch*, and its replies,
events and applied commands go to the layer above at once (they report chosen values or
confirmed rounds: a value is chosen only once a majority of acceptors made it durable, so
acting on it needs no local fsync first). One flusher task takes the unsent batch, makes its
records durable with one ``Store.append`` (one fsync for everything that arrived meanwhile:
group commit), and only then hands its messages to the transport. Batches are flushed
strictly one after another, so no message ever leaves before the records of its own step and
of every earlier step are durable — including a retransmitted promise that needed no new
record because an earlier, still unflushed step made it.

The one exception is the core's (``ready.leaves_before_durable``): a primary's ``Accept`` of a
ballot whose promise is already durable here, ``Chosen`` and ``Heartbeat`` report nothing
about this node's acceptor, and go to the transport as soon as the step made them, so the
followers' fsyncs run beside the primary's own instead of after it.

A batch of records that may all wait for a later commit (``ready.commit_may_wait``: learned
values) and no message starts no commit of its own: it goes with the next one, or after
``LAZY_COMMIT_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Any

from paxlock._logs import get_logger
from paxlock.coordinator.core.ballot import ZERO_BALLOT
from paxlock.coordinator.core.keeper_effects import RequestKey
from paxlock.coordinator.core.messages import (
    Envelope, Message, PromiseRecord, Record, SnapshotRecord,
)  # fmt: skip
from paxlock.coordinator.core.ready import commit_may_wait, leaves_before_durable
from paxlock.coordinator.core.replica import LeaseReplica
from paxlock.coordinator.core.replica_io import ReplicaReady, RequestOp, UnreadableEntry
from paxlock.coordinator.ports import Clock, Store, Transport

log = get_logger("paxlock.runtime")

ReadySink = Callable[[ReplicaReady], None]
LAZY_COMMIT_S = 0.02
"""The longest records that may wait (``commit_may_wait``) wait for a commit to ride with."""


class ReplicaFailed(RuntimeError):
    """The store failed, or the log holds an entry this version cannot read: the node stops
    (fail-stop) rather than run on unsure durability or on a state that diverges."""


class Runtime:
    def __init__(self, replica: LeaseReplica, store: Store, transport: Transport, *,
                 clock: Clock) -> None:  # fmt: skip
        self.replica = replica
        self.id = replica.id
        self.store = store
        self.transport = transport
        self.clock = clock
        self.sinks: list[ReadySink] = []
        """Receive every step's effects right after the step (replies, events, applied
        commands); its records and messages are this runtime's business."""
        self._unsent_records: list[Record] = []
        self._unsent_messages: list[Envelope] = []
        self._deadline = float("inf")
        self._urgent = False
        """Something unsent needs a commit now: a message, or a record that may not wait."""
        self._lazy_since: float | None = None
        """When the oldest unsent record that may wait was made (None: there is none)."""
        self._woken = False
        """New work since the last flush began."""
        self._flushing = False
        self._waiter: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._store_calls = 0
        self.durable_promise = ZERO_BALLOT
        """The highest promise this runtime made durable (``leaves_before_durable``); it
        starts from nothing after a restart, which only delays the first early sends."""
        self.sent_early = 0
        """Store calls made so far: the store's durable count must cover them before a send."""
        self.failure: BaseException | None = None
        self.flushes = 0
        self.on_flush: Callable[[int, int, float], None] | None = None
        """Observer (records, messages, seconds spent persisting) for metrics."""

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self.step(self.replica.start)
        self._task = asyncio.create_task(self._run(), name=f"paxlock-replica-{self.id}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            records = self._unsent_records
            if records and not self._flushing and self.failure is None \
                    and all(map(commit_may_wait, records)):  # fmt: skip
                self._unsent_records = []
                await self._persist(records)  # learned values: spare catch-up after restart

    async def wait_stopped(self) -> BaseException | None:
        """Return once the flusher ended (a store failure), with the failure."""
        assert self._task is not None, "start() first"
        await asyncio.shield(self._task)
        return self.failure

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def flushed(self) -> bool:
        """Everything stepped so far is durable and sent (nothing unsent, no flush running)."""
        return not (self._unsent_records or self._unsent_messages or self._flushing)

    # -- inputs (synchronous: each runs one replica step now) --------------------------------

    def receive(self, src: str, msg: Message) -> None:
        self._absorb(self._unless_unreadable(self.replica.receive, src, msg, self.clock()))

    def receive_many(self, src: str, msgs: Sequence[Message]) -> None:
        for msg in msgs:
            self.receive(src, msg)

    def request(self, key: RequestKey, op: RequestOp) -> None:
        self._absorb(self.replica.request(key, op, self.clock()))

    def cancel(self, key: RequestKey) -> None:
        self._absorb(self.replica.cancel(key, self.clock()))

    def step(self, entry: Callable[[float], ReplicaReady]) -> None:
        """Run one replica entry point that takes only the time (``start``, ``tick``)."""
        self._absorb(self._unless_unreadable(entry, self.clock()))

    def _unless_unreadable(self, entry: Callable[..., ReplicaReady], *args: Any) -> ReplicaReady:
        """Run a replica step; an entry written by a newer version stops the node, like a
        store failure (the replica applied none of it, and this member must not run on)."""
        try:
            return entry(*args)
        except UnreadableEntry as error:
            if self.failure is None:
                self.failure = error
                log.error("replica_failed", node=self.id, error=str(error))
                self._wake()
            raise ReplicaFailed(f"node {self.id} stopped: {error}") from error

    # -- the step and the flusher --------------------------------------------------------------

    def _absorb(self, ready: ReplicaReady) -> None:
        if self.failure is not None:
            raise ReplicaFailed(f"node {self.id} stopped: {self.failure!r}") from self.failure
        if ready.records:
            self._unsent_records += ready.records
            if not self._urgent and all(map(commit_may_wait, ready.records)):
                if self._lazy_since is None:
                    self._lazy_since = self.clock()
            else:
                self._urgent = True
        if ready.messages:
            early: list[Envelope] = []
            for envelope in ready.messages:
                if not leaves_before_durable(envelope.msg, self.durable_promise):
                    self._unsent_messages.append(envelope)
                    self._urgent = True
                elif envelope.dst != self.id:
                    early.append(envelope)
                else:  # to itself (its own Accept, its learner's Chosen): next, not after a commit
                    asyncio.get_running_loop().call_soon(self._loop_back, envelope)
            if early:
                self.sent_early += len(early)
                self.transport.send(early)
        self._deadline = ready.deadline
        for sink in self.sinks:
            sink(ready)
        self._wake()

    def _wake(self) -> None:
        """Let the flusher's loop run now (new work, or a failure to stop on)."""
        self._woken = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _loop_back(self, envelope: Envelope) -> None:
        if self.failure is None and self.running:
            with contextlib.suppress(ReplicaFailed):  # the failure is set and logged already
                self.receive(envelope.src, envelope.msg)

    async def _run(self) -> None:
        try:
            while self.failure is None:  # set by a step that met an unreadable entry
                await self._flush()
                now = self.clock()
                delay = self._deadline - now
                if delay <= 0:
                    self.step(self.replica.tick)
                    continue
                if self._lazy_since is not None:
                    delay = min(delay, self._lazy_since + LAZY_COMMIT_S - now)
                if not self._woken:
                    await self._sleep(min(delay, 3600))
        except asyncio.CancelledError:
            raise
        except BaseException as error:  # the store failed: stop, sending nothing more
            if self.failure is None:
                self.failure = error
                log.error("replica_failed", node=self.id, error=repr(error))

    async def _sleep(self, delay: float) -> None:
        """Until new work arrives or the replica's deadline passes. A bare future and a
        timer handle: ``asyncio.wait_for`` would create a task per wait, on the hot path."""
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(delay, _wake_up, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    async def _flush(self) -> None:
        self._woken = False
        if not self._urgent and (self._lazy_since is None
                                 or self.clock() - self._lazy_since < LAZY_COMMIT_S):  # fmt: skip
            return  # nothing, or only records that may wait for a later commit
        self._urgent, self._lazy_since = False, None
        records, self._unsent_records = self._unsent_records, []
        messages, self._unsent_messages = self._unsent_messages, []
        if not records and not messages:
            return
        started = self.clock()
        self._flushing = True
        try:
            if records:
                await self._persist(records)
        finally:
            self._flushing = False
        persisted = self.clock() - started
        # Persist, then send: the only place messages leave the node. Paired with the
        # store's own count, so a store that returned early is caught before anything leaves.
        assert self.store.durable_calls >= self._store_calls, "sending ahead of the disk"
        local = [e for e in messages if e.dst == self.id]
        remote = [e for e in messages if e.dst != self.id]
        if remote:
            self.transport.send(remote)
        self.flushes += 1
        if self.on_flush is not None:
            self.on_flush(len(records), len(remote), persisted)
        for envelope in local:  # loopback: the node's own acceptor and learner
            self.receive(envelope.src, envelope.msg)

    async def _persist(self, records: list[Record]) -> None:
        """Append records in order; a snapshot goes through ``save_snapshot`` (which compacts
        in the same transaction) between the records before and after it."""
        start = 0
        for index, record in enumerate(records):
            if isinstance(record, SnapshotRecord):
                if start < index:
                    self._store_calls += 1
                    await self.store.append(records[start:index])
                self._store_calls += 1
                await self.store.save_snapshot(record.slot, record.data)
                start = index + 1
        if start < len(records):
            self._store_calls += 1
            await self.store.append(records[start:])
        promises = [r.ballot for r in records if isinstance(r, PromiseRecord)]
        if promises:
            self.durable_promise = max(self.durable_promise, *promises)


def _wake_up(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
