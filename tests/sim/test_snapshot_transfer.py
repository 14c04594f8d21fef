"""Snapshots in the simulator: nodes compact at seeded points, and nodes that crashed or lagged
behind the compaction point catch up by snapshot transfer (DESIGN §2). The sweep proves this
safe; these tests prove it actually happens, so the sweep does not pass vacuously."""

from __future__ import annotations

from paxlock.coordinator.simulation.runner import config_for, run_seed
from paxlock.coordinator.simulation.sim import Simulation

SEEDS = range(40)
STEPS = 2000


def test_lagging_and_crashed_nodes_catch_up_by_snapshot_transfer_in_some_seeds() -> None:
    """Over a seed range of every cluster shape, nodes compact and some install a peer's
    snapshot — with every checker on, including the snapshot-content part of (f)."""
    results = [run_seed(seed, STEPS) for seed in SEEDS]
    assert [r.violations for r in results] == [[]] * len(results)
    by_size: dict[int, int] = {3: 0, 5: 0}
    chunked: dict[int, int] = {3: 0, 5: 0}
    for result in results:
        by_size[config_for(result.seed, STEPS).nodes] += result.installs
        chunked[config_for(result.seed, STEPS).nodes] += result.chunked_installs
    assert sum(r.compactions for r in results) > 0
    assert by_size[3] > 0 and by_size[5] > 0, by_size
    # on the seeds with small chunks, snapshots travel in several (under every fault)
    assert chunked[3] > 0 and chunked[5] > 0, chunked
    assert all(r.chunked_installs == 0 for r in results
               if config_for(r.seed, STEPS).snapshot_chunks == 1)  # fmt: skip


def test_small_chunk_seeds_pull_every_chunk_and_drop_what_answers_nothing() -> None:
    """The multi-chunk path runs under drops, duplicates and crashes: duplicated or late
    chunks arrive, are dropped as answering nothing, and every transfer still completes
    with a snapshot the ``prefix`` checker accepts."""
    seeds = [s for s in SEEDS if config_for(s, STEPS).snapshot_chunks > 1]
    results = [run_seed(seed, STEPS) for seed in seeds]
    assert [r.violations for r in results] == [[]] * len(results)
    assert sum(r.chunked_installs for r in results) > 10
    assert sum(r.dropped.get("unsolicited_catchup", 0) for r in results) > 0


def test_a_restarted_node_restores_its_snapshot_and_resumes_after_it() -> None:
    """A crash after compaction: the node restarts from its snapshot (``installed`` on
    ``start()``) and delivers only the slots after it; the checker accepts the resumed log."""
    restored = 0
    for seed in range(10):
        sim = Simulation(config_for(seed, STEPS), seed, trace=True)
        result = sim.run()
        assert result.violations == []
        restored += sum(1 for line in result.trace
                        if "installs a snapshot" in line and "from a peer" not in line)  # fmt: skip
    assert restored > 0


def test_without_compaction_nothing_is_installed() -> None:
    """The counter counts transfers only: with compaction off there is nothing to transfer."""
    from dataclasses import replace

    config = replace(config_for(0, STEPS), compact_every=(10**9, 10**9))
    result = Simulation(config, 0).run()
    assert (result.compactions, result.installs, result.violations) == (0, 0, [])
