"""Sessions, semaphores and read/write locks on the shipped ``LeaseReplica`` under every fault
of the lease simulation (``coord_sim``): never more than N holders of an N-permit semaphore
by their conservative clocks, never a writer beside another holder, tokens that increase, a
session's end freeing exactly what it bound in one entry, every replica applying the same
results — and a broken part for each of these checks to catch (``coord_plants``)."""

from __future__ import annotations

from typing import Any

import pytest
from coord_plants import (
    EarlySessionExpiry,
    ForgetsSessionTimers,
    IgnoresSemaphoreLimit,
    ReadBesideWrite,
    RestoresAheadRevision,
    ReusesPermitTokens,
    SessionEndFreesOne,
)
from plant_runs import checks_fired

from paxlock.coordinator.simulation.coord_sim import CoordSimulation
from paxlock.coordinator.simulation.runner import config_for

SEEDS = 16
STEPS = 3000
CHUNK = 8
PLANT_SEEDS = 6
"""Each planted machine is caught on 2 to 6 of these (measured)."""


@pytest.mark.parametrize("first", range(0, SEEDS, CHUNK))
def test_sessions_permits_and_rwlocks_keep_every_check(first: int) -> None:
    failures = []
    totals: dict[str, int] = {}
    for seed in range(first, first + CHUNK):
        sim = CoordSimulation(config_for(seed, STEPS), seed)
        result = sim.run()
        for name, count in sim.counters().items():
            totals[name] = totals.get(name, 0) + count
        if result.violations:
            failures.append(f"seed {seed}: {result.violations[:2]}")
    assert not failures, "\n".join(failures)
    # The workload did what it claims: bound and unbound grants, renewals of both, clients
    # that fell silent, sessions that ended with holds to free.
    assert all(count >= CHUNK for count in totals.values()), totals


def fired(seeds: int = PLANT_SEEDS, **parts: Any) -> dict[str, int]:
    return checks_fired(CoordSimulation, seeds, STEPS, **parts)


def caught(check: str, seeds: int = PLANT_SEEDS, **parts: Any) -> bool:
    """Whether ``check`` fires on some seed of the fixed set (stopping at the first)."""
    return checks_fired(CoordSimulation, seeds, STEPS, frozenset({check}),
                        **parts).get(check, 0) > 0  # fmt: skip


def test_the_correct_parts_fire_nothing_on_the_plant_seeds() -> None:
    assert fired() == {}


def test_limit_catches_a_semaphore_that_grants_past_its_limit() -> None:
    assert caught("limit", machine_factory=IgnoresSemaphoreLimit)


def test_exclusive_catches_a_read_granted_beside_a_write() -> None:
    assert caught("exclusive", machine_factory=ReadBesideWrite)


def test_tokens_catches_permits_that_reuse_tokens() -> None:
    assert caught("tokens", 3, machine_factory=ReusesPermitTokens)


def test_results_catches_a_replica_whose_restore_moves_the_revision() -> None:
    assert caught("results", 3, machine_factory=RestoresAheadRevision)


def test_session_catches_an_end_that_frees_only_one_hold() -> None:
    assert caught("session", machine_factory=SessionEndFreesOne)


def test_expiry_catches_a_keeper_that_expires_sessions_early() -> None:
    """Every seed (a freed name wanted by another client meanwhile, so that ``limit`` or
    ``exclusive`` fires too: about one seed in four)."""
    assert caught("expiry", keeper_factory=EarlySessionExpiry)


def test_expiry_catches_a_keeper_that_does_not_restart_session_timers_on_taking_office() -> None:
    """Most seeds: those where a primary takes office while a client trusts its session."""
    assert caught("expiry", keeper_factory=ForgetsSessionTimers)
