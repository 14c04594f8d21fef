"""The scale of the proof: 400 seeds x 2,000 steps, 3- and 5-node clusters, every learning
strategy, every fault on (crash-restart, crash between persist and send, drop, duplication,
reordering, symmetric and one-way partitions), every checker after every step, then a
liveness phase. Split into chunks so that pytest-xdist spreads them over the cores."""

from __future__ import annotations

import pytest

from paxlock.coordinator.simulation.runner import describe, run_seed

SEEDS = 400
STEPS = 2000
CHUNK = 20


@pytest.mark.parametrize("first", range(0, SEEDS, CHUNK))
def test_every_safety_property_holds_under_faults_and_liveness_follows(first: int) -> None:
    """(a) proposed, (b) single (P2), (c) learned, (d) P2a, (e) P2b, (f) prefix, (g) liveness."""
    failures = []
    for seed in range(first, first + CHUNK):
        result = run_seed(seed, STEPS)
        assert result.steps == STEPS
        if result.violations:
            failures.append(describe(result, STEPS, None, None))
    assert not failures, "\n".join(failures)


def test_the_sweep_makes_decisions_in_both_cluster_sizes() -> None:
    """Guards the sweep itself: a simulator that chose nothing would vacuously pass."""
    three, five = run_seed(0, STEPS), run_seed(1, STEPS)
    assert (three.decisions, five.decisions) > (20, 20)
    assert three.violations == five.violations == []
