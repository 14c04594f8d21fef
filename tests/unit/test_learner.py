"""Learning a chosen value: the notes' three methods, one rule per test.

Each test's docstring quotes the sentence of ``seed/paxos-notes.md`` it checks.
"""

from __future__ import annotations

import pytest

from paxlock.coordinator.core.ballot import Ballot
from paxlock.coordinator.core.learner import Learner, LearnMode
from paxlock.coordinator.core.messages import (
    Accepted,
    Batch,
    Chosen,
    ChosenEntry,
    ChosenRecord,
    Record,
)

X, Y, Z = (Batch((c,)) for c in "xyz")
B1, B2 = Ballot(1, "a"), Ballot(2, "b")
MEMBERS = ("n1", "n2", "n3")


# -- the learner's rule --------------------------------------------------------------------


def test_method1_a_value_is_learned_once_a_majority_of_acceptors_accepted_it() -> None:
    """Method 1: "To learn that a value has been chosen, a learner must find out that a
    proposal has been accepted by a majority of acceptors." """
    learner = Learner(2, {}, 0)
    records: list[Record] = []
    assert not learner.on_accepted("a", 1, B1, X, records)
    assert not learner.on_accepted("a", 1, B1, X, records)  # one acceptor counts once
    assert records == [] and learner.chosen == {}
    assert learner.on_accepted("b", 1, B1, X, records)
    assert records == [ChosenRecord(1, X)]
    assert learner.chosen == {1: X}
    assert not learner.on_accepted("c", 1, B1, X, records)  # already known
    assert records == [ChosenRecord(1, X)]


def test_method1_acceptances_at_different_ballots_do_not_add_up_to_a_majority() -> None:
    """Method 1: chosen means "a proposal has been accepted by a majority" — one proposal,
    i.e. one number: two acceptors that accepted the same value under different numbers
    are not a majority for either proposal."""
    learner = Learner(2, {}, 0)
    records: list[Record] = []
    assert not learner.on_accepted("a", 1, B1, X, records)
    assert not learner.on_accepted("b", 1, B2, X, records)
    assert learner.chosen == {} and records == []
    assert learner.on_accepted("c", 1, B2, X, records)
    assert learner.chosen == {1: X}


def test_method1_five_acceptors_split_two_and_two_across_ballots_choose_nothing() -> None:
    """Method 1 with five acceptors (majority 3): 2 at one number + 2 at another is not a
    majority at any number; the third at the same number is."""
    learner = Learner(3, {}, 0)
    records: list[Record] = []
    for acceptor, ballot in (("a", B1), ("b", B1), ("c", B2), ("d", B2)):
        assert not learner.on_accepted(acceptor, 7, ballot, Y, records)
    assert learner.chosen == {}
    assert learner.on_accepted("e", 7, B2, Y, records)
    assert records == [ChosenRecord(7, Y)]


def test_learned_values_are_delivered_in_slot_order_exactly_once_across_holes() -> None:
    """A learner hands chosen values to the state machine in slot order, each once: slots
    learned beyond a hole wait for it."""
    learner = Learner(2, {}, 0)
    records: list[Record] = []
    out: list[ChosenEntry] = []
    assert learner.learn(3, Z, records)
    assert learner.learn(2, Y, records)
    learner.deliver(out)
    assert out == [] and learner.chosen_index == 0
    assert learner.learn(1, X, records)
    learner.deliver(out)
    assert out == [ChosenEntry(1, X), ChosenEntry(2, Y), ChosenEntry(3, Z)]
    assert learner.chosen_index == 3
    learner.deliver(out)
    assert len(out) == 3  # nothing twice
    # learning an applied slot again is a no-op, and writes nothing
    assert not learner.learn(2, Y, records)
    assert not learner.on_accepted("a", 2, B1, Y, records)
    assert not learner.on_accepted("b", 2, B1, Y, records)
    assert records == [ChosenRecord(3, Z), ChosenRecord(2, Y), ChosenRecord(1, X)]
    assert learner.highest_known() == 3


def test_a_learner_restarted_from_its_chosen_log_redelivers_it_in_order() -> None:
    """Exactly once per incarnation: a learner rebuilt from the durable chosen log hands it
    over again, in order, from slot 1, and stops at the first hole."""
    learner = Learner(2, {2: Y, 1: X, 4: Z}, 0)
    out: list[ChosenEntry] = []
    learner.deliver(out)
    assert out == [ChosenEntry(1, X), ChosenEntry(2, Y)]
    assert learner.highest_known() == 4


def test_only_a_single_value_is_chosen_a_chosen_slot_never_changes() -> None:
    """Safety: "Only a single value is chosen" — learning another value for a known slot is a
    programmer error, asserted."""
    learner = Learner(2, {}, 0)
    learner.learn(1, X, [])
    assert not learner.learn(1, X, [])
    with pytest.raises(AssertionError):
        learner.learn(1, Y, [])


# -- the three methods: where acceptances go ------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "k"),
    [("broadcast", "broadcast", 1), ("primary", "primary", 1), ("set:1", "set", 1),
     ("set:3", "set", 3), ("set:12", "set", 12)],
)  # fmt: skip
def test_learn_mode_parse_accepts_the_three_methods(text: str, kind: str, k: int) -> None:
    """The three methods of the notes are selectable: broadcast | primary | set:K."""
    mode = LearnMode.parse(text)
    assert (mode.kind, mode.k) == (kind, k)
    assert str(mode) == text


@pytest.mark.parametrize(
    "text",
    ["", "Broadcast", "primary ", "all", "set", "set:", "set:0", "set:-1", "set:x", "set:2:3",
     "set:1.5", "broadcast:2", "primary:1"],
)  # fmt: skip
def test_learn_mode_parse_rejects_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match="broadcast, primary or set:K"):
        LearnMode.parse(text)


def test_method1_broadcast_targets_every_learner() -> None:
    """Method 1: "have each acceptor, whenever it accepts a proposal, respond to all
    learners, sending them the proposal." """
    assert LearnMode.parse("broadcast").accepted_targets("n2", MEMBERS) == MEMBERS
    assert not LearnMode.parse("broadcast").tells_learners()


def test_method2_primary_targets_the_distinguished_learner_only() -> None:
    """Method 2: "have the acceptors respond with their acceptances to a distinguished
    learner, which in turn informs the other learners when a value has been chosen." """
    mode = LearnMode.parse("primary")
    assert mode.accepted_targets("n2", MEMBERS) == ("n2",)
    assert mode.tells_learners()


def test_method3_set_targets_k_distinguished_learners_starting_at_the_primary() -> None:
    """Method 3: "the acceptors could respond with their acceptances to some set of
    distinguished learners" — the primary and the next K-1 members, wrapping around."""
    assert LearnMode.parse("set:2").accepted_targets("n3", MEMBERS) == ("n3", "n1")
    assert LearnMode.parse("set:3").accepted_targets("n2", MEMBERS) == ("n2", "n3", "n1")
    assert LearnMode.parse("set:9").accepted_targets("n1", MEMBERS) == MEMBERS
    assert LearnMode.parse("set:2").tells_learners()


@pytest.mark.parametrize(
    ("text", "acceptors", "learners", "expected"),
    [
        ("broadcast", 3, 3, 9), ("broadcast", 5, 5, 25), ("broadcast", 3, 5, 15),
        ("primary", 3, 3, 6), ("primary", 5, 5, 10), ("primary", 3, 7, 10),
        ("set:1", 5, 5, 10), ("set:2", 3, 3, 12), ("set:3", 5, 5, 30), ("set:5", 5, 5, 50),
        ("set:9", 3, 3, 18),
    ],
)  # fmt: skip
def test_messages_per_decision_follow_the_notes(
    text: str, acceptors: int, learners: int, expected: int
) -> None:
    """Method 1 "requires ... a number of responses equal to the product of the number of
    acceptors and the number of learners"; method 2 "a number of responses equal only to the
    sum"; method 3, K distinguished learners, K times the sum (K capped at the learners)."""
    assert LearnMode.parse(text).messages_per_decision(acceptors, learners) == expected


# -- the three methods through the nodes --------------------------------------------------------


def decide_one(fifo_net, mode: str):
    net = fifo_net(MEMBERS, election=False, learn_mode=LearnMode.parse(mode))
    net.elect("n1")
    mark = len(net.sent)
    net.submit("n1", "x")
    net.deliver()
    accepted = {(e.src, e.dst) for e in net.sent_of(Accepted, since=mark)}
    chosen = sorted((e.src, e.dst) for e in net.sent_of(Chosen, since=mark))
    for member in MEMBERS:
        assert net.learned[member] == [ChosenEntry(1, X)]
    return net, accepted, chosen


def test_method1_each_acceptor_tells_each_learner_and_every_learner_learns_itself(
    fifo_net,
) -> None:
    """Method 1: each acceptor responds "to all learners"; every learner finds the majority
    itself, so no learner tells another."""
    _, accepted, chosen = decide_one(fifo_net, "broadcast")
    assert accepted == {(a, b) for a in MEMBERS for b in MEMBERS}
    assert chosen == []


def test_method2_the_distinguished_learner_tells_the_rest_with_chosen(fifo_net) -> None:
    """Method 2: acceptances go "to a distinguished learner, which in turn informs the other
    learners when a value has been chosen" — one extra round."""
    _, accepted, chosen = decide_one(fifo_net, "primary")
    assert accepted == {(a, "n1") for a in MEMBERS}
    assert chosen == [("n1", m) for m in MEMBERS]


def test_method3_each_distinguished_learner_informs_all_learners(fifo_net) -> None:
    """Method 3: acceptances go to "some set of distinguished learners, each of which can
    then inform all the learners when a value has been chosen"; a learner told twice still
    delivers the value once."""
    _, accepted, chosen = decide_one(fifo_net, "set:2")
    assert accepted == {(a, d) for a in MEMBERS for d in ("n1", "n2")}
    assert chosen == sorted([("n1", m) for m in MEMBERS] + [("n2", m) for m in MEMBERS])


def test_method2_learning_stalls_while_the_distinguished_learner_is_cut_off(fifo_net) -> None:
    """Method 2 "is also less reliable, since the distinguished learner could fail": when the
    acceptances to it are lost, no other learner learns, although a majority accepted."""
    net = fifo_net(MEMBERS, election=False, learn_mode=LearnMode.parse("primary"))
    net.elect("n1")
    net.submit("n1", "x")
    net.deliver(lambda e: not isinstance(e.msg, Accepted))
    net.drop(lambda e: isinstance(e.msg, Accepted))
    assert all(1 in net.nodes[m].accepted_entries() for m in MEMBERS)
    assert all(net.learned[m] == [] for m in MEMBERS)
    assert net.sent_of(Chosen) == []
