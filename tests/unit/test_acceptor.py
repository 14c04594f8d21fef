"""The acceptor, one rule of the notes per test (as etcd-raft's raft_paper_test.go).

Each test's docstring quotes the sentence of ``seed/paxos-notes.md`` it checks.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from paxlock.coordinator.core.acceptor import Acceptor
from paxlock.coordinator.core.ballot import ZERO_BALLOT, Ballot
from paxlock.coordinator.core.messages import (
    Accept,
    AcceptedEntry,
    AcceptRecord,
    Batch,
    Nack,
    Prepare,
    Promise,
    PromiseRecord,
    Record,
)
from paxlock.coordinator.core.ready import DurableState

X = Batch(("x",))
Y = Batch(("y",))
Z = Batch(("z",))


def fresh() -> Acceptor:
    return Acceptor(ZERO_BALLOT, {})


def promised_at(ballot: Ballot) -> Acceptor:
    acceptor = fresh()
    acceptor.on_prepare(Prepare(ballot, 1), [])
    assert acceptor.promised == ballot
    return acceptor


# -- P1 and P1a (phase 2b) -------------------------------------------------------------------


def test_P1_an_acceptor_must_accept_the_first_proposal_that_it_receives() -> None:
    """P1. An acceptor must accept the first proposal that it receives."""
    acceptor = fresh()
    records: list[Record] = []
    reply = acceptor.on_accept(Accept(Ballot(1, "b"), 1, X, 0), records)
    assert reply == AcceptedEntry(1, Ballot(1, "b"), X)
    assert acceptor.accepted == {1: AcceptedEntry(1, Ballot(1, "b"), X)}
    # Accepting at a ballot above the promise also promises it (nothing lower may follow).
    assert acceptor.promised == Ballot(1, "b")
    assert records == [PromiseRecord(Ballot(1, "b")), AcceptRecord(1, Ballot(1, "b"), X)]


def test_P1a_accepts_unless_it_has_responded_to_a_prepare_request_having_a_greater_number() -> (
    None
):
    """P1a / phase 2b: "If an acceptor receives an accept request for a proposal numbered n,
    it accepts the proposal unless it has already responded to a prepare request having a
    number greater than n." """
    acceptor = promised_at(Ballot(5, "b"))
    records: list[Record] = []
    reply = acceptor.on_accept(Accept(Ballot(4, "z"), 1, X, 0), records)
    assert reply == Nack(Ballot(4, "z"), Ballot(5, "b"))
    assert records == []
    assert acceptor.accepted == {}
    assert acceptor.promised == Ballot(5, "b")


def test_P1a_a_ballot_of_the_same_round_from_a_lower_node_id_is_also_lower() -> None:
    """P1a: "...unless it has already responded to a prepare request having a number greater
    than n" — ballots are (round, node), so (5, "a") < (5, "b")."""
    acceptor = promised_at(Ballot(5, "b"))
    assert acceptor.on_accept(Accept(Ballot(5, "a"), 1, X, 0), []) == Nack(
        Ballot(5, "a"), Ballot(5, "b")
    )


def test_P1a_an_accept_numbered_equal_to_the_promise_is_accepted() -> None:
    """P1a: it accepts the proposal "unless it has already responded to a prepare request
    having a number greater than n" — equal is not greater."""
    acceptor = promised_at(Ballot(5, "b"))
    records: list[Record] = []
    reply = acceptor.on_accept(Accept(Ballot(5, "b"), 3, X, 0), records)
    assert reply == AcceptedEntry(3, Ballot(5, "b"), X)
    assert records == [AcceptRecord(3, Ballot(5, "b"), X)]  # the promise did not change


def test_P1a_an_accept_numbered_above_the_promise_is_accepted_and_raises_the_promise() -> None:
    """P1a: nothing greater than n was promised, so the proposal is accepted."""
    acceptor = promised_at(Ballot(5, "b"))
    records: list[Record] = []
    reply = acceptor.on_accept(Accept(Ballot(6, "a"), 1, X, 0), records)
    assert reply == AcceptedEntry(1, Ballot(6, "a"), X)
    assert acceptor.promised == Ballot(6, "a")
    assert records == [PromiseRecord(Ballot(6, "a")), AcceptRecord(1, Ballot(6, "a"), X)]


def test_P2a_a_higher_numbered_accept_replaces_the_value_kept_in_the_slot() -> None:
    """The acceptor keeps, per slot, "the highest-numbered proposal (if any) that it has
    accepted" — what phase 1b must report for P2c."""
    acceptor = fresh()
    acceptor.on_accept(Accept(Ballot(1, "a"), 1, X, 0), [])
    records: list[Record] = []
    acceptor.on_accept(Accept(Ballot(2, "b"), 1, Y, 0), records)
    assert acceptor.accepted == {1: AcceptedEntry(1, Ballot(2, "b"), Y)}
    assert records == [PromiseRecord(Ballot(2, "b")), AcceptRecord(1, Ballot(2, "b"), Y)]


# -- phase 1b ------------------------------------------------------------------------------


def test_phase1b_a_greater_prepare_gets_a_promise_and_the_highest_numbered_accepted_proposals() -> (
    None
):
    """Phase 1b: "If an acceptor receives a prepare request with number n greater than that of
    any prepare request to which it has already responded, then it responds to the request
    with a promise not to accept any more proposals numbered less than n and with the
    highest-numbered proposal (if any) that it has accepted." """
    acceptor = fresh()
    acceptor.on_accept(Accept(Ballot(1, "a"), 1, X, 0), [])
    acceptor.on_accept(Accept(Ballot(1, "a"), 2, X, 0), [])
    acceptor.on_accept(Accept(Ballot(2, "b"), 2, Y, 0), [])  # slot 2: highest is (2, b)
    acceptor.on_accept(Accept(Ballot(2, "b"), 5, Z, 0), [])
    records: list[Record] = []
    reply = acceptor.on_prepare(Prepare(Ballot(3, "c"), 1), records)
    assert reply == Promise(
        Ballot(3, "c"),
        1,
        (
            AcceptedEntry(1, Ballot(1, "a"), X),
            AcceptedEntry(2, Ballot(2, "b"), Y),
            AcceptedEntry(5, Ballot(2, "b"), Z),
        ),
    )
    assert acceptor.promised == Ballot(3, "c")
    assert records == [PromiseRecord(Ballot(3, "c"))]
    # "a promise not to accept any more proposals numbered less than n"
    assert acceptor.on_accept(Accept(Ballot(2, "b"), 6, X, 0), []) == Nack(
        Ballot(2, "b"), Ballot(3, "c")
    )


def test_phase1b_reports_only_the_slots_from_from_slot_on() -> None:
    """Phase 1b in Multi-Paxos: one prepare covers every slot from ``from_slot`` on, and the
    promise reports the accepted proposals of exactly those slots, in slot order."""
    acceptor = fresh()
    for slot in (4, 1, 3, 2):
        acceptor.on_accept(Accept(Ballot(1, "a"), slot, Batch((slot,)), 0), [])
    reply = acceptor.on_prepare(Prepare(Ballot(2, "b"), 3), [])
    assert reply == Promise(
        Ballot(2, "b"),
        3,
        (
            AcceptedEntry(3, Ballot(1, "a"), Batch((3,))),
            AcceptedEntry(4, Ballot(1, "a"), Batch((4,))),
        ),
    )
    assert acceptor.on_prepare(Prepare(Ballot(3, "b"), 5), []) == Promise(Ballot(3, "b"), 5, ())


def test_phase1b_a_fresh_acceptor_promises_with_nothing_accepted() -> None:
    """Phase 1b: "...and with the highest-numbered proposal (if any)" — here none."""
    records: list[Record] = []
    assert fresh().on_prepare(Prepare(Ballot(1, "a"), 1), records) == Promise(
        Ballot(1, "a"), 1, ()
    )
    assert records == [PromiseRecord(Ballot(1, "a"))]


def test_phase1b_a_lower_prepare_gets_a_nack_carrying_the_higher_promise() -> None:
    """Phase 1b answers only "a prepare request with number n greater than that of any
    prepare request to which it has already responded"; a lower one gets a Nack that tells
    the proposer the higher number (so it can abandon its proposal, notes' Progress)."""
    acceptor = promised_at(Ballot(7, "c"))
    acceptor.on_accept(Accept(Ballot(7, "c"), 1, X, 0), [])
    records: list[Record] = []
    assert acceptor.on_prepare(Prepare(Ballot(6, "z"), 1), records) == Nack(
        Ballot(6, "z"), Ballot(7, "c")
    )
    assert records == []
    assert acceptor.promised == Ballot(7, "c")
    assert acceptor.accepted == {1: AcceptedEntry(1, Ballot(7, "c"), X)}


def test_phase1b_a_prepare_equal_to_the_promise_is_answered_again_without_a_new_record() -> None:
    """Phase 1b: a retransmitted prepare request with the number already promised is the same
    promise; answering it again promises nothing new, so nothing is persisted."""
    acceptor = promised_at(Ballot(4, "a"))
    acceptor.on_accept(Accept(Ballot(4, "a"), 2, X, 0), [])
    records: list[Record] = []
    reply = acceptor.on_prepare(Prepare(Ballot(4, "a"), 1), records)
    assert reply == Promise(Ballot(4, "a"), 1, (AcceptedEntry(2, Ballot(4, "a"), X),))
    assert records == []


def test_phase2b_an_idempotent_retransmission_of_an_accept_writes_no_record() -> None:
    """Every durable change is a record, and only a change is: accepting the same proposal
    (same number, slot and value) a second time changes nothing."""
    acceptor = fresh()
    acceptor.on_accept(Accept(Ballot(1, "a"), 1, X, 0), [])
    records: list[Record] = []
    assert acceptor.on_accept(Accept(Ballot(1, "a"), 1, X, 3), records) == AcceptedEntry(
        1, Ballot(1, "a"), X
    )
    assert records == []


def test_promise_own_persists_the_proposers_own_ballot_before_phase1a_leaves() -> None:
    """Phase 1a: "A proposer selects a proposal number n..." — its own acceptor promises n
    at once, as a record, so a restart can never select n again."""
    acceptor = promised_at(Ballot(2, "b"))
    records: list[Record] = []
    acceptor.promise_own(Ballot(3, "a"), records)
    assert records == [PromiseRecord(Ballot(3, "a"))]
    assert acceptor.promised == Ballot(3, "a")


# -- invariants over any sequence of requests --------------------------------------------------

BALLOTS = [Ballot(r, n) for r in range(0, 4) for n in ("a", "b")][1:]  # (0, b) upwards


def value_of(ballot: Ballot, slot: int) -> Batch:
    """One proposer issues one value per slot at one ballot (the notes' proposals)."""
    return Batch((f"{ballot}@{slot}",))


requests = st.lists(
    st.tuples(
        st.sampled_from(["prepare", "accept"]),
        st.sampled_from(BALLOTS),
        st.integers(min_value=1, max_value=3),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(requests)
def test_a_promise_never_goes_down_and_records_describe_every_durable_change(
    steps: list[tuple[str, Ballot, int]],
) -> None:
    """Phase 1b's promise is "not to accept any more proposals numbered less than n": it only
    ever rises, no accepted proposal is numbered above it, a refusal carries the promise, and
    the records returned are exactly the durable changes (replaying them rebuilds the
    acceptor; a step that changed nothing returns none)."""
    acceptor = fresh()
    disk = DurableState()
    for kind, ballot, slot in steps:
        before_promise = acceptor.promised
        before_accepted = dict(acceptor.accepted)
        records: list[Record] = []
        if kind == "prepare":
            reply = acceptor.on_prepare(Prepare(ballot, slot), records)
        else:
            reply = acceptor.on_accept(Accept(ballot, slot, value_of(ballot, slot), 0), records)
        # refusals: exactly the requests numbered below the promise, carrying it
        if ballot < before_promise:
            assert reply == Nack(ballot, before_promise)
        else:
            assert not isinstance(reply, Nack)
        assert acceptor.promised >= before_promise
        assert acceptor.promised == max(before_promise, ballot)
        assert all(e.ballot <= acceptor.promised for e in acceptor.accepted.values())
        changed = (acceptor.promised, acceptor.accepted) != (before_promise, before_accepted)
        assert bool(records) == changed
        for record in records:
            disk.apply(record)
        assert disk.promised == acceptor.promised
        assert disk.accepted == acceptor.accepted
