"""Running a lease-level simulation with planted parts over a range of seeds (shared by
``test_lease_sim`` and ``test_coord_sim``)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from paxlock.coordinator.simulation.lease_sim import LeaseSimulation
from paxlock.coordinator.simulation.runner import config_for


def checks_fired(simulation: type[LeaseSimulation], seeds: int, steps: int,
                 until: frozenset[str] = frozenset(), **parts: Any) -> dict[str, int]:  # fmt: skip
    """How many seeds each check fired on, with static membership (as the planted parts
    were measured: their faults need no membership change to show). With ``until``, the
    seeds stop once every check named there fired (for tests that ask only whether a rare
    plant is caught at all: the seeds are fixed, so the answer is the same, sooner)."""
    counts: dict[str, int] = {}
    for seed in range(seeds):
        config = replace(config_for(seed, steps), reconfigure_every_s=0.0)
        result = simulation(config, seed, stop_on_violation=False, **parts).run()
        for check in {v.check for v in result.violations}:
            counts[check] = counts.get(check, 0) + 1
        if until and until <= counts.keys():
            break
    return counts
