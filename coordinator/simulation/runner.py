"""Runs many seeded simulations and summarises them (``paxlock sim``).

Unless pinned, a seed picks its own cluster shape so that one sweep covers them all: even
seeds run 3 nodes and odd seeds 5, the learning strategy rotates through ``broadcast``,
``primary`` and ``set:2``, every other group of six seeds runs the election with pre-vote,
and every other group of three seeds sends snapshots in about ``SMALL_SNAPSHOT_CHUNKS``
chunks each and believes slots only ``SMALL_SLOTS_AHEAD_MARGIN`` past the
``4 * in_flight_slots_max`` window, so that multi-chunk transfers and lagging acceptors that
drop Accepts happen under every fault; and three seeds in four reconfigure.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from paxlock.coordinator.simulation.sim import Result, SimConfig, Simulation

LEARN_MODES = ("broadcast", "primary", "set:2")
SMALL_SNAPSHOT_CHUNKS = 3
SMALL_SLOTS_AHEAD_MARGIN = 0
RECONFIGURE_EVERY_S = 0.1
"""Three seeds in four change membership about this often (``operator``): members are
added, promoted and removed, and stores are lost and replaced, under every fault."""


def config_for(seed: int, steps: int, nodes: int | None = None,
               learn_mode: str | None = None) -> SimConfig:  # fmt: skip
    config = replace(
        SimConfig(),
        steps=steps,
        nodes=nodes if nodes is not None else (3 if seed % 2 == 0 else 5),
        learn_mode=learn_mode or LEARN_MODES[(seed // 2) % len(LEARN_MODES)],
        prevote=(seed // 6) % 2 == 1,
    )
    if (seed // 3) % 2 == 1:
        config = replace(config, snapshot_chunks=SMALL_SNAPSHOT_CHUNKS,
                         slots_ahead_margin=SMALL_SLOTS_AHEAD_MARGIN)  # fmt: skip
    if seed % 4 != 3:
        config = replace(config, reconfigure_every_s=RECONFIGURE_EVERY_S)
    return config


def run_seed(seed: int, steps: int, nodes: int | None = None, learn_mode: str | None = None,
             *, trace: bool = False, leases: bool = False,
             coord: bool = False) -> Result:  # fmt: skip
    """One seed; ``leases`` runs the lease-level simulation (state machine, keeper, lease
    clients and their checkers) instead of the log-level one, ``coord`` the lease-level one
    with sessions, semaphores and read/write locks (``coord_sim``)."""
    config = config_for(seed, steps, nodes, learn_mode)
    if coord:
        from paxlock.coordinator.simulation.coord_sim import CoordSimulation

        return CoordSimulation(config, seed, trace=trace).run()
    if leases:
        from paxlock.coordinator.simulation.lease_sim import LeaseSimulation

        return LeaseSimulation(config, seed, trace=trace).run()
    return Simulation(config, seed, trace=trace).run()


@dataclass(slots=True)
class Summary:
    seeds: int = 0
    steps: int = 0
    decisions: int = 0
    violations: int = 0
    compactions: int = 0
    installs: int = 0
    chunked_installs: int = 0
    dropped: int = 0
    """Peer messages the nodes dropped unused (``Node.dropped``, every reason)."""
    reconfigurations: int = 0
    """Configuration changes chosen and made (ground truth), every seed."""
    stores_lost: int = 0
    failed: list[Result] | None = None

    def add(self, result: Result) -> None:
        self.seeds += 1
        self.steps += result.steps
        self.decisions += result.decisions
        self.compactions += result.compactions
        self.installs += result.installs
        self.chunked_installs += result.chunked_installs
        self.dropped += sum(result.dropped.values())
        self.reconfigurations += result.reconfigurations
        self.stores_lost += result.stores_lost
        if result.violations:
            self.violations += len(result.violations)
            self.failed = (self.failed or []) + [result]

    def line(self) -> str:
        return (f"seeds={self.seeds} steps={self.steps} decisions={self.decisions} "
                f"violations={self.violations} compactions={self.compactions} "
                f"snapshot_installs={self.installs} chunked={self.chunked_installs} "
                f"peer_drops={self.dropped} reconfigurations={self.reconfigurations} "
                f"stores_lost={self.stores_lost}")  # fmt: skip


def run_many(seeds: Iterable[int], steps: int, nodes: int | None = None,
             learn_mode: str | None = None) -> Summary:  # fmt: skip
    summary = Summary()
    for seed in seeds:
        summary.add(run_seed(seed, steps, nodes, learn_mode))
    return summary


def describe(result: Result, steps: int, nodes: int | None, learn_mode: str | None) -> str:
    """How to see a failure again: the violation and the command that replays it."""
    config = config_for(result.seed, steps, nodes, learn_mode)
    first = result.violations[0]
    return (
        f"violation: check={first.check} seed={result.seed} step={first.step} "
        f"nodes={config.nodes} learn_mode={config.learn_mode}: {first.detail}\n"
        f"replay: paxlock sim --seed {result.seed} --steps {steps} --nodes {config.nodes} "
        f"--learn-mode {config.learn_mode} --trace"
    )
