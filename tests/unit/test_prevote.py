"""Pre-vote (Raft's PreVote, here before phase 1): a node cut off from the majority never
raises its ballot, so when it comes back it cannot depose a healthy primary — the disruption
DESIGN.md §2 rules out ("no disruption by a node that merely lost its own link")."""

from __future__ import annotations

from typing import Any

import pytest

from paxlock.coordinator.core.ready import BecamePrimary, SteppedDown

MEMBERS = ("n1", "n2", "n3")
T = 0.3


def isolated_then_back(clocked_net: Any, prevote: bool) -> tuple[Any, str, str]:
    net = clocked_net(MEMBERS, seed=3, election_timeout_s=T, heartbeat_s=0.05, retry_s=0.1,
                      prevote=prevote)  # fmt: skip
    net.start_all()
    assert net.run(until=lambda: len(net.primaries()) == 1, max_steps=20_000, max_time_s=10)
    (primary,) = net.primaries()
    lone = next(m for m in MEMBERS if m != primary)
    for other in MEMBERS:
        if other != lone:
            net.isolate_link(lone, other)
    net.run_for(5.0)  # many election timeouts long
    return net, primary, lone


@pytest.mark.parametrize("prevote", [True, False])
def test_an_isolated_node_inflates_its_ballot_only_without_prevote(
    clocked_net: Any, prevote: bool,
) -> None:
    net, primary, lone = isolated_then_back(clocked_net, prevote)
    primary_round = net.nodes[primary].ballot.round
    lone_round = net.nodes[lone].acceptor.promised.round
    if prevote:
        assert lone_round <= primary_round  # it asked, nobody answered, it promised nothing
    else:
        assert lone_round > primary_round + 5  # a new ballot every timeout


def test_with_prevote_a_node_that_comes_back_does_not_depose_the_primary(clocked_net: Any) -> None:
    net, primary, lone = isolated_then_back(clocked_net, True)
    changes_before = len(net.events_of(SteppedDown)) + len(net.events_of(BecamePrimary))
    net.cut.clear()
    net.run_for(5.0)
    assert net.primaries() == [primary]
    assert len(net.events_of(SteppedDown)) + len(net.events_of(BecamePrimary)) == changes_before


def test_with_prevote_a_dead_primary_is_still_replaced(clocked_net: Any) -> None:
    net = clocked_net(MEMBERS, seed=4, election_timeout_s=T, heartbeat_s=0.05, retry_s=0.1,
                      prevote=True)  # fmt: skip
    net.start_all()
    assert net.run(until=lambda: len(net.primaries()) == 1, max_steps=20_000, max_time_s=10)
    (primary,) = net.primaries()
    for other in MEMBERS:
        if other != primary:
            net.isolate_link(primary, other)
    survivors = [m for m in MEMBERS if m != primary]
    assert net.run(until=lambda: any(net.nodes[m].role.value == "primary" for m in survivors),
                   max_steps=50_000, max_time_s=net.now + 4 * T)  # fmt: skip
