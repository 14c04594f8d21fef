"""The lease-level simulation: real state machine, keeper and core under every fault, with
the lease checkers — no overlapping conservative validity, strictly increasing tokens, no
renewal confirmed by a deposed primary — and a broken part for each to catch."""

from __future__ import annotations

import random
from typing import Any

import pytest

from paxlock.coordinator.core.keeper import KeeperReady, LeaseKeeper
from paxlock.coordinator.core.lease_commands import Lease, LeaseCommand, Result
from paxlock.coordinator.core.leases import LeaseMachine
from paxlock.coordinator.core.node import CoreConfig, Node
from paxlock.coordinator.core.proposer import Role
from paxlock.coordinator.core.ready import DurableState, Ready
from paxlock.coordinator.simulation.lease_sim import LeaseSimulation
from paxlock.coordinator.simulation.runner import config_for

SEEDS = 200
STEPS = 3000
CHUNK = 50


@pytest.mark.parametrize("first", range(0, SEEDS, CHUNK))
def test_no_two_clients_ever_hold_one_name_and_tokens_increase(first: int) -> None:
    failures = []
    grants = renewals = 0
    for seed in range(first, first + CHUNK):
        sim = LeaseSimulation(config_for(seed, STEPS), seed)
        result = sim.run()
        grants, renewals = grants + sim.grants, renewals + sim.renewals
        if result.violations:
            failures.append(f"seed {seed}: {result.violations[:2]}")
    assert not failures, "\n".join(failures)
    assert grants > CHUNK and renewals > CHUNK  # the workload did hold and renew leases


def fired(simulation: type[LeaseSimulation] = LeaseSimulation, **parts: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for seed in range(40):
        result = simulation(config_for(seed, STEPS, nodes=3), seed,
                            stop_on_violation=False, **parts).run()  # fmt: skip
        for check in {v.check for v in result.violations}:
            counts[check] = counts.get(check, 0) + 1
    return counts


class ForgetfulKeeper(LeaseKeeper):
    """Breaks "a new primary restarts every lease timer at the full TTL": its timers run out
    the moment it takes office."""

    def take_office(self, machine: LeaseMachine, now: float) -> KeeperReady:
        ready = super().take_office(machine, now)
        for (kind, name), timer in list(self._timers.items()):
            self._start(kind, name, timer.token, now)
        return ready


class ReusesTokens(LeaseMachine):
    """Hands out grant tokens that do not increase."""

    def apply(self, command: LeaseCommand) -> Result:
        result = super().apply(command)
        if isinstance(result, Lease):
            return Lease(result.name, result.holder, 1, result.revision, result.ttl_s,
                         result.value, result.lock_delay_s)  # fmt: skip
        return result


class NeverChecksQuorum(Node):
    """A primary that never notices it lost touch with the majority (no check-quorum)."""

    def tick(self, now: float) -> Ready:
        if self.role is Role.PRIMARY:
            self.rounds.confirmed_sent_at = now
        return super().tick(now)


def never_checks_quorum(config: CoreConfig, durable: DurableState, rng: random.Random) -> Node:
    return NeverChecksQuorum(config, durable, rng)


class RenewsWithoutARound(LeaseSimulation):
    """A primary that answers renewals from what it last knew instead of a fresh quorum
    round (the stale-read bug): it "confirms" at once, as of now. (Check-quorum alone would
    depose it in time, so that defence is switched off too.)"""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, node_factory=never_checks_quorum, **kwargs)

    def _start_round(self, sim_node: Any, state: Any) -> None:
        round_id = state.keeper.start_round(self.now)
        state.round = (round_id, 0, self.now)
        self._confirmed(sim_node, state, 0)


def test_overlap_check_catches_a_keeper_that_shortens_timers_on_taking_office() -> None:
    assert fired(keeper_factory=ForgetfulKeeper).get("overlap", 0) > 0


def test_tokens_check_catches_a_machine_that_reuses_tokens() -> None:
    assert fired(machine_factory=ReusesTokens).get("tokens", 0) > 0


def test_deposed_check_catches_a_primary_that_renews_without_a_quorum_round() -> None:
    assert fired(RenewsWithoutARound).get("deposed", 0) > 0


def test_the_correct_parts_fire_nothing_on_the_same_seeds() -> None:
    assert fired() == {}
