"""The ports the runtime needs, as Protocols: the adapters in ``persistence`` and ``api``
implement them, and tests substitute their own (a store that hangs, a recording transport)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from paxlock.coordinator.core.messages import Envelope, Record


class Store(Protocol):
    async def append(self, records: Sequence[Record]) -> None:
        """Return only once ``records`` are durable (committed with fsync)."""
        ...

    async def save_snapshot(self, slot: int, data: bytes) -> None:
        """Durably store a state-machine snapshot at ``slot`` and drop what it covers."""
        ...

    @property
    def durable_calls(self) -> int:
        """How many ``append``/``save_snapshot`` calls have completed durably so far: the
        runtime checks it covers every call it made before a message leaves."""
        ...


class Transport(Protocol):
    def send(self, envelopes: Sequence[Envelope]) -> None:
        """Queue envelopes for their peers; never blocks, may lose them (Paxos copes)."""
        ...


Clock = Callable[[], float]
"""Monotonic seconds; ``time.monotonic`` in production."""
