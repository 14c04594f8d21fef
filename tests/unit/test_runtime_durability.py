"""The runtime's one hard rule: a promise or an acceptance is durable before the reply that
reports it leaves the node. A store whose commit hangs must hold every reply back; a store
whose commit fails must stop the node without a reply ever leaving."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Sequence

import pytest

from paxlock.coordinator.core.ballot import Ballot
from paxlock.coordinator.core.messages import (
    Accept,
    AcceptRecord,
    Accepted,
    Batch,
    ChosenRecord,
    Envelope,
    Prepare,
    Promise,
    PromiseRecord,
    Record,
)
from paxlock.coordinator.core.node import CoreConfig
from paxlock.coordinator.core.ready import DurableState
from paxlock.coordinator.core.replica import LeaseReplica
from paxlock.coordinator.core.replica_io import ReplicaReady
from paxlock.coordinator.runtime import ReplicaFailed, Runtime

MEMBERS = ("n1", "n2", "n3")


class GatedStore:
    """A store whose commits wait for the test to open a gate (or fail on purpose)."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.called = asyncio.Event()
        self.fail_with: BaseException | None = None
        self.durable: list[Record] = []
        self.durable_calls = 0
        self.returns_early = False
        """Broken on purpose: report success before the commit (and count nothing)."""

    async def append(self, records: Sequence[Record]) -> None:
        self.called.set()
        if self.returns_early:
            return
        await self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        self.durable += records
        self.durable_calls += 1

    async def save_snapshot(self, slot: int, data: bytes) -> None:
        raise NotImplementedError


class RecordingTransport:
    def __init__(self, store: GatedStore) -> None:
        self.store = store
        self.sent: list[Envelope] = []
        self.records_when_sent: list[int] = []
        self.any_sent = asyncio.Event()

    def send(self, envelopes: Sequence[Envelope]) -> None:
        self.sent += envelopes
        self.records_when_sent.append(len(self.store.durable))
        self.any_sent.set()


def follower() -> tuple[Runtime, GatedStore, RecordingTransport]:
    store = GatedStore()
    transport = RecordingTransport(store)
    clock = itertools.count(0.0, 0.001).__next__
    config = CoreConfig("n1", MEMBERS, election=False)
    replica = LeaseReplica(config, DurableState(), random.Random(1), origin="n1/1")
    return Runtime(replica, store, transport, clock=clock), store, transport


async def test_a_promise_leaves_only_after_its_record_is_durable() -> None:
    """Phase 1b: the Promise is sent only once the PromiseRecord is committed."""
    replica, store, transport = follower()
    await replica.start()
    try:
        replica.receive("n2", Prepare(Ballot(1, "n2"), 1))
        await asyncio.wait_for(store.called.wait(), 5)
        for _ in range(20):  # let the loop run freely: nothing may leave while the commit hangs
            await asyncio.sleep(0)
        assert transport.sent == []
        store.gate.set()
        await asyncio.wait_for(transport.any_sent.wait(), 5)
        schedule = replica.replica.node.schedule.to_state()
        assert [e.msg for e in transport.sent] == [Promise(Ballot(1, "n2"), 1, (), 0, schedule)]
        assert transport.records_when_sent == [1]  # the record was durable when it left
    finally:
        await replica.stop()


async def test_an_acceptance_leaves_only_after_its_record_is_durable() -> None:
    """Phase 2b: Accepted is sent only once the AcceptRecord is committed."""
    replica, store, transport = follower()
    await replica.start()
    try:
        replica.receive("n2", Accept(Ballot(1, "n2"), 1, Batch((b"x",)), 0))
        await asyncio.wait_for(store.called.wait(), 5)
        for _ in range(20):
            await asyncio.sleep(0)
        assert transport.sent == []
        store.gate.set()
        await asyncio.wait_for(transport.any_sent.wait(), 5)
        assert any(isinstance(e.msg, Accepted) for e in transport.sent)
        assert transport.records_when_sent[0] >= 2  # promise raised + acceptance
    finally:
        await replica.stop()


async def test_a_retransmitted_prepare_waits_for_the_first_promise_to_be_durable() -> None:
    """The second Prepare needs no new record — but its Promise reports a promise that is
    durable only once the *first* step's record is: it must wait for that commit too."""
    replica, store, transport = follower()
    await replica.start()
    try:
        replica.receive("n2", Prepare(Ballot(1, "n2"), 1))
        await asyncio.wait_for(store.called.wait(), 5)
        replica.receive("n2", Prepare(Ballot(1, "n2"), 1))  # retransmission, no record
        for _ in range(20):
            await asyncio.sleep(0)
        assert transport.sent == []
        store.gate.set()
        await asyncio.wait_for(transport.any_sent.wait(), 5)
        assert all(count >= 1 for count in transport.records_when_sent)
    finally:
        await replica.stop()


async def test_a_failed_commit_stops_the_node_and_no_reply_ever_leaves() -> None:
    replica, store, transport = follower()
    await replica.start()
    try:
        replica.receive("n2", Prepare(Ballot(1, "n2"), 1))
        await asyncio.wait_for(store.called.wait(), 5)
        store.fail_with = OSError("disk full")
        store.gate.set()
        failure = await asyncio.wait_for(replica.wait_stopped(), 5)
        assert isinstance(failure, OSError)
        assert transport.sent == []
        with pytest.raises(ReplicaFailed):
            replica.receive("n2", Prepare(Ballot(2, "n2"), 1))
        assert transport.sent == []
    finally:
        await replica.stop()


async def test_a_store_that_reports_success_early_is_caught_before_anything_is_sent() -> None:
    """The seam assertion (TigerBeetle style, always on): the store's own count of durable
    calls must cover every call the runtime made before a message may leave."""
    replica, store, transport = follower()
    store.returns_early = True
    await replica.start()
    try:
        replica.receive("n2", Prepare(Ballot(1, "n2"), 1))
        failure = await asyncio.wait_for(replica.wait_stopped(), 5)
        assert isinstance(failure, AssertionError) and "ahead of the disk" in str(failure)
        assert transport.sent == []
    finally:
        await replica.stop()


# -- what may leave early (``ready.leaves_before_durable``) -------------------------------


def step(runtime: Runtime, records: list[Record], *messages: object) -> None:
    """One step's effects, as the replica would return them (driven directly, so that the
    test chooses exactly what a primary's step made)."""
    envelopes = [Envelope("n1", "n2", msg) for msg in messages]  # type: ignore[arg-type]
    runtime._absorb(ReplicaReady(records=list(records), messages=envelopes))


async def durable_promise(runtime: Runtime, store: GatedStore, ballot: Ballot) -> None:
    step(runtime, [PromiseRecord(ballot)])
    store.gate.set()
    for _ in range(1000):
        if runtime.durable_promise == ballot and runtime.flushed:
            break
        await asyncio.sleep(0)
    assert runtime.durable_promise == ballot
    store.gate = asyncio.Event()  # close it again: the next commit hangs


async def test_an_accept_of_a_durably_promised_ballot_leaves_while_its_step_is_being_made_durable() -> None:
    """The primary's own fsync runs beside its followers': its Accept goes at once. The
    acceptor's replies of the same step (an Accepted, a Promise) still wait for the disk."""
    runtime, store, transport = follower()
    await runtime.start()
    ballot = Ballot(3, "n1")
    value = Batch((b"x",))
    try:
        await durable_promise(runtime, store, ballot)
        sent_before = len(transport.sent)
        step(runtime, [AcceptRecord(7, ballot, value)], Accept(ballot, 7, value, 6),
             Accepted(ballot, 7, value), Promise(ballot, 1, ()))  # fmt: skip
        assert [e.msg for e in transport.sent[sent_before:]] == [Accept(ballot, 7, value, 6)]
        for _ in range(20):
            await asyncio.sleep(0)
        assert not any(isinstance(e.msg, Accepted | Promise) for e in transport.sent)
        store.gate.set()
        await asyncio.wait_for(until_sent(transport, Accepted), 5)
        assert AcceptRecord(7, ballot, value) in store.durable
    finally:
        await runtime.stop()


async def test_an_accept_waits_while_the_promise_of_its_ballot_is_not_durable() -> None:
    """A primary that crashed before its own promise of ballot b was durable could pick b's
    round again after restart, for another value: its Accept of b waits for that promise."""
    runtime, store, transport = follower()
    await runtime.start()
    ballot = Ballot(3, "n1")
    value = Batch((b"x",))
    try:
        await durable_promise(runtime, store, Ballot(2, "n2"))
        sent_before = len(transport.sent)
        step(runtime, [PromiseRecord(ballot)], Accept(ballot, 7, value, 6))
        for _ in range(20):
            await asyncio.sleep(0)
        assert transport.sent[sent_before:] == []
        store.gate.set()
        await asyncio.wait_for(until_sent(transport, Accept), 5)
        assert runtime.durable_promise == ballot
    finally:
        await runtime.stop()


async def until_sent(transport: RecordingTransport, kind: type) -> None:
    while not any(isinstance(e.msg, kind) for e in transport.sent):
        transport.any_sent.clear()
        await transport.any_sent.wait()


async def test_learned_values_ride_with_the_next_commit_or_go_alone_soon_after() -> None:
    """A step that only learned values (``ChosenRecord``) starts no commit of its own: the
    follower's next acceptance carries it, one fsync for both. Alone, it is committed within
    ``LAZY_COMMIT_S`` all the same."""
    runtime, store, transport = follower()
    store.gate.set()
    await runtime.start()
    ballot = Ballot(3, "n2")
    value = Batch((b"x",))
    try:
        for _ in range(50):
            await asyncio.sleep(0)
        calls = store.durable_calls
        step(runtime, [ChosenRecord(6, value)])
        for _ in range(50):
            await asyncio.sleep(0)
        assert store.durable_calls == calls and not runtime.flushed  # waiting, not committed
        step(runtime, [AcceptRecord(7, ballot, value)], Accepted(ballot, 7, value))
        await asyncio.wait_for(until_sent(transport, Accepted), 5)
        assert store.durable_calls == calls + 1  # one commit for both
        assert store.durable[-2:] == [ChosenRecord(6, value), AcceptRecord(7, ballot, value)]
        step(runtime, [ChosenRecord(7, value)])
        started = asyncio.get_running_loop().time()
        loop = asyncio.get_running_loop()
        while store.durable_calls == calls + 1 and loop.time() - started < 5.0:
            await asyncio.sleep(0.001)  # polls a condition; the runtime's timer is under test
        assert loop.time() - started < 1.0
        assert store.durable[-1] == ChosenRecord(7, value)
    finally:
        await runtime.stop()
