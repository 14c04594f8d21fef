"""Membership in the simulator: the operator really changes it under faults (so the sweep
is not vacuous), and each planted membership bug (``membership_plants``) is caught by the
checkers, whose ground truth keeps the true rule of ``core.membership``."""

from __future__ import annotations

from dataclasses import replace

import pytest
from membership_plants import amnesiac_voter, changes_too_early, counts_removed_members

from paxlock.coordinator.simulation.runner import RECONFIGURE_EVERY_S, config_for
from paxlock.coordinator.simulation.sim import NodeFactory, Result, Simulation, default_node

SEEDS = range(40)
STEPS = 2000


def run(seed: int, node_factory: NodeFactory = default_node) -> tuple[Simulation, Result]:
    config = replace(config_for(seed, STEPS), reconfigure_every_s=RECONFIGURE_EVERY_S)
    sim = Simulation(config, seed, node_factory=node_factory, stop_on_violation=False)
    return sim, sim.run()


def fired(node_factory: NodeFactory = default_node) -> dict[str, int]:
    counts: dict[str, int] = {}
    for seed in SEEDS:
        for check in {v.check for v in run(seed, node_factory)[1].violations}:
            counts[check] = counts.get(check, 0) + 1
    return counts


def test_the_operator_changes_membership_and_loses_stores_and_nothing_fires() -> None:
    """Nearly every seed changes membership (about three changes a seed; a run whose
    primaries are all cut off may make none) and many lose a store,
    with every checker on; the final configuration differs from the genesis one in most."""
    runs = [run(seed) for seed in SEEDS]
    assert [result.violations for _, result in runs] == [[]] * len(runs)
    sims = [sim for sim, _ in runs]
    assert sum(s.checker.reconfigurations == 0 for s in sims) <= len(sims) // 10
    assert sum(s.checker.reconfigurations for s in sims) > 2 * len(sims)
    assert sum(s.stores_lost > 0 for s in sims) > len(sims) // 3
    changed = [s for s in sims if s.checker.truth.latest.voters != s.genesis.voters]
    assert len(changed) > len(sims) // 2


@pytest.mark.parametrize(
    "plant",
    [
        pytest.param(changes_too_early, id="a change that takes effect too early"),
        pytest.param(counts_removed_members, id="a removed member still counted"),
        pytest.param(amnesiac_voter, id="an empty store votes under its old id"),
    ],
)
def test_each_planted_membership_bug_is_caught(plant: NodeFactory) -> None:
    """A node learns a value as chosen that the true rule says is not (``learned``), and
    logs diverge (``prefix``)."""
    counts = fired(plant)
    assert counts.get("learned", 0) > 0, counts
