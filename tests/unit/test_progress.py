"""The notes' Progress section: the dueling proposers, shown, and the distinguished proposer
that fixes them.

First, with the election off, two proposers p and q are driven by a FIFO in-memory network
under exactly the notes' schedule for K rounds, and nothing is ever chosen — the livelock is
demonstrated, not assumed. Then, with the election on, the same two nodes plus a third, on a
fair network with a simulated clock, choose a submitted value within a bounded number of
steps: also when started in the middle of a duel, and also from the disks the duel left.
"""

from __future__ import annotations

import pytest

from paxlock.coordinator.core.ballot import Ballot
from paxlock.coordinator.core.messages import (
    Accept,
    Accepted,
    Batch,
    Nack,
)
from paxlock.coordinator.core.proposer import Role
from paxlock.coordinator.core.ready import Phase1Started, Rejection

K = 20
PQR = ("p", "q", "r")


def duel(net, rounds: int) -> list[Ballot]:
    """The notes' schedule, ``rounds`` times; returns the ballots used, in order.

    1) p completes phase 1 for n1 (and issues its accept requests, which stay in flight);
    2) q completes phase 1 for n2 > n1 (and issues its accept requests);
    3) p's accept requests arrive and are ignored (nacked): every acceptor promised n2;
    4) p completes phase 1 for n3 > n2, so q's accept requests are ignored. And so on.
    """
    is_accept = lambda e: isinstance(e.msg, Accept)  # noqa: E731
    ballots: list[Ballot] = []
    for i in range(rounds):
        x, y = ("p", "q") if i % 2 == 0 else ("q", "p")
        # x begins and completes phase 1 (every prepare, promise and heartbeat delivered)
        net.run_phase1(x)
        net.deliver(lambda e: not is_accept(e))
        assert net.nodes[x].role is Role.PRIMARY, f"round {i}: {x} did not complete phase 1"
        ballot = net.nodes[x].ballot
        assert ballot.node == x and all(ballot > b for b in ballots)
        ballots.append(ballot)
        # y's accept requests of the previous round arrive now, and are ignored
        if i > 0:
            mark = len(net.sent)
            late = net.deliver(lambda e: is_accept(e) and e.src == y)
            assert sorted(e.dst for e in late) == sorted(net.members)
            assert {e.msg.ballot for e in late} == {ballots[-2]}
            replies = net.sent[mark:]
            assert sorted((e.src, e.dst) for e in replies) == [(m, y) for m in sorted(net.members)]
            assert {e.msg for e in replies} == {Nack(ballots[-2], ballot)}
            net.deliver(lambda e: not is_accept(e))
        # x issues its phase 2 accept requests; they are still in flight when y takes over
        ready = net.submit(x, f"v{i}")
        assert [e.msg.ballot for e in ready.messages if is_accept(e)] == [ballot] * len(
            net.members
        )
    return ballots


def assert_nothing_chosen(net) -> None:
    assert net.sent_of(Accepted) == []
    for member in net.members:
        assert net.learned[member] == []
        assert net.nodes[member].learner.chosen == {}
        assert net.disks[member].chosen == {}
        assert net.disks[member].accepted == {}


@pytest.mark.parametrize("members", [("p", "q"), PQR], ids=["p-q", "p-q-r"])
def test_progress_two_proposers_issuing_increasing_numbers_choose_nothing(
    fifo_net, members
) -> None:
    """Progress: "It's easy to construct a scenario in which two proposers each keep issuing
    a sequence of proposals with increasing numbers, none of which are ever chosen. 1)
    Proposer p completes phase 1 for a proposal number n1. 2) Another proposer q then
    completes phase 1 for a proposal number n2 > n1. 3) Proposer p's phase 2 accept requests
    for a proposal numbered n1 are ignored because the acceptors have all promised not to
    accept any new proposal numbered less than n2. 4) So, proposer p then begins and
    completes phase 1 for a new proposal number n3 > n2, causing the second phase 2 accept
    requests of proposer q to be ignored. And so on." """
    net = fifo_net(members, election=False)
    ballots = duel(net, K)
    assert [b.node for b in ballots] == ["p", "q"] * (K // 2)
    assert ballots == sorted(ballots) and len(set(ballots)) == K
    # the last round's accepts are still in flight; deliver nothing more: K rounds, no choice
    assert_nothing_chosen(net)
    # every command proposed and then abandoned is reported as maybe chosen (it was sent in
    # an Accept), by the proposer that abandoned it, naming its rival; none is lost silently
    assert net.rejected == [
        (x, Rejection(f"v{i}", y, True))
        for i, (x, y) in zip(range(K - 1), [("p", "q"), ("q", "p")] * K, strict=False)
    ]
    assert net.sent_of(Accept)  # proposals were issued all along


def run_to_choice(net, value: str, max_steps: int) -> int:
    """A client that submits ``value`` to whichever node claims to be primary, every 50 ms
    of simulated time, until every node has learned it. Returns the steps used."""
    next_try = 0.0
    start = net.steps

    def learned_everywhere() -> bool:
        return all(
            any(isinstance(e.value, Batch) and value in e.value.commands for e in net.learned[m])
            for m in net.members
        )

    while net.steps - start < max_steps:
        if learned_everywhere():
            return int(net.steps - start)
        if net.now >= next_try:
            next_try = net.now + 0.05
            for member in net.primaries():
                net.submit(member, value)
        if not net.step():
            break
    raise AssertionError(f"{value!r} not chosen everywhere within {max_steps} steps")


@pytest.mark.parametrize("seed", range(10))
def test_progress_a_distinguished_proposer_chooses_a_value_even_from_a_duel(
    clocked_net, seed
) -> None:
    """Progress: "To guarantee progress, a distinguished proposer must be selected as the only
    one to try issuing proposals." p and q both start phase 1 at the same instant; with the
    election on (randomized timeouts, stepping down on a higher number) one primary emerges
    and a submitted value is chosen and learned by all three within a bounded number of
    steps."""
    net = clocked_net(PQR, seed=seed, election_timeout_s=0.5, heartbeat_s=0.1, retry_s=0.2)
    net.start_all()
    net.run_phase1("p")
    net.run_phase1("q")
    steps = run_to_choice(net, "v", max_steps=3_000)
    assert steps <= 3_000
    assert net.now < 10.0
    assert len(net.primaries()) == 1


def test_progress_the_election_ends_the_duel_from_the_disks_it_left(fifo_net, clocked_net) -> None:
    """Progress: "If the distinguished proposer can communicate successfully with a majority
    of acceptors, and if it uses a proposal with number greater than any already used, then
    it will succeed in issuing a proposal that is accepted." The three nodes of a K-round
    duel restart from their disks with the election on; a value is then chosen, under a
    number greater than every number the duel used."""
    dueling = fifo_net(PQR, election=False)
    ballots = duel(dueling, K)
    assert_nothing_chosen(dueling)

    net = clocked_net(PQR, seed=3, election_timeout_s=0.5, heartbeat_s=0.1, retry_s=0.2)
    for member in PQR:
        net.disks[member] = dueling.disks[member].copy()
        net.restart(member)
    run_to_choice(net, "after-the-duel", max_steps=3_000)
    (primary,) = net.primaries()
    assert net.nodes[primary].ballot > ballots[-1]
    started = [e.ballot for _, e in net.events_of(Phase1Started)]
    assert started and all(b > ballots[-1] for b in started)
    accepted = [e for m in PQR for e in net.disks[m].accepted.values()]
    assert accepted and all(e.ballot > ballots[-1] for e in accepted)
