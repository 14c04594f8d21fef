"""The simulated state machine: a running hash over every value applied, in slot order.

Tiny, deterministic, and sensitive to every slot (a no-op too), so a snapshot has content and
a wrong one shows: the checker folds the ground-truth chosen values the same way and compares.
A snapshot is the applied slot (8 bytes, big-endian) followed by the digest.
"""

from __future__ import annotations

import hashlib

import msgspec

from paxlock.coordinator.core.messages import Value

_encode = msgspec.msgpack.Encoder().encode
INITIAL = bytes(16)


def fold(state: bytes, value: Value) -> bytes:
    """The state after applying ``value`` to ``state``."""
    return hashlib.blake2b(state + _encode(value), digest_size=16).digest()


def snapshot_bytes(slot: int, state: bytes) -> bytes:
    return slot.to_bytes(8, "big") + state


class HashChain:
    __slots__ = ("slot", "state")

    def __init__(self) -> None:
        self.slot = 0
        """The last slot applied."""
        self.state = INITIAL

    def apply(self, slot: int, value: Value) -> None:
        self.slot = slot
        self.state = fold(self.state, value)

    def snapshot(self) -> bytes:
        return snapshot_bytes(self.slot, self.state)

    def restore(self, data: bytes) -> None:
        """Replace the whole state with a snapshot (``Ready.installed``)."""
        self.slot = int.from_bytes(data[:8], "big")
        self.state = data[8:]
