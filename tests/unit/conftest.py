"""Shared in-memory networks for the unit tests of the pure core.

Two ways to join several ``Node`` state machines, as h11's tests join two connections:

- ``FifoNet``: no clock, no faults. Every envelope goes into one FIFO queue and the test
  decides what to deliver (``deliver(where=...)``) and what to lose (``drop(where=...)``), so
  a scenario such as the notes' dueling proposers can be scheduled message by message.
- ``ClockedNet``: a simulated clock and a fair network (every envelope arrives after a seeded
  random delay; nothing is lost unless a link is cut). Each ``step()`` is one event: a
  delivery or a node's timer; nodes' timers come from the ``deadline`` of their ``Ready``.

Both model the runtime's rule literally: a node's records reach its disk (a ``DurableState``)
before its messages enter the network, and a restarted node is rebuilt from its disk alone.

pytest runs with ``--import-mode=importlib``, so the helpers reach the tests as fixtures
(``fifo_net``, ``clocked_net``) that return the classes.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from paxlock.coordinator.core.messages import ChosenEntry, Envelope
from paxlock.coordinator.core.node import CoreConfig, Node
from paxlock.coordinator.core.proposer import Role
from paxlock.coordinator.core.ready import CoreEvent, DurableState, Ready, Rejection

INF = float("inf")


class _Cluster:
    """What both networks share: nodes, disks, and everything each step returned."""

    def __init__(self, members: Iterable[str], *, seed: int = 0, **config: Any) -> None:
        self.members = tuple(members)
        self.seed = seed
        self.config_kw = config
        self.now = 0.0
        self.disks = {m: DurableState() for m in self.members}
        self.incarnation = dict.fromkeys(self.members, 0)
        self.nodes: dict[str, Node] = {}
        self.sent: list[Envelope] = []
        """Every envelope a node handed to the network, in order (lost ones included)."""
        self.learned: dict[str, list[ChosenEntry]] = {m: [] for m in self.members}
        self.installed: dict[str, list[tuple[int, bytes]]] = {m: [] for m in self.members}
        """Snapshots each node was told to install (``Ready.installed``), in order."""
        self.events: list[tuple[str, CoreEvent]] = []
        self.rejected: list[tuple[str, Rejection]] = []
        self.deadlines = dict.fromkeys(self.members, INF)
        for member in self.members:
            self._boot(member)

    def config(self, node_id: str, **override: Any) -> CoreConfig:
        return CoreConfig(node_id, self.members, **{**self.config_kw, **override})

    def _boot(self, node_id: str) -> None:
        self.incarnation[node_id] += 1
        rng = random.Random(f"{self.seed}/{node_id}/{self.incarnation[node_id]}")
        self.nodes[node_id] = Node(self.config(node_id), self.disks[node_id].copy(), rng)

    def restart(self, node_id: str) -> Ready:
        """Crash (volatile state lost) and restart from the disk alone."""
        self._boot(node_id)
        self.learned[node_id] = []
        self.installed[node_id] = []
        return self.start(node_id)

    # -- one step of one node ------------------------------------------------------------------

    def absorb(self, node_id: str, ready: Ready) -> Ready:
        for record in ready.records:  # persist ...
            self.disks[node_id].apply(record)
        for envelope in ready.messages:  # ... then send
            assert envelope.src == node_id
            self.sent.append(envelope)
            self._enqueue(envelope)
        if ready.installed is not None:  # the state machine is replaced first ...
            self.installed[node_id].append(ready.installed)
            self.learned[node_id] = []
        self.learned[node_id] += ready.learned  # ... then what comes after it is applied
        self.events += [(node_id, event) for event in ready.events]
        self.rejected += [(node_id, rejection) for rejection in ready.rejected]
        self.deadlines[node_id] = INF if ready.deadline is None else ready.deadline
        return ready

    def _enqueue(self, envelope: Envelope) -> None:
        raise NotImplementedError

    def start(self, node_id: str) -> Ready:
        return self.absorb(node_id, self.nodes[node_id].start(self.now))

    def start_all(self) -> None:
        for member in self.members:
            self.start(member)

    def tick(self, node_id: str) -> Ready:
        return self.absorb(node_id, self.nodes[node_id].tick(self.now))

    def submit(self, node_id: str, command: Any) -> Ready:
        return self.absorb(node_id, self.nodes[node_id].submit(command, self.now))

    def run_phase1(self, node_id: str) -> Ready:
        return self.absorb(node_id, self.nodes[node_id].run_phase1(self.now))

    def receive(self, envelope: Envelope) -> Ready:
        node = self.nodes[envelope.dst]
        return self.absorb(envelope.dst, node.receive(envelope.src, envelope.msg, self.now))

    # -- views ---------------------------------------------------------------------------------

    def primaries(self) -> list[str]:
        return [m for m, node in self.nodes.items() if node.role is Role.PRIMARY]

    def sent_of(self, kind: type, since: int = 0) -> list[Envelope]:
        return [e for e in self.sent[since:] if isinstance(e.msg, kind)]

    def events_of(self, kind: type) -> list[tuple[str, Any]]:
        return [(m, e) for m, e in self.events if isinstance(e, kind)]


class FifoNet(_Cluster):
    """No clock (``now`` moves only when a test sets it), no faults, one FIFO queue."""

    def __init__(self, members: Iterable[str], *, seed: int = 0, **config: Any) -> None:
        self.queue: deque[Envelope] = deque()
        super().__init__(members, seed=seed, **config)

    def _enqueue(self, envelope: Envelope) -> None:
        self.queue.append(envelope)

    def deliver(
        self, where: Callable[[Envelope], bool] = lambda e: True, max_steps: int = 100_000
    ) -> list[Envelope]:
        """Deliver, in FIFO order, every queued envelope matching ``where`` (including those
        sent in reply meanwhile) until none matches; the others stay queued, in order."""
        delivered = []
        for _ in range(max_steps):
            index = next((i for i, e in enumerate(self.queue) if where(e)), None)
            if index is None:
                return delivered
            envelope = self.queue[index]
            del self.queue[index]
            delivered.append(envelope)
            self.receive(envelope)
        raise AssertionError(f"network did not quiesce within {max_steps} deliveries")

    def drop(self, where: Callable[[Envelope], bool]) -> list[Envelope]:
        """Lose every queued envelope matching ``where``."""
        lost = [e for e in self.queue if where(e)]
        self.queue = deque(e for e in self.queue if not where(e))
        return lost

    def elect(self, node_id: str) -> None:
        """Phase 1 by hand, everything delivered: ``node_id`` becomes the primary."""
        self.run_phase1(node_id)
        self.deliver()
        assert self.primaries() == [node_id]


class ClockedNet(_Cluster):
    """A simulated clock and a fair network: seeded delays, no loss except on cut links."""

    def __init__(
        self,
        members: Iterable[str],
        *,
        seed: int = 0,
        delay_s: tuple[float, float] = (0.001, 0.010),
        **config: Any,
    ) -> None:
        self.heap: list[tuple[float, int, Envelope]] = []
        self.seq = itertools.count()
        self.delay_s = delay_s
        self.net_rng = random.Random(f"{seed}/network")
        self.cut: set[tuple[str, str]] = set()
        self.steps = 0
        super().__init__(members, seed=seed, **config)

    def _enqueue(self, envelope: Envelope) -> None:
        if (envelope.src, envelope.dst) in self.cut:
            return
        delay = 0.0 if envelope.src == envelope.dst else self.net_rng.uniform(*self.delay_s)
        heapq.heappush(self.heap, (self.now + delay, next(self.seq), envelope))

    def isolate_link(self, a: str, b: str) -> None:
        self.cut |= {(a, b), (b, a)}

    def step(self) -> bool:
        """One event: the earliest delivery or timer. False when nothing is left to happen."""
        next_message = self.heap[0][0] if self.heap else INF
        node_id, due = min(self.deadlines.items(), key=lambda item: (item[1], item[0]))
        if next_message == INF and due == INF:
            return False
        self.steps += 1
        if next_message <= due:
            when, _, envelope = heapq.heappop(self.heap)
            self.now = max(self.now, when)
            if (envelope.src, envelope.dst) not in self.cut:
                self.receive(envelope)
        else:
            self.now = max(self.now, due)
            self.tick(node_id)
        return True

    def run(self, *, until: Callable[[], bool] = lambda: False, max_steps: int,
            max_time_s: float = INF) -> bool:  # fmt: skip
        """Steps until ``until()`` holds (true), or ``max_steps``/``max_time_s`` run out."""
        for _ in range(max_steps):
            if until():
                return True
            if self.now > max_time_s or not self.step():
                return until()
        return until()

    def run_for(self, duration_s: float, max_steps: int = 1_000_000) -> None:
        end = self.now + duration_s
        for _ in range(max_steps):
            next_message = self.heap[0][0] if self.heap else INF
            if min(next_message, min(self.deadlines.values())) > end:
                self.now = end
                return
            self.step()
        raise AssertionError("too many steps")


@pytest.fixture
def fifo_net() -> type[FifoNet]:
    return FifoNet


@pytest.fixture
def clocked_net() -> type[ClockedNet]:
    return ClockedNet
