"""The proposer and the primary, one rule of the notes per test.

Each test's docstring quotes the sentence of ``seed/paxos-notes.md`` (or DESIGN.md §2) it
checks. Unit tests drive ``Proposer`` directly; the rest drive ``Node``s over ``fifo_net``.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paxlock.coordinator.core.ballot import ZERO_BALLOT, Ballot
from paxlock.coordinator.core.messages import (
    NOOP,
    Accept,
    AcceptedEntry,
    Batch,
    ChosenEntry,
    Envelope,
    Heartbeat,
    Nack,
    Prepare,
    Promise,
    PromiseRecord,
)
from paxlock.coordinator.core.node import CoreConfig, Node
from paxlock.coordinator.core.proposer import Proposer, Role
from paxlock.coordinator.core.ready import (
    BecamePrimary,
    DurableState,
    Phase1Started,
    Rejection,
    SteppedDown,
)

X, Y, Z, W = (Batch((c,)) for c in "xyzw")
B5 = Ballot(5, "a")
MEMBERS = ("n1", "n2", "n3")


def candidate(*, in_flight_slots_max: int = 64, batch_commands_max: int = 512,
              pending_max: int = 100) -> Proposer:  # fmt: skip
    proposer = Proposer("a", 2, in_flight_slots_max, batch_commands_max, pending_max)
    proposer.begin_phase1(B5, 1, 0.0)
    return proposer


def primary(**kw: int) -> Proposer:
    proposer = candidate(**kw)
    assert not proposer.on_promise("a", Promise(B5, 1, ()))
    assert proposer.on_promise("b", Promise(B5, 1, ()))
    assert proposer.take_office({}, 0.0) == 0
    assert proposer.role is Role.PRIMARY
    return proposer


# -- P2c: the value of phase 2a -------------------------------------------------------------


def test_P2c_b_reproposes_the_value_of_the_highest_numbered_proposal_reported_per_slot() -> None:
    """P2c(b): "v is the value of the highest-numbered proposal among all proposals numbered
    less than n accepted by the acceptors in S" — decided slot by slot."""
    proposer = candidate()
    assert not proposer.on_promise(
        "a",
        Promise(B5, 1, (AcceptedEntry(1, Ballot(2, "b"), X), AcceptedEntry(3, Ballot(1, "c"), Z))),
    )
    assert proposer.on_promise(
        "b",
        Promise(B5, 1, (AcceptedEntry(1, Ballot(3, "c"), Y), AcceptedEntry(3, Ballot(1, "c"), Z))),
    )
    assert proposer.take_office({}, 0.0) == 3
    assert proposer.role is Role.PRIMARY
    assert proposer.next_proposals(0.0) == [(1, Y), (2, NOOP), (3, Z)]
    assert proposer.next_slot == 4


def test_P2c_b_the_highest_numbered_wins_whatever_order_the_promises_arrive_in() -> None:
    """P2c(b): "the highest-numbered proposal among all proposals ... accepted by the
    acceptors in S" — the lower-numbered report arriving last must not win."""
    proposer = candidate()
    proposer.on_promise("a", Promise(B5, 1, (AcceptedEntry(1, Ballot(4, "b"), Y),)))
    proposer.on_promise("b", Promise(B5, 1, (AcceptedEntry(1, Ballot(4, "a"), X),)))
    proposer.take_office({}, 0.0)
    assert proposer.next_proposals(0.0) == [(1, Y)]


def test_P2c_a_holes_no_acceptor_in_S_accepted_anything_are_filled_with_noops() -> None:
    """P2c(a): "no acceptor in S has accepted any proposal numbered less than n" — then any
    value may be proposed; the primary fills such a hole below the highest reported slot
    with a no-op so that the log has no gaps."""
    proposer = candidate()
    proposer.on_promise("a", Promise(B5, 1, (AcceptedEntry(2, Ballot(1, "b"), X),)))
    proposer.on_promise("b", Promise(B5, 1, (AcceptedEntry(4, Ballot(1, "b"), Y),)))
    assert proposer.take_office({}, 0.0) == 4
    assert proposer.next_proposals(0.0) == [(1, NOOP), (2, X), (3, NOOP), (4, Y)]
    assert proposer.value_for(7, None) == NOOP
    assert proposer.value_for(7, AcceptedEntry(7, Ballot(1, "b"), W)) == W


def test_phase2a_slots_already_known_chosen_are_not_proposed_again() -> None:
    """Phase 2a runs for open slots only: a slot this node knows chosen, or up to a promiser's
    contiguous chosen prefix, needs no proposal (the value is fetched by catch-up)."""
    proposer = candidate()
    proposer.on_promise("a", Promise(B5, 1, (AcceptedEntry(1, Ballot(1, "b"), X),), 0))
    proposer.on_promise("b", Promise(B5, 1, (AcceptedEntry(5, Ballot(1, "b"), Y),), 2))
    assert proposer.take_office({4: W}, 0.0) == 2
    assert proposer.next_proposals(0.0) == [(3, NOOP), (5, Y)]
    assert proposer.next_slot == 6


def test_phase1a_needs_a_majority_of_distinct_acceptors_at_this_ballot() -> None:
    """Phase 2a: "If the proposer receives a response to its prepare requests (numbered n)
    from a majority of acceptors" — one acceptor answering twice, or a promise for another
    number, is not a majority."""
    proposer = candidate()
    assert not proposer.on_promise("a", Promise(B5, 1, ()))
    assert not proposer.on_promise("a", Promise(B5, 1, ()))
    assert not proposer.on_promise("b", Promise(Ballot(4, "a"), 1, ()))
    assert proposer.role is Role.CANDIDATE
    assert proposer.on_promise("c", Promise(B5, 1, ()))


# -- Multi-Paxos: phase 1 once, then phase 2 per slot ------------------------------------------


def test_multipaxos_phase1_runs_once_for_all_open_slots_then_phase2_per_slot(fifo_net) -> None:
    """DESIGN §2: the primary "runs phase 1 once for all open slots ..., then runs phase 2
    for new batches": one Prepare per acceptor, then only Accepts, one slot per batch."""
    net = fifo_net(MEMBERS, election=False)
    net.elect("n1")
    prepares = net.sent_of(Prepare)
    assert [(e.dst, e.msg) for e in prepares] == [(m, Prepare(Ballot(1, "n1"), 1)) for m in MEMBERS]
    mark = len(net.sent)
    for i in range(5):
        net.submit("n1", f"c{i}")
        net.deliver()
    assert net.sent_of(Prepare, since=mark) == []
    accepts = net.sent_of(Accept, since=mark)
    assert [(e.dst, e.msg.slot, e.msg.value) for e in accepts] == [
        (m, slot, Batch((f"c{slot - 1}",))) for slot in range(1, 6) for m in MEMBERS
    ]
    assert {e.msg.ballot for e in accepts} == {Ballot(1, "n1")}
    for member in MEMBERS:
        assert net.learned[member] == [ChosenEntry(s, Batch((f"c{s - 1}",))) for s in range(1, 6)]


def test_P2c_b_a_new_primary_reproposes_what_a_minority_accepted_and_fills_holes(fifo_net) -> None:
    """P2c(b) through the node: n1 got slot 2 accepted by n2 alone (slot 1 by no one) and
    crashed; n3's phase 1 with S = {n2, n3} must propose a no-op in slot 1 (P2c(a)) and n1's
    value in slot 2 (P2c(b)), numbered with n3's new ballot."""
    net = fifo_net(MEMBERS, election=False)
    net.elect("n1")
    net.submit("n1", "x")  # slot 1
    net.submit("n1", "y")  # slot 2
    net.deliver(lambda e: isinstance(e.msg, Accept) and e.msg.slot == 2 and e.dst == "n2")
    net.drop(lambda e: True)  # everything else is lost
    assert net.nodes["n2"].accepted_entries() == {
        2: AcceptedEntry(2, Ballot(1, "n1"), Batch(("y",)))
    }
    # n1 is down from here on
    down = lambda e: "n1" in (e.src, e.dst)  # noqa: E731
    net.run_phase1("n3")
    net.drop(down)
    mark = len(net.sent)
    net.deliver(lambda e: not down(e) and not isinstance(e.msg, Accept))
    net.drop(down)
    assert net.events_of(BecamePrimary) == [("n1", BecamePrimary(Ballot(1, "n1"), 0)),
                                           ("n3", BecamePrimary(Ballot(2, "n3"), 2))]  # fmt: skip
    accepts = [(e.msg.slot, e.msg.value) for e in net.sent_of(Accept, since=mark) if e.dst == "n3"]
    assert accepts == [(1, NOOP), (2, Batch(("y",)))]
    assert {e.msg.ballot for e in net.sent_of(Accept, since=mark)} == {Ballot(2, "n3")}
    net.deliver(lambda e: not down(e))
    for member in ("n2", "n3"):
        assert net.learned[member] == [ChosenEntry(1, NOOP), ChosenEntry(2, Batch(("y",)))]


# -- pipelining and batching ---------------------------------------------------------------------


def test_pipelining_at_most_window_slots_are_in_flight() -> None:
    """DESIGN §2: phase 2 is "pipelined (several slots in flight)" and every in-flight window
    is bounded: a new slot opens only when one is chosen."""
    proposer = primary(in_flight_slots_max=2, batch_commands_max=1)
    for i in range(5):
        assert proposer.enqueue(i)
    assert proposer.next_proposals(1.0) == [(1, Batch((0,))), (2, Batch((1,)))]
    assert proposer.next_proposals(1.0) == []
    assert sorted(proposer.in_flight) == [1, 2]
    proposer.on_chosen(2)
    assert proposer.next_proposals(1.0) == [(3, Batch((2,)))]
    proposer.on_chosen(1)
    proposer.on_chosen(3)
    assert proposer.next_proposals(1.0) == [(4, Batch((3,))), (5, Batch((4,)))]
    assert len(proposer.pending) == 0


def test_batching_waiting_commands_go_out_batch_commands_max_per_slot() -> None:
    """DESIGN §2: "A slot's value is a batch of commands (group commit)", bounded by
    ``batch_commands_max``; commands keep their submission order across slots."""
    proposer = primary(in_flight_slots_max=64, batch_commands_max=3)
    for i in range(7):
        proposer.enqueue(i)
    assert proposer.next_proposals(0.0) == [
        (1, Batch((0, 1, 2))),
        (2, Batch((3, 4, 5))),
        (3, Batch((6,))),
    ]


def test_recovery_slots_count_against_the_window_and_go_before_new_batches() -> None:
    """Phase 2a re-proposals (P2c) come first, and the window bounds them too."""
    proposer = candidate(in_flight_slots_max=2)
    proposer.on_promise("a", Promise(B5, 1, (AcceptedEntry(3, Ballot(1, "b"), X),)))
    proposer.on_promise("b", Promise(B5, 1, ()))
    assert proposer.take_office({}, 0.0) == 3
    proposer.enqueue("new")
    assert proposer.next_proposals(0.0) == [(1, NOOP), (2, NOOP)]
    proposer.on_chosen(1)
    assert proposer.next_proposals(0.0) == [(3, X)]
    proposer.on_chosen(2)
    assert proposer.next_proposals(0.0) == [(4, Batch(("new",)))]


def test_pipelining_through_the_node_sends_window_slots_then_one_per_chosen_slot(fifo_net) -> None:
    """The pipelining bound seen on the wire: with in_flight_slots_max=2 only slots 1 and 2 are
    proposed until one is chosen."""
    net = fifo_net(MEMBERS, election=False, in_flight_slots_max=2, batch_commands_max=1)
    net.elect("n1")
    mark = len(net.sent)
    for i in range(4):
        net.submit("n1", i)
    assert sorted({e.msg.slot for e in net.sent_of(Accept, since=mark)}) == [1, 2]
    net.deliver()
    assert sorted({e.msg.slot for e in net.sent_of(Accept, since=mark)}) == [1, 2, 3, 4]
    assert [e.slot for e in net.learned["n2"]] == [1, 2, 3, 4]


def test_a_full_queue_rejects_the_command_at_once() -> None:
    """A limit on everything (STYLE): beyond ``pending_max`` queued commands a submit is
    rejected, not queued, and the rejection says it was never proposed."""
    node = Node(CoreConfig("n1", ("n1",), election=False, pending_max=2, in_flight_slots_max=1),
                DurableState(), random.Random(0))  # fmt: skip
    node.run_phase1(0.0)
    node.receive("n1", Promise(Ballot(1, "n1"), 1, ()), 0.0)
    assert node.role is Role.PRIMARY
    assert node.submit("a", 0.0).rejected == []  # in flight
    assert node.submit("b", 0.0).rejected == []  # pending
    assert node.submit("c", 0.0).rejected == []  # pending
    assert node.submit("d", 0.0).rejected == [Rejection("d", "n1", False)]


# -- stepping down -------------------------------------------------------------------------------


def make_primary_with_work() -> tuple[Node, float]:
    """n1 primary at (1, n1), in_flight_slots_max=1: "a" sent in an Accept (slot 1), "b" still queued."""
    node = Node(CoreConfig("n1", MEMBERS, election=False, in_flight_slots_max=1), DurableState(),
                random.Random(0))  # fmt: skip
    node.run_phase1(0.0)
    node.receive("n1", Promise(Ballot(1, "n1"), 1, ()), 0.0)
    node.receive("n2", Promise(Ballot(1, "n1"), 1, ()), 0.0)
    assert node.role is Role.PRIMARY
    sent = node.submit("a", 0.0).messages
    assert [e.msg for e in sent] == [Accept(Ballot(1, "n1"), 1, Batch(("a",)), 0)] * 3
    assert node.submit("b", 0.0).messages == []
    return node, 0.1


def test_progress_the_primary_steps_down_on_a_prepare_with_a_higher_number() -> None:
    """Progress: "By abandoning a proposal and trying again if it learns about some request
    with a higher proposal number..." — a command already sent may still be chosen
    (maybe_chosen), a queued one was never proposed."""
    node, now = make_primary_with_work()
    ready = node.receive("n2", Prepare(Ballot(2, "n2"), 1), now)
    assert ready.events == [SteppedDown(Ballot(1, "n1"), Ballot(2, "n2"))]
    assert ready.rejected == [Rejection("a", "n2", True), Rejection("b", "n2", False)]
    assert node.role is Role.FOLLOWER
    # (n1's own Accept never reached its acceptor: nothing to report)
    assert ready.messages == [Envelope("n1", "n2", Promise(Ballot(2, "n2"), 1, (), 0,
                                                           node.schedule.to_state()))]
    # nothing more is proposed at the abandoned ballot
    assert node.tick(now + 10).messages == []


def test_progress_the_primary_steps_down_on_a_nack_reporting_a_higher_promise() -> None:
    """Progress: the proposer "learns about some request with a higher proposal number" from
    a Nack to its own request, and abandons its ballot."""
    node, now = make_primary_with_work()
    ready = node.receive("n3", Nack(Ballot(1, "n1"), Ballot(3, "n3")), now)
    assert ready.events == [SteppedDown(Ballot(1, "n1"), Ballot(3, "n3"))]
    assert ready.rejected == [Rejection("a", "n3", True), Rejection("b", "n3", False)]
    assert node.role is Role.FOLLOWER
    # and trying again it picks a number above the one it learned about
    assert node.run_phase1(now).events == [Phase1Started(Ballot(4, "n1"), 1)]


def test_a_nack_for_an_older_ballot_of_its_own_is_ignored() -> None:
    """A Nack answers one request; one for a ballot the node no longer uses says nothing
    about its current ballot."""
    node, now = make_primary_with_work()
    ready = node.receive("n3", Nack(Ballot(0, "n1"), Ballot(1, "n3")), now)
    assert ready.events == [] and ready.rejected == []
    assert node.role is Role.PRIMARY


def test_after_stepping_down_a_node_does_not_name_itself_as_the_primary() -> None:
    """A node that abandoned its ballot is no longer the primary: a command submitted to it
    afterwards is rejected with a hint other than itself (the higher ballot's node, or none
    until a primary is heard)."""
    node, now = make_primary_with_work()
    node.receive("n2", Prepare(Ballot(2, "n2"), 1), now)
    ready = node.submit("c", now)
    assert len(ready.rejected) == 1
    assert ready.rejected[0].primary_hint != "n1"


# -- unique ballots ------------------------------------------------------------------------------


def test_ballots_are_unique_per_node_a_successor_carries_the_issuers_id() -> None:
    """"Different proposers choose their numbers from disjoint sets" (Paxos Made Simple):
    ballots are (round, node) and a node only issues ballots with its own id."""
    assert Ballot(3, "zz").successor("a") == Ballot(4, "a")
    assert Ballot(3, "a") < Ballot(3, "b") < Ballot(4, "a")
    assert ZERO_BALLOT < Ballot(0, "a")
    with pytest.raises(AssertionError):
        Proposer("a", 2, 1, 1, 1).begin_phase1(Ballot(1, "b"), 1, 0.0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20), st.sampled_from(["n2", "n3"])), max_size=6))
def test_a_new_ballot_carries_the_nodes_id_and_exceeds_every_ballot_it_has_seen(
    seen: list[tuple[int, str]],
) -> None:
    """Progress: the distinguished proposer must use "a proposal with number greater than any
    already used"; and two nodes in the same state still issue different numbers."""
    issued = []
    for me in ("n1", "n2"):
        node = Node(CoreConfig(me, MEMBERS, election=False), DurableState(), random.Random(0))
        for rnd, src in seen:
            node.receive(src, Prepare(Ballot(rnd, src), 1), 0.0)
            node.receive(src, Heartbeat(Ballot(rnd + 1, src), 0), 0.0)
        ready = node.run_phase1(0.0)
        (event,) = ready.events
        assert isinstance(event, Phase1Started)
        assert event.ballot.node == me
        assert all(event.ballot > Ballot(rnd + 1, src) for rnd, src in seen)
        assert ready.records[-1] == PromiseRecord(event.ballot)
        assert {e.msg for e in ready.messages} == {Prepare(event.ballot, 1)}
        issued.append(event.ballot)
    assert issued[0] != issued[1]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.just(("phase1",)),
            st.just(("restart",)),
            st.just(("deliver",)),
            st.tuples(st.just("prepare"), st.integers(0, 10)),
        ),
        min_size=1,
        max_size=25,
    )
)
def test_a_restarted_node_never_reissues_a_ballot_it_used(ops: list[tuple]) -> None:
    """Unique proposal numbers across crashes: "a proposer ... must be able to remember
    [the highest-numbered proposal it has tried to issue] even if it fails and is then
    restarted" (Paxos Made Simple §2.2). The node is rebuilt from the DurableState its own
    records produced and must never issue a ballot it issued before."""
    disk = DurableState()
    rng = random.Random(1)
    config = CoreConfig("n1", MEMBERS, election=False)
    node = Node(config, disk.copy(), rng)
    node.start(0.0)
    issued: list[Ballot] = []
    inbox: list[Envelope] = []

    def absorb(ready) -> None:
        for record in ready.records:
            disk.apply(record)
        inbox.extend(e for e in ready.messages if e.dst == "n1")
        issued.extend(e.ballot for e in ready.events if isinstance(e, Phase1Started))

    for op in ops:
        match op:
            case ("phase1",):
                absorb(node.run_phase1(0.0))
            case ("restart",):
                node = Node(config, disk.copy(), rng)
                inbox.clear()  # messages in flight to the old incarnation are lost
                absorb(node.start(0.0))
            case ("deliver",):
                pending, inbox[:] = list(inbox), []
                for envelope in pending:
                    absorb(node.receive(envelope.src, envelope.msg, 0.0))
            case ("prepare", rnd):
                absorb(node.receive("n2", Prepare(Ballot(rnd, "n2"), 1), 0.0))
    assert len(issued) == len(set(issued))
    assert issued == sorted(issued)
    assert all(b.node == "n1" for b in issued)
