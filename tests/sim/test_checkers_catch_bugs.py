"""A checker that cannot fail is worthless: each test breaks the protocol on purpose and shows
the checker named after the broken rule catching it on a fixed seed set.

The broken roles live here, in the tests, never in the product."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from paxlock.coordinator.core.acceptor import Acceptor
from paxlock.coordinator.core.learner import Learner
from paxlock.coordinator.core.messages import (
    NOOP,
    Accept,
    AcceptedEntry,
    AcceptRecord,
    Batch,
    CatchupRequest,
    ChosenEntry,
    Message,
    Promise,
    PromiseRecord,
    Record,
    Snapshot,
    SnapshotRecord,
    Value,
)
from paxlock.coordinator.core.node import CoreConfig, Node
from paxlock.coordinator.core.proposer import Proposer
from paxlock.coordinator.core.ready import DurableState, Ready, leaves_before_durable
from paxlock.coordinator.simulation.runner import config_for
from paxlock.coordinator.simulation.sim import DiskFactory, EarlySend, NodeFactory, Simulation

SEEDS = range(40)
STEPS = 2000


class AcceptsBelowPromise(Acceptor):
    """Breaks P1a: accepts whatever ballot arrives, even below its promise (compacted slots
    aside: that is another rule, and breaking it too would trip an assertion first)."""

    def on_accept(self, msg: Accept, records: list[Record]) -> AcceptedEntry | None:
        if msg.slot <= self.snapshot_slot:
            return None
        if msg.ballot > self.promised:
            self.promised = msg.ballot
            records.append(PromiseRecord(msg.ballot))
        entry = AcceptedEntry(msg.slot, msg.ballot, msg.value)
        if self.accepted.get(msg.slot) != entry:
            self.accepted[msg.slot] = entry
            records.append(AcceptRecord(msg.slot, msg.ballot, msg.value))
        return entry


class CorruptsValues(Acceptor):
    """Accepts a value nobody proposed (a reversed batch with an extra command)."""

    def on_accept(self, msg: Accept, records: list[Record]) -> AcceptedEntry | object:
        if isinstance(msg.value, Batch):
            forged = Batch((*msg.value.commands[::-1], b"forged"))
            msg = Accept(msg.ballot, msg.slot, forged, msg.chosen_index)
        return super().on_accept(msg, records)


class IgnoresPhase1bValues(Proposer):
    """Breaks P2c(b): fills every reported slot with a no-op instead of the highest-ballot
    value the acceptors reported."""

    def value_for(self, slot: int, reported: AcceptedEntry | None) -> object:
        return NOOP


class IgnoresPromisedChosenIndex(Proposer):
    """Takes office as if no promiser knew any slot chosen: with compaction, the slots an
    acceptor compacted are reported by nothing but its chosen index, so this proposer takes
    them for holes and proposes new batches into chosen slots."""

    def on_promise(self, acceptor: str, msg: Promise) -> bool:
        return super().on_promise(acceptor, Promise(msg.ballot, msg.from_slot, msg.accepted))

    def take_office(self, chosen: dict[int, Value], now: float, *,
                    chosen_index: int = 0) -> int:  # fmt: skip
        return super().take_office(chosen, now)


class LearnsFromOneAcceptor(Learner):
    """Counts a single Accepted as a majority."""

    def __init__(self, quorum: int, chosen: dict, applied_index: int) -> None:  # type: ignore[type-arg]
        super().__init__(1, chosen, applied_index)


class DeliversOutOfOrder(Learner):
    """Hands values to the state machine as they are learned, not in slot order."""

    def deliver(self, learned: list[ChosenEntry]) -> None:
        done: set[int] = self.__dict__.setdefault("done", set())  # no __slots__ here
        for slot in sorted(self.chosen):
            if slot > self.applied_index and slot not in done:
                done.add(slot)
                learned.append(ChosenEntry(slot, self.chosen[slot]))
        while self.applied_index + 1 in self.chosen:
            self.applied_index += 1


class ForgetsPromises(DurableState):
    """A store that loses the acceptor's promise across a restart (no fsync of promises)."""

    def apply(self, record: Record) -> None:
        match record:
            case PromiseRecord():
                pass
            case AcceptRecord(slot=slot, ballot=ballot, value=value):
                self.accepted[slot] = AcceptedEntry(slot, ballot, value)
            case _:
                super().apply(record)

    def copy(self) -> DurableState:
        return ForgetsPromises(self.promised, dict(self.accepted), dict(self.chosen),
                               self.snapshot_slot, self.snapshot)  # fmt: skip


def _flip(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 1])


class CorruptsSnapshots(Node):
    """Persists a snapshot whose content is not its state machine's (a bad serializer)."""

    def compact(self, slot: int, data: bytes, now: float) -> Ready:
        return super().compact(slot, _flip(data), now)


class CompactsPastApplied(Node):
    """Labels its snapshot one slot past what its state machine applied, dropping that slot."""

    def compact(self, slot: int, data: bytes, now: float) -> Ready:
        ready = super().compact(slot, data, now)
        ready.records = [SnapshotRecord(r.slot + 1, r.data) if isinstance(r, SnapshotRecord)
                         else r for r in ready.records]  # fmt: skip
        return ready


class ServesCorruptSnapshots(Node):
    """Keeps a good snapshot but serves a corrupted copy (digest and all: a bad serializer on
    the sending side) to nodes that catch up from it."""

    def receive(self, src: str, msg: Message, now: float) -> Ready:
        good = self.snapshot
        if not isinstance(msg, CatchupRequest) or good is None:
            return super().receive(src, msg, now)
        self.snapshot = Snapshot(good.slot, _flip(good.data))
        try:
            return super().receive(src, msg, now)
        finally:
            self.snapshot = good


def node_with(
    acceptor: type[Acceptor] | None = None,
    proposer: type[Proposer] | None = None,
    learner: type[Learner] | None = None,
) -> NodeFactory:
    def build(config: CoreConfig, durable: DurableState, rng: random.Random) -> Node:
        return Node(
            config, durable, rng,
            acceptor=acceptor(durable.promised, dict(durable.accepted)) if acceptor else None,
            proposer=proposer(config.node_id, config.quorum, config.in_flight_slots_max,
                              config.batch_commands_max, config.pending_max) if proposer else None,
            learner=learner(config.quorum, dict(durable.chosen), 0) if learner else None,
        )  # fmt: skip

    return build


def checks_fired(node_factory: NodeFactory | None = None,
                 disk_factory: DiskFactory = DurableState,
                 leaves_early: EarlySend = leaves_before_durable,
                 seeds: range = SEEDS, until_any: frozenset[str] = frozenset(),
                 **faults: float) -> dict[str, int]:  # fmt: skip
    """How many seeds of the fixed set each check fired on, with static membership: these
    planted parts break rules of the Synod itself (``test_membership_plants`` breaks the
    rules of reconfiguration, with the operator on)."""
    fired: dict[str, int] = {}
    for seed in seeds:
        config = replace(config_for(seed, STEPS, nodes=3, learn_mode="broadcast"),
                         reconfigure_every_s=0.0, **faults)  # type: ignore[arg-type]
        result = Simulation(config, seed, node_factory=node_factory or node_with(),
                            disk_factory=disk_factory, stop_on_violation=False,
                            leaves_early=leaves_early).run()  # fmt: skip
        for check in {v.check for v in result.violations}:
            fired[check] = fired.get(check, 0) + 1
        if until_any & fired.keys():  # asked only whether one of these fires at all
            break
    return fired


def caught(check: str, node_factory: NodeFactory | None = None, **kwargs: Any) -> bool:
    """Whether ``check`` fires on some seed of the fixed set (stopping at the first)."""
    return checks_fired(node_factory, until_any=frozenset({check}), **kwargs).get(check, 0) > 0


def test_correct_protocol_fires_no_check_on_the_same_seeds() -> None:
    assert checks_fired() == {}


def test_check_a_proposed_catches_an_acceptor_that_corrupts_values() -> None:
    """(a) "Only a value that has been proposed may be chosen"."""
    assert caught("proposed", node_with(acceptor=CorruptsValues))


@pytest.mark.parametrize(
    "bug",
    [
        pytest.param({"node_factory": node_with(acceptor=AcceptsBelowPromise)}, id="P1a"),
        pytest.param({"disk_factory": ForgetsPromises}, id="forgets-promise"),
        pytest.param({"node_factory": node_with(proposer=IgnoresPhase1bValues)}, id="P2c"),
    ],
)
def test_check_b_single_value_catches_broken_promises_and_ignored_phase1b(
    bug: dict[str, Callable[..., object]],
) -> None:
    """(b) P2: "Only a single value is chosen" — or its consequence P2a/P2b is broken first."""
    either = frozenset({"single", "P2a", "P2b"})
    fired = checks_fired(**bug, until_any=either)  # type: ignore[arg-type]
    assert fired.get("single", 0) + fired.get("P2a", 0) + fired.get("P2b", 0) > 0, fired


def test_check_b_single_value_catches_an_acceptor_below_its_promise() -> None:
    """P1a broken: two values end up chosen in one slot."""
    assert caught("single", node_with(acceptor=AcceptsBelowPromise))


def test_check_c_learned_catches_a_learner_that_trusts_a_minority() -> None:
    """(c) "A process never learns that a value has been chosen unless it actually has been"."""
    assert caught("learned", node_with(learner=LearnsFromOneAcceptor))


def test_check_d_p2a_catches_a_proposer_that_ignores_phase1b_values() -> None:
    """(d) P2a: "every higher-numbered proposal accepted by any acceptor has value v"."""
    assert caught("P2a", node_with(proposer=IgnoresPhase1bValues))


def test_check_e_p2b_catches_a_proposer_that_ignores_phase1b_values() -> None:
    """(e) P2b: "every higher-numbered proposal issued by any proposer has value v"."""
    assert caught("P2b", node_with(proposer=IgnoresPhase1bValues))


def test_check_e_p2b_catches_a_primary_that_proposes_into_compacted_slots() -> None:
    """Compaction's safety rests on the promise's chosen index: ignore it and a new primary
    proposes new values into slots already chosen (and compacted away) — P2b breaks."""
    assert caught("P2b", node_with(proposer=IgnoresPromisedChosenIndex))


def test_check_e_p2b_catches_an_acceptor_that_forgets_its_promise_on_restart() -> None:
    """A forgotten promise lets a restarted node reissue an old ballot: P2b breaks."""
    assert caught("P2b", disk_factory=ForgetsPromises)


def test_learned_and_prefix_catch_replies_that_leave_before_the_disk() -> None:
    """Persist-then-send broken: every message leaves before its step's records are durable
    (``ready.leaves_before_durable`` answering yes to a Promise and an Accepted too). A
    crash before the write then loses acceptances already counted: learners learn values
    that were never chosen."""
    fired = checks_fired(leaves_early=lambda message, promised: True,
                         crash_between_early_send_and_persist=0.1)  # fmt: skip
    assert fired.get("learned", 0) > 0 and fired.get("prefix", 0) > 0, fired


def test_check_f_prefix_catches_a_learner_that_delivers_out_of_order() -> None:
    """(f) the learners' logs are prefixes of one another."""
    assert caught("prefix", node_with(learner=DeliversOutOfOrder))


@pytest.mark.parametrize(
    "broken", [CorruptsSnapshots, CompactsPastApplied, ServesCorruptSnapshots],
    ids=["corrupt-snapshot", "compacts-past-applied", "installs-corrupt-snapshot"],
)  # fmt: skip
def test_check_f_prefix_catches_a_snapshot_that_is_not_the_chosen_prefix(
    broken: type[Node],
) -> None:
    """(f) a log that resumes after a snapshot is a prefix of the others only if the snapshot
    is the state of the chosen prefix up to its slot: a wrong one (taken, or installed from a
    peer by catch-up) is caught."""

    def build(config: CoreConfig, durable: DurableState, rng: random.Random) -> Node:
        return broken(config, durable, rng)

    assert caught("prefix", build)


def test_check_g_liveness_catches_a_cluster_that_never_elects_a_primary() -> None:
    """(g) liveness: with the election off nobody proposes, so nothing submitted is chosen."""

    def no_election(config: CoreConfig, durable: DurableState, rng: random.Random) -> Node:
        from dataclasses import replace

        return Node(replace(config, election=False), durable, rng)

    seeds = range(8)  # every seed must fire, and each runs its full settling time: a few
    assert checks_fired(no_election, seeds=seeds).get("liveness", 0) == len(seeds)
