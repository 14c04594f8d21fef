"""A set of keyed deadlines for a pure core: set, cancel, and pop the ones that are due.

A min-heap with lazy deletion: restarting or cancelling a deadline is O(log n) and leaves
the old heap entry behind, skipped when it surfaces and swept when stale entries outnumber
live ones (so memory stays bounded by the live deadlines). Ties pop in the order they were
set, so the result never depends on how keys hash.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class Deadlines(Generic[K]):
    def __init__(self) -> None:
        self._at: dict[K, float] = {}
        self._heap: list[tuple[float, int, K]] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self._at)

    def __contains__(self, key: K) -> bool:
        return key in self._at

    def get(self, key: K) -> float | None:
        return self._at.get(key)

    def set(self, key: K, at: float) -> None:
        """(Re)start ``key``'s deadline; an earlier one for the same key is dropped."""
        self._at[key] = at
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, key))
        if len(self._heap) > 2 * len(self._at) + 64:
            self._heap = [e for e in self._heap if self._live(e)]
            heapq.heapify(self._heap)

    def set_many(self, deadlines: list[tuple[K, float]]) -> None:
        """``set`` each in order, in O(n) rather than O(n log n): one heapify, as a new
        primary restarts every lease timer at once."""
        heap = self._heap
        for key, at in deadlines:
            self._at[key] = at
            self._seq += 1
            heap.append((at, self._seq, key))
        if len(heap) > 2 * len(self._at) + 64:
            heap[:] = [e for e in heap if self._live(e)]
        heapq.heapify(heap)

    def cancel(self, key: K) -> None:
        self._at.pop(key, None)

    def pop_due(self, now: float) -> list[K]:
        """Every key whose deadline is at or before ``now``, earliest first; they are removed."""
        due: list[K] = []
        while self._heap and self._heap[0][0] <= now:
            entry = heapq.heappop(self._heap)
            if self._live(entry):
                del self._at[entry[2]]
                due.append(entry[2])
        return due

    def next(self) -> float | None:
        """The earliest live deadline."""
        while self._heap and not self._live(self._heap[0]):
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def _live(self, entry: tuple[float, int, K]) -> bool:
        at, _, key = entry
        return self._at.get(key) == at
