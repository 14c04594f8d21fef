"""The simulated network: seeded drop, duplication, delay (hence reordering) and directed
partitions. It only decides *when* (or whether) an envelope arrives; the simulation owns the
clock and the event queue."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(slots=True)
class NetworkFaults:
    drop: float = 0.0
    duplicate: float = 0.0
    delay_min_s: float = 0.001
    delay_max_s: float = 0.004


class Network:
    def __init__(self, rng: random.Random, faults: NetworkFaults) -> None:
        self.rng = rng
        self.faults = faults
        self.cut: set[tuple[str, str]] = set()
        """Directed links that deliver nothing: (src, dst) cut is a one-way partition."""

    def arrivals(self, src: str, dst: str, now: float) -> list[float]:
        """Arrival times for one envelope: none if lost, two if duplicated."""
        if src == dst:
            return [now]  # loopback inside a node: never lost, never delayed
        if (src, dst) in self.cut:
            return []
        f, rng = self.faults, self.rng
        if f.drop and rng.random() < f.drop:
            return []
        copies = 2 if f.duplicate and rng.random() < f.duplicate else 1
        return [now + rng.uniform(f.delay_min_s, f.delay_max_s) for _ in range(copies)]

    def partition(self, members: tuple[str, ...]) -> str:
        """Cut a random set of links: an isolated node, a split in two, or one-way links."""
        rng = self.rng
        self.cut.clear()
        kind = rng.choice(("isolate", "split", "one-way"))
        if kind == "isolate":
            lone = rng.choice(members)
            self.cut |= {(a, b) for a in members for b in members if (a == lone) != (b == lone)}
        elif kind == "split":
            side = set(rng.sample(members, rng.randint(1, len(members) // 2)))
            self.cut |= {(a, b) for a in members for b in members if (a in side) != (b in side)}
        else:
            links = [(a, b) for a in members for b in members if a != b]
            self.cut |= set(rng.sample(links, rng.randint(1, len(links) // 2)))
        return kind

    def heal(self) -> None:
        self.cut.clear()
