"""The notes' message counts for the three learning methods, counted on the wire.

A small deterministic network (FIFO, no faults, every message delivered between ticks) with
3 and 5 nodes elects a primary, then D commands are submitted one at a time. For each
decision the Accepted and Chosen envelopes are counted (A = L = the number of nodes; a node
sending to itself counts, as the notes count every acceptor and every learner).
"""

from __future__ import annotations

import pytest

from paxlock.coordinator.core.learner import LearnMode
from paxlock.coordinator.core.messages import Accepted, Batch, Chosen, ChosenEntry

D = 6

CASES = [
    (3, "broadcast", 9), (3, "primary", 6), (3, "set:1", 6), (3, "set:2", 12), (3, "set:3", 18),
    (5, "broadcast", 25), (5, "primary", 10), (5, "set:2", 20), (5, "set:3", 30),
    (5, "set:5", 50),
]  # fmt: skip


@pytest.mark.parametrize(("n", "mode", "per_decision"), CASES)
def test_learning_message_counts_per_decision_match_the_notes(
    fifo_net, n: int, mode: str, per_decision: int
) -> None:
    """Method 1: "a number of responses equal to the product of the number of acceptors and
    the number of learners" (A×L); method 2: "equal only to the sum of the number of
    acceptors and the number of learners" (A+L); method 3: each of K distinguished learners
    hears every acceptor and informs every learner, K·(A+L)."""
    members = tuple(f"n{i}" for i in range(1, n + 1))
    learn_mode = LearnMode.parse(mode)
    assert learn_mode.messages_per_decision(n, n) == per_decision
    k = 0 if learn_mode.kind == "broadcast" else min(learn_mode.k, n)
    net = fifo_net(members, seed=n, learn_mode=learn_mode, heartbeat_s=0.1,
                   election_timeout_s=0.5, retry_s=0.2)  # fmt: skip
    # the election: every node ticked every 100 ms, everything delivered in between
    net.start_all()
    while not net.primaries():
        net.now = round(net.now + 0.1, 6)
        for member in members:
            net.tick(member)
        net.deliver()
        assert net.now < 5.0, "no primary elected"
    (primary,) = net.primaries()
    counts = []
    for d in range(D):
        # ticks, then every message they caused (heartbeats, acks), delivered
        net.now += 0.1
        for member in members:
            net.tick(member)
        net.deliver()
        assert net.primaries() == [primary]
        mark = len(net.sent)
        net.submit(primary, f"c{d}")
        net.deliver()
        accepted = net.sent_of(Accepted, since=mark)
        chosen = net.sent_of(Chosen, since=mark)
        counts.append(len(accepted) + len(chosen))
        if learn_mode.kind == "broadcast":
            assert (len(accepted), len(chosen)) == (n * n, 0)
        else:
            assert (len(accepted), len(chosen)) == (k * n, k * n)
        for member in members:
            assert net.learned[member][-1] == ChosenEntry(d + 1, Batch((f"c{d}",)))
    assert counts == [per_decision] * D
    for member in members:
        assert [e.slot for e in net.learned[member]] == list(range(1, D + 1))
