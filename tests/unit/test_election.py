"""The election of the distinguished proposer (the *primary*), one rule per test.

Time is only ever the ``now`` passed in; randomness only the injected ``random.Random``.
Docstrings quote the notes' Progress section or DESIGN.md §2.
"""

from __future__ import annotations

import random

import pytest

from paxlock.coordinator.core.ballot import Ballot
from paxlock.coordinator.core.confirm import Rounds
from paxlock.coordinator.core.election import Election
from paxlock.coordinator.core.messages import (
    Accept,
    Batch,
    Envelope,
    Heartbeat,
    HeartbeatAck,
    Nack,
    Prepare,
    PreVote,
    PreVoteReply,
    Promise,
    PromiseRecord,
)
from paxlock.coordinator.core.node import CoreConfig, Node
from paxlock.coordinator.core.proposer import Role
from paxlock.coordinator.core.ready import (
    BecamePrimary,
    DurableState,
    Phase1Started,
    SteppedDown,
)

T = 0.5
MEMBERS = ("n1", "n2", "n3")


def node(node_id: str = "n2", seed: int = 0, members: tuple[str, ...] = MEMBERS) -> Node:
    config = CoreConfig(node_id, members, election_timeout_s=T, heartbeat_s=0.1, retry_s=0.2)
    return Node(config, DurableState(), random.Random(seed))


def make_primary(node_id: str = "n1", now: float = 0.0) -> Node:
    n = node(node_id)
    n.start(now)
    n.run_phase1(now)
    ballot = n.ballot
    for member in MEMBERS[:2]:
        n.receive(member, Promise(ballot, 1, (), 0), now)
    assert n.role is Role.PRIMARY
    return n


def phase1_started(ready) -> list[Phase1Started]:
    return [e for e in ready.events if isinstance(e, Phase1Started)]


# -- no disruption of a live primary ------------------------------------------------------


def test_a_follower_that_heard_a_live_primary_within_T_never_starts_phase1() -> None:
    """DESIGN §2: "A node that has heard from a live primary within T does not start one".
    Heartbeats arrive at irregular gaps, all shorter than T. Time only moves forward; the
    follower is ticked whenever its Ready asks, and also just before each next heartbeat
    (the latest instant still within T of the previous one). Over 60 s it never starts
    phase 1 and never sends a Prepare."""
    follower = node("n2", seed=7)
    deadline = follower.start(0.0).deadline
    gaps = random.Random(99)
    now, beat, ticks = 0.0, Ballot(1, "n1"), 0
    while now < 60.0:
        heard_at = now + gaps.uniform(0.01, T - 1e-6)
        while deadline is not None and deadline < heard_at:  # the runtime's timer fires
            ready = follower.tick(deadline)
            assert phase1_started(ready) == [] and ready.messages == []
            deadline, ticks = ready.deadline, ticks + 1
        probe = follower.tick(heard_at - 1e-9)
        assert phase1_started(probe) == [] and probe.messages == []
        now = heard_at
        ready = follower.receive("n1", Heartbeat(beat, 0, 1), now)
        assert ready.messages == [Envelope("n2", "n1", HeartbeatAck(beat, 1, 0))]
        deadline = ready.deadline
        assert deadline is not None and now + T <= deadline <= now + 2 * T
    probe = follower.tick(now + T - 1e-9)
    assert phase1_started(probe) == [] and probe.messages == []
    assert follower.role is Role.FOLLOWER
    assert follower.primary_hint == "n1"
    assert ticks == 0  # its timer never came due: every deadline lay beyond the next beat


def test_an_accept_from_the_primary_also_counts_as_hearing_from_it() -> None:
    """A live primary that is busy proposing is live: its Accept moves the election
    deadline at least T ahead, like a heartbeat."""
    follower = node("n2", seed=3)
    follower.start(0.0)
    ready = follower.receive("n1", Accept(Ballot(1, "n1"), 1, Batch(("x",)), 0), 0.9)
    assert ready.deadline is not None and 0.9 + T <= ready.deadline <= 0.9 + 2 * T
    assert phase1_started(follower.tick(0.9 + T - 1e-9)) == []


# -- starting phase 1 after silence ----------------------------------------------------------


def test_a_follower_silent_for_more_than_2T_starts_phase1_above_every_ballot_seen() -> None:
    """DESIGN §2: "a node that hears nothing for a randomized timeout (e.g. uniform in
    [T, 2T]) starts phase 1 with a higher ballot"; the notes: the distinguished proposer must
    use "a proposal with number greater than any already used"."""
    follower = node("n2", seed=11)
    follower.start(0.0)
    follower.receive("n3", Prepare(Ballot(4, "n3"), 1), 0.1)
    ready = follower.receive("n1", Heartbeat(Ballot(7, "n1"), 0, 1), 0.3)
    assert ready.deadline is not None and 0.3 + T <= ready.deadline <= 0.3 + 2 * T
    assert phase1_started(follower.tick(0.3 + T - 1e-9)) == []
    ready = follower.tick(0.3 + 2 * T + 1e-9)
    assert ready.events == [Phase1Started(Ballot(8, "n2"), 1)]
    assert ready.records == [PromiseRecord(Ballot(8, "n2"))]
    assert ready.messages == [Envelope("n2", m, Prepare(Ballot(8, "n2"), 1)) for m in MEMBERS]
    assert follower.role is Role.CANDIDATE


def test_a_node_that_never_heard_a_primary_starts_phase1_within_2T_of_starting() -> None:
    """At start-up nobody is primary: each node's timer is armed in [T, 2T]."""
    n = node("n3", seed=5)
    deadline = n.start(10.0).deadline
    assert deadline is not None and 10.0 + T <= deadline <= 10.0 + 2 * T
    assert phase1_started(n.tick(deadline - 1e-9)) == []
    assert phase1_started(n.tick(deadline)) == [Phase1Started(Ballot(1, "n3"), 1)]


def test_a_candidate_whose_phase1_stalls_retries_with_a_higher_ballot_after_the_timeout() -> None:
    """Progress: "the distinguished proposer will eventually choose a high enough proposal
    number" — a candidate that got no majority tries again, higher, with a fresh timeout;
    in between it only retransmits its Prepare to those that did not answer."""
    n = node("n1", seed=2)
    n.start(0.0)
    first = n.run_phase1(0.0)
    assert first.events == [Phase1Started(Ballot(1, "n1"), 1)]
    n.receive("n1", Prepare(Ballot(1, "n1"), 1), 0.0)  # its own promise comes back
    n.receive("n1", Promise(Ballot(1, "n1"), 1, (), 0), 0.0)
    retry = n.tick(0.2)
    assert phase1_started(retry) == []
    assert retry.messages == [Envelope("n1", m, Prepare(Ballot(1, "n1"), 1)) for m in ("n2", "n3")]
    again = n.tick(2 * T + 1e-9)
    assert phase1_started(again) == [Phase1Started(Ballot(2, "n1"), 1)]


# -- the randomized timeout --------------------------------------------------------------------


def test_the_election_timeout_is_uniform_in_T_2T_from_the_injected_rng(monkeypatch) -> None:
    """FLP: "a reliable algorithm for electing a proposer must use either randomness or real
    time" — here both, the randomness coming only from the injected random.Random: the same
    seed gives the same deadline, different seeds different ones, all within [T, 2T]."""

    def forbidden(*args, **kwargs):
        raise AssertionError("the core drew from the global random module")

    for name in ("random", "uniform", "randint", "randrange", "choice", "shuffle", "seed"):
        monkeypatch.setattr(random, name, forbidden)

    deadlines = {}
    for seed in range(200):
        deadlines[seed] = node("n1", seed).start(0.0).deadline
        assert deadlines[seed] == random.Random(seed).uniform(T, 2 * T)
    assert node("n1", 42).start(0.0).deadline == node("n1", 42).start(0.0).deadline
    assert deadlines[1] != deadlines[2]
    values = sorted(deadlines.values())
    assert all(T <= v <= 2 * T for v in values)
    assert len(set(values)) == 200
    assert values[0] < T + 0.05 * T and values[-1] > 2 * T - 0.05 * T


def test_each_sign_of_life_redraws_the_timeout_from_the_same_rng() -> None:
    """The deadline after a heartbeat at t is t plus the rng's next draw in [T, 2T]."""
    twin = random.Random(8)
    n = Node(CoreConfig("n2", MEMBERS, election_timeout_s=T), DurableState(), random.Random(8))
    assert n.start(0.0).deadline == twin.uniform(T, 2 * T)
    for t in (0.3, 0.7, 1.05):
        ready = n.receive("n1", Heartbeat(Ballot(1, "n1"), 0, 1), t)
        assert ready.deadline == t + twin.uniform(T, 2 * T)


class CountingRng:
    """An ``Rng`` that records every draw."""

    def __init__(self) -> None:
        self.draws: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.draws.append((a, b))
        return a


def test_the_election_draws_once_per_rearmed_timer_and_at_no_other_time() -> None:
    """One seed replays a run only if the rng is drawn at the same points in the same order:
    the ``Election`` draws exactly when its timer is re-armed (a sign of life, a lost primary,
    a pre-vote), and never to take office, send a heartbeat or decide on a pre-vote."""
    rng = CountingRng()
    config = CoreConfig("n1", MEMBERS, election_timeout_s=T, heartbeat_s=0.1, prevote=True)
    election = Election(config, rng, Rounds(config.quorum))
    election.heard_primary("n2", Role.FOLLOWER, 1.0)
    assert (len(rng.draws), election.deadline, election.primary_hint) == (1, 1.0 + T, "n2")
    election.forget_primary(2.0)
    assert (len(rng.draws), election.deadline, election.primary_hint) == (2, 2.0 + T, None)
    assert election.start(Ballot(4, "n3"), 3.0) == PreVote(5)
    assert (len(rng.draws), election.deadline) == (3, 3.0 + T)
    assert election.on_prevote("n2", PreVote(5), Role.FOLLOWER, 3.0).granted
    election.took_office(4.0)
    election.heartbeat(Ballot(5, "n1"), 0, 4.0)
    assert election.timer(Role.PRIMARY) == 4.1
    assert rng.draws == [(T, 2 * T)] * 3


def test_a_prevote_needs_a_majority_of_distinct_grants_for_its_own_round() -> None:
    """Pre-vote: phase 1 is due once a majority (this node included) granted the current
    round; a repeated grant, a refusal or a grant for another round does not count."""
    config = CoreConfig("n1", ("n1", "n2", "n3", "n4", "n5"), election_timeout_s=T,
                        heartbeat_s=0.1, prevote=True)  # fmt: skip
    election = Election(config, random.Random(0), Rounds(config.quorum))
    assert election.start(Ballot(1, "n2"), 0.0) == PreVote(2)
    assert not election.on_prevote_reply("n2", PreVoteReply(2, True), Role.FOLLOWER)
    assert not election.on_prevote_reply("n2", PreVoteReply(2, True), Role.FOLLOWER)
    assert not election.on_prevote_reply("n3", PreVoteReply(2, False), Role.FOLLOWER)
    assert not election.on_prevote_reply("n4", PreVoteReply(1, True), Role.FOLLOWER)
    assert election.on_prevote_reply("n5", PreVoteReply(2, True), Role.FOLLOWER)
    assert election.prevote_round is None


# -- stepping down and stale primaries -----------------------------------------------------------


def test_a_stale_primary_that_hears_a_higher_ballot_steps_down() -> None:
    """Progress: the distinguished proposer abandons its proposal "if it learns about some
    request with a higher proposal number" — here a heartbeat of a newer primary."""
    primary = make_primary("n1")
    assert primary.ballot == Ballot(1, "n1")
    ready = primary.receive("n2", Heartbeat(Ballot(2, "n2"), 0, 1), 0.05)
    assert ready.events == [SteppedDown(Ballot(1, "n1"), Ballot(2, "n2"))]
    assert primary.role is Role.FOLLOWER
    assert primary.primary_hint == "n2"
    assert ready.deadline is not None and 0.05 + T <= ready.deadline <= 0.05 + 2 * T
    assert Envelope("n1", "n2", HeartbeatAck(Ballot(2, "n2"), 1, 0)) in ready.messages


def test_a_heartbeat_from_a_stale_ballot_gets_a_nack_and_is_no_sign_of_life() -> None:
    """A heartbeat numbered below the acceptor's promise comes from a deposed primary: the
    Nack tells it the higher number, and it does not postpone the election."""
    follower = node("n2", seed=4)
    follower.start(0.0)
    promised = follower.receive("n3", Prepare(Ballot(2, "n3"), 1), 0.1)
    before = promised.deadline
    ready = follower.receive("n1", Heartbeat(Ballot(1, "n1"), 0, 5), 0.2)
    assert ready.messages == [Envelope("n2", "n1", Nack(Ballot(1, "n1"), Ballot(2, "n3")))]
    assert ready.deadline == before
    assert follower.primary_hint is None
    # ... and the stale primary, told so, steps down
    stale = make_primary("n1")
    down = stale.receive("n2", ready.messages[0].msg, 0.3)
    assert down.events == [SteppedDown(Ballot(1, "n1"), Ballot(2, "n3"))]
    assert stale.role is Role.FOLLOWER


def test_a_primary_that_hears_a_lower_prepare_keeps_its_office_and_nacks() -> None:
    """Phase 1b refuses a lower number; a lower number is no reason to abandon."""
    primary = make_primary("n1")
    primary.receive("n1", Prepare(Ballot(1, "n1"), 1), 0.0)  # its acceptor's own promise
    ready = primary.receive("n3", Prepare(Ballot(0, "n3"), 1), 0.1)
    assert ready.events == []
    assert ready.messages == [Envelope("n1", "n3", Nack(Ballot(0, "n3"), Ballot(1, "n1")))]
    assert primary.role is Role.PRIMARY


# -- a cluster with the election on ------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_a_cluster_elects_one_primary_and_keeps_it_while_it_is_heard(clocked_net, seed) -> None:
    """Progress: "liveness can therefore be achieved by electing a single distinguished
    proposer"; once elected and heard, no node starts phase 1 again (over 30 s)."""
    net = clocked_net(MEMBERS, seed=seed, election_timeout_s=T, heartbeat_s=0.1, retry_s=0.2)
    net.start_all()
    assert net.run(until=lambda: len(net.primaries()) == 1, max_steps=5_000, max_time_s=10.0)
    (primary,) = net.primaries()
    started = len(net.events_of(Phase1Started))
    stepped_down = len(net.events_of(SteppedDown))
    net.run_for(30.0)
    assert net.primaries() == [primary]
    assert len(net.events_of(Phase1Started)) == started
    assert len(net.events_of(BecamePrimary)) == 1
    assert len(net.events_of(SteppedDown)) == stepped_down


def test_a_node_that_merely_lost_its_own_link_does_not_disrupt_the_primary(clocked_net) -> None:
    """DESIGN §2: "A node that has heard from a live primary within T does not start one (no
    disruption by a node that merely lost its own link)". With the link n1-n3 cut and n2
    connected to both, the primary n1 (which still has a majority with n2) keeps its office."""
    net = clocked_net(MEMBERS, seed=1, election_timeout_s=T, heartbeat_s=0.1, retry_s=0.2)
    net.start_all()
    net.run_phase1("n1")
    assert net.run(until=lambda: net.primaries() == ["n1"], max_steps=1_000)
    net.run_for(1.0)
    net.isolate_link("n1", "n3")
    net.run_for(10.0)
    assert net.primaries() == ["n1"]
    assert [m for m, _ in net.events_of(SteppedDown)] == []


def test_a_single_node_cluster_keeps_its_primary(clocked_net) -> None:
    """With one member, that member is a majority: once primary, nothing can depose it."""
    net = clocked_net(("n1",), seed=0, election_timeout_s=T, heartbeat_s=0.1, retry_s=0.2)
    net.start_all()
    assert net.run(until=lambda: net.primaries() == ["n1"], max_steps=100)
    net.run_for(10.0)
    assert net.primaries() == ["n1"]
    assert len(net.events_of(BecamePrimary)) == 1
