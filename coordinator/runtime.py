"""The asyncio runtime that drives the pure core: *persist, then send, then advance*.

Every call into the core (a message from a peer, a client command, a timer) runs at once and
synchronously; its ``Ready`` is merged into the *unsent batch*. One flusher task takes that
batch, makes its records durable with one ``Store.append`` (one fsync for everything that
arrived meanwhile: group commit), and only then hands its messages to the transport. Batches
are flushed strictly one after another, so no message ever leaves before the records of its
own step and of every earlier step are durable — including a retransmitted promise that
needed no new record because an earlier, still unflushed step made it.

Chosen values are applied as soon as they are learned: a value is chosen only once a majority
of acceptors made it durable, so acting on it needs no local fsync first.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from paxlock.coordinator.core.messages import (
    ChosenEntry,
    Envelope,
    Message,
    Record,
    SnapshotRecord,
)
from paxlock.coordinator.core.node import CoreConfig, Node
from paxlock.coordinator.core.proposer import Role
from paxlock.coordinator.core.ready import (
    BecamePrimary,
    Confirmed,
    CoreEvent,
    DurableState,
    Ready,
    Rejection,
    SteppedDown,
)
from paxlock.coordinator.ports import Clock, Store, Transport

log = structlog.get_logger("paxlock.runtime")

Applier = Callable[[ChosenEntry], None]
Installer = Callable[[int, bytes], None]
RejectionSink = Callable[[Rejection], None]
EventSink = Callable[[CoreEvent], None]


class ReplicaFailed(RuntimeError):
    """The store failed: the node stops (fail-stop) rather than run on unsure durability."""


class Replica:
    def __init__(
        self,
        config: CoreConfig,
        durable: DurableState,
        store: Store,
        transport: Transport,
        *,
        apply: Applier,
        install: Installer,
        on_rejected: RejectionSink,
        on_event: EventSink | None = None,
        clock: Clock,
        rng: random.Random | None = None,
    ) -> None:
        self.id = config.node_id
        self.node = Node(config, durable, rng or random.Random())
        self.store = store
        self.transport = transport
        self.clock = clock
        self._apply = apply
        self._install = install
        self._on_rejected = on_rejected
        self._on_event = on_event
        self._unsent = Ready()
        self._deadline = float("inf")
        self._woken = False
        """New work since the last flush began."""
        self._waiter: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self.failure: BaseException | None = None
        # Confirmation rounds: callers waiting for seq, and the round not yet flushed.
        self._confirm_waiters: dict[int, list[asyncio.Future[bool]]] = {}
        self._unflushed_round: int | None = None
        self.flushes = 0
        self.on_flush: Callable[[int, int, float], None] | None = None
        """Observer (records, messages, seconds spent persisting) for metrics."""

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._step(self.node.start(self.clock()))
        self._task = asyncio.create_task(self._run(), name=f"paxlock-replica-{self.id}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._fail_confirmations()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # -- inputs (synchronous: each runs one core step now) ------------------------------------

    def receive(self, src: str, msg: Message) -> None:
        self._step(self.node.receive(src, msg, self.clock()))

    def receive_many(self, src: str, msgs: Sequence[Message]) -> None:
        for msg in msgs:
            self.receive(src, msg)

    def submit(self, command: Any) -> None:
        self._step(self.node.submit(command, self.clock()))

    def compact(self, slot: int, data: bytes) -> None:
        """Snapshot taken by the state machine after applying ``slot``: persist it and drop
        the log and acceptor records it covers (call between steps, never inside one)."""
        current = self.node.snapshot.slot if self.node.snapshot is not None else 0
        if self.failure is None and current < slot <= self.node.chosen_index:
            self._step(self.node.compact(slot, data, self.clock()))

    async def confirm(self) -> bool:
        """One quorum round started after this call: true once a majority confirmed this
        node still primary. Callers that arrive before a round leaves share it."""
        if self.failure is not None or self.node.role is not Role.PRIMARY:
            return False
        seq = self._unflushed_round
        if seq is None:
            seq, ready = self.node.request_confirmation(self.clock())
            self._step(ready)
            if seq is None:
                return False
            self._unflushed_round = seq
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._confirm_waiters.setdefault(seq, []).append(future)
        return await future

    # -- state for the layers above ------------------------------------------------------------

    @property
    def is_primary(self) -> bool:
        return self.node.role is Role.PRIMARY

    @property
    def primary_hint(self) -> str | None:
        return self.node.primary_hint

    # -- the step and the flusher --------------------------------------------------------------

    def _step(self, ready: Ready) -> None:
        if self.failure is not None:
            raise ReplicaFailed(f"node {self.id} stopped: {self.failure!r}") from self.failure
        unsent = self._unsent
        unsent.records += ready.records
        unsent.messages += ready.messages
        if ready.deadline is not None:
            self._deadline = ready.deadline
        for event in ready.events:
            self._event(event)
        if ready.installed is not None:  # a snapshot replaces the state machine first
            self._install(*ready.installed)
        for entry in ready.learned:
            self._apply(entry)
        for rejection in ready.rejected:
            self._on_rejected(rejection)
        self._woken = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _event(self, event: CoreEvent) -> None:
        if isinstance(event, Confirmed):
            for seq in [s for s in self._confirm_waiters if s <= event.seq]:
                for future in self._confirm_waiters.pop(seq):
                    if not future.done():
                        future.set_result(True)
        elif isinstance(event, SteppedDown | BecamePrimary):
            self._fail_confirmations()
        if self._on_event is not None:
            self._on_event(event)

    def _fail_confirmations(self) -> None:
        for futures in self._confirm_waiters.values():
            for future in futures:
                if not future.done():
                    future.set_result(False)
        self._confirm_waiters.clear()
        self._unflushed_round = None

    async def _run(self) -> None:
        try:
            while True:
                await self._flush()
                delay = self._deadline - self.clock()
                if delay <= 0:
                    self._step(self.node.tick(self.clock()))
                    continue
                if not self._woken:
                    await self._sleep(min(delay, 3600))
        except asyncio.CancelledError:
            raise
        except BaseException as error:  # the store failed: stop, sending nothing more
            self.failure = error
            self._fail_confirmations()
            log.error("replica_failed", node=self.id, error=repr(error))

    async def _sleep(self, delay: float) -> None:
        """Until new work arrives or the core's deadline passes. A bare future and a timer
        handle: ``asyncio.wait_for`` would create a task per wait, on the hot path."""
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
        batch, self._unsent = self._unsent, Ready()
        self._unflushed_round = None
        if not batch.records and not batch.messages:
            return
        started = self.clock()
        if batch.records:
            await self._persist(batch.records)
        persisted = self.clock() - started
        # Persist, then send: the only place messages leave the node.
        local = [e for e in batch.messages if e.dst == self.id]
        remote = [e for e in batch.messages if e.dst != self.id]
        if remote:
            self.transport.send(remote)
        self.flushes += 1
        if self.on_flush is not None:
            self.on_flush(len(batch.records), len(remote), persisted)
        for envelope in local:  # loopback: the node's own acceptor and learner
            self.receive(envelope.src, envelope.msg)

    async def _persist(self, records: list[Record]) -> None:
        """Append records in order; a snapshot goes through ``save_snapshot`` (which compacts
        in the same transaction) between the records before and after it."""
        start = 0
        for index, record in enumerate(records):
            if isinstance(record, SnapshotRecord):
                if start < index:
                    await self.store.append(records[start:index])
                await self.store.save_snapshot(record.slot, record.data)
                start = index + 1
        if start < len(records):
            await self.store.append(records[start:])

    def describe(self) -> dict[str, Any]:
        node = self.node
        return {
            "role": node.role.value,
            "ballot": str(node.ballot) if node.role is not Role.FOLLOWER else None,
            "chosen_index": node.chosen_index,
        }


def _wake_up(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def deliver_all(replica: Replica, envelopes: Sequence[Envelope]) -> None:
    """Feed a batch of envelopes from the wire into the replica, in order."""
    for envelope in envelopes:
        replica.receive(envelope.src, envelope.msg)
