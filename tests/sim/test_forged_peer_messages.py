"""Forged and mis-sent peer messages in the simulator (``simulation.forger``): with every
fault on, members' identities are used to tell nodes what nobody proposed and nobody asked
for. The nodes drop them all and every checker stays quiet; a node that believes them — as
every node did before issue 12 — is caught by the checkers, so the injection is not vacuous.

A planted bug, not only a scripted story: the scripted stories are in
``tests/unit/test_admission.py``; this shows the rules hold under crashes, partitions, drops
and elections, where a Chosen can be late and a catch-up reply stale."""

from __future__ import annotations

import random
from dataclasses import replace

from paxlock.coordinator.core.catchup import CatchUp, Taken
from paxlock.coordinator.core.messages import CatchupReply, CatchupRequest, Chosen
from paxlock.coordinator.core.node import CoreConfig, Node
from paxlock.coordinator.core.ready import DurableState, Ready
from paxlock.coordinator.simulation.runner import LEARN_MODES, config_for
from paxlock.coordinator.simulation.sim import NodeFactory, Simulation, default_node

SEEDS = range(18)
STEPS = 2000
FORGE_EVERY_S = 0.02


class BelievesAnyChosen(Node):
    """Learns from every Chosen, whoever sends it (the rule of ``admission`` left out)."""

    def _on_chosen(self, src: str, msg: Chosen, out: Ready) -> None:
        self._learned(msg.slot, msg.value, out)


class TakesAnyReply(CatchUp):
    """Takes every catch-up reply as if it answered a request to its sender for it."""

    def take(self, src: str, msg: CatchupReply) -> Taken | str:
        from_slot = msg.chunk.slot if msg.chunk is not None else msg.entries[0].slot
        self.asking, self.transfer = (src, CatchupRequest(from_slot)), None
        return super().take(src, msg)


class TakesUnaskedCatchup(Node):
    def __init__(self, config: CoreConfig, durable: DurableState, rng: random.Random) -> None:
        super().__init__(config, durable, rng)
        self.catchup = TakesAnyReply(self.id, self.members, config.retry_s)


def run(seed: int, node_factory: NodeFactory = default_node) -> tuple[set[str], Simulation]:
    """One seed with forging on, every learning strategy in turn; the checks that fired."""
    config = replace(config_for(seed, STEPS), forge_every_s=FORGE_EVERY_S,
                     learn_mode=LEARN_MODES[seed % len(LEARN_MODES)])  # fmt: skip
    sim = Simulation(config, seed, node_factory=node_factory, stop_on_violation=False)
    result = sim.run()
    return {v.check for v in result.violations}, sim


def test_forged_chosen_and_catchup_replies_are_dropped_and_every_check_holds() -> None:
    dropped: dict[str, int] = {}
    forged = 0
    for seed in SEEDS:
        fired, sim = run(seed)
        assert fired == set(), (seed, fired)
        forged += sim.forged
        for reason, count in sim.dropped.items():
            dropped[reason] = dropped.get(reason, 0) + count
    assert forged > 100
    assert dropped["unfollowed_chosen"] > 0 and dropped["unsolicited_catchup"] > 0


def test_check_c_learned_catches_a_node_that_believes_any_chosen() -> None:
    """Requirement (c): a node that takes a follower's word for a Chosen learns a value that
    was never chosen (under ``broadcast`` too, where no honest node sends one)."""

    def build(config: CoreConfig, durable: DurableState, rng: random.Random) -> Node:
        return BelievesAnyChosen(config, durable, rng)

    caught = [seed for seed in SEEDS if "learned" in run(seed, build)[0]]
    assert len(caught) > len(SEEDS) // 2, caught


def test_checks_catch_a_node_that_takes_catchup_replies_nobody_asked_for() -> None:
    """A forged snapshot installed is not the state of the chosen prefix (``prefix``);
    forged entries learned are not chosen (``learned``)."""

    def build(config: CoreConfig, durable: DurableState, rng: random.Random) -> Node:
        return TakesUnaskedCatchup(config, durable, rng)

    fired = [run(seed, build)[0] for seed in SEEDS]
    assert sum("prefix" in f for f in fired) > len(SEEDS) // 2, fired
    assert sum("learned" in f for f in fired) > len(SEEDS) // 2, fired
