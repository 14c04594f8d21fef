"""An entry written by a newer paxlock (a command this version does not know) stops the
member that meets it, before any of it is applied: applying the rest of the batch, or
skipping it, would leave this member's state different from the others'."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Sequence

import msgspec
import pytest

from paxlock.coordinator.core.ballot import Ballot
from paxlock.coordinator.core.lease_commands import Acquire
from paxlock.coordinator.core.messages import Accept, Batch, Chosen, Envelope, Record
from paxlock.coordinator.core.config import LearnMode
from paxlock.coordinator.core.node import CoreConfig
from paxlock.coordinator.core.proposal import Proposal, encode_proposal
from paxlock.coordinator.core.ready import DurableState
from paxlock.coordinator.core.replica import LeaseReplica
from paxlock.coordinator.core.replica_io import UnreadableEntry
from paxlock.coordinator.runtime import ReplicaFailed, Runtime

FROM_THE_FUTURE = msgspec.msgpack.encode(["n2/1", 2, {"type": "from_the_future", "name": "x"}])
KNOWN = encode_proposal(Proposal("n2/1", 1, Acquire("x", "worker", 10.0)))


class Store:
    async def append(self, records: Sequence[Record]) -> None:
        pass

    async def save_snapshot(self, slot: int, data: bytes) -> None:
        raise NotImplementedError


class Transport:
    def __init__(self) -> None:
        self.sent: list[Envelope] = []

    def send(self, envelopes: Sequence[Envelope]) -> None:
        self.sent += envelopes


def learn(runtime: Runtime, slot: int, batch: Batch) -> None:
    """n2, the primary of ballot (1, n2), has this member accept ``batch``, then tells it
    the batch was chosen (a Chosen is believed from the learner of a ballot whose value this
    acceptor accepted: ``admission.chosen_believed``)."""
    ballot = Ballot(1, "n2")
    runtime.receive("n2", Accept(ballot, slot, batch, slot - 1))
    runtime.receive("n2", Chosen(slot, batch, ballot))


def follower() -> Runtime:
    config = CoreConfig("n1", ("n1", "n2", "n3"), LearnMode("primary"), election=False)
    replica = LeaseReplica(config, DurableState(), random.Random(1), origin="n1/1")
    clock = itertools.count(0.0, 0.001).__next__
    return Runtime(replica, Store(), Transport(), clock=clock)


async def test_a_chosen_entry_this_version_cannot_read_stops_the_node_unapplied() -> None:
    runtime = follower()
    await runtime.start()
    try:
        with pytest.raises(ReplicaFailed, match="cannot read"):
            learn(runtime, 1, Batch((KNOWN, FROM_THE_FUTURE)))
        failure = await asyncio.wait_for(runtime.wait_stopped(), 5)
        assert isinstance(failure, UnreadableEntry) and failure.slot == 1
        assert "upgrade this member" in str(failure)
        replica = runtime.replica
        assert replica.applied_slot == 0 and replica.machine.get("x") is None  # none of it
        with pytest.raises(ReplicaFailed):
            learn(runtime, 2, Batch((KNOWN,)))
    finally:
        await runtime.stop()


async def test_a_readable_entry_is_applied() -> None:
    """The twin: the same batch without the unknown command applies (the check can pass)."""
    runtime = follower()
    await runtime.start()
    try:
        learn(runtime, 1, Batch((KNOWN,)))
        assert runtime.replica.applied_slot == 1
        lease = runtime.replica.machine.get("x")
        assert lease is not None and lease.holder == "worker"
        assert runtime.failure is None
    finally:
        await runtime.stop()
