"""The idempotency window of the lease state machine (``leases``): the first result of every
client command that carried a ``request_id``, so that a retry is answered, never re-applied.

Entries are keyed by ``(principal, holder, request_id)`` and bounded twice: per holder (that
holder's oldest entry goes first) and in total, where the oldest entry *of the principal with
the most entries* goes (ties: the smallest principal name). So one principal's flood evicts
its own results, never another principal's. Hits do not refresh an entry: eviction depends
only on the command sequence, and is the same on every member, before and after a snapshot.
Evicted entries leave a fingerprint, so that their retries are refused ``request_expired``
instead of applied as new.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterable

import msgspec

from paxlock.coordinator.core.lease_commands import AnyClientCommand, Result

WINDOW_PER_HOLDER = 1024
"""Results remembered per holder. The SDK gives every mutating call its own request id, so a
busy holder spends one entry per call: this must cover every call it can make while one of
its calls backs off and retries across a failover (a few seconds), or the retry conflicts
with its own first attempt."""
WINDOW_TOTAL = 65_536
EXPIRED_TOTAL = 262_144
"""Fingerprints of evicted window entries kept (8 bytes each: 2 MiB at most)."""

Key = tuple[str, str, str]
"""(principal, holder, request_id)."""


class Remembered(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One entry of the idempotency window: the first result of a client command (whose
    ``principal`` is part of the key). Untracked by the garbage collector (``gc=False``):
    it holds frozen structs of strings and numbers, so it can be in no reference cycle, and
    65,536 of them would otherwise be scanned by every full collection."""

    holder: str
    request_id: str
    command: AnyClientCommand
    result: Result

    @property
    def key(self) -> Key:
        return (self.command.principal, self.holder, self.request_id)


def fingerprint(holder: str, request_id: str, principal: str = "") -> bytes:
    """What the window keeps of an evicted entry (for the principal ``""`` the same as before
    principals existed, so older snapshots keep their meaning)."""
    scope = f"{len(principal)}:{principal}/" if principal else ""
    key = f"{scope}{len(holder)}:{holder}{request_id}".encode("utf-8", "surrogatepass")
    return hashlib.blake2b(key, digest_size=8).digest()


class Window:
    def __init__(self, per_holder: int = WINDOW_PER_HOLDER, total: int = WINDOW_TOTAL) -> None:
        """The bounds must be equal on every member (they are part of the snapshot)."""
        assert 0 < per_holder <= total
        self.per_holder = per_holder
        self.total = total
        self._entries: dict[Key, Remembered] = {}
        self._by_holder: dict[tuple[str, str], deque[str]] = {}
        """(principal, holder) -> its request ids, oldest first."""
        self._by_principal: dict[str, dict[Key, None]] = {}
        """principal -> its keys, oldest first (an ordered set: per-holder evictions take
        entries from its middle)."""
        self._expired: dict[bytes, None] = {}
        """Fingerprints of evicted entries, oldest first."""

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, command: AnyClientCommand) -> Remembered | None:
        assert command.request_id is not None
        return self._entries.get((command.principal, command.holder, command.request_id))

    def evicted(self, command: AnyClientCommand) -> bool:
        """Whether ``command``'s entry was remembered once and has been evicted since."""
        assert command.request_id is not None
        return fingerprint(command.holder, command.request_id, command.principal) in self._expired

    def remember(self, command: AnyClientCommand, result: Result) -> None:
        assert command.request_id is not None
        entry = Remembered(command.holder, command.request_id, command, result)
        assert entry.key not in self._entries, "a remembered request is replayed, not re-applied"
        mine = self._by_holder.get((command.principal, command.holder))
        if mine is not None and len(mine) >= self.per_holder:
            self._forget((command.principal, command.holder, mine[0]))
        if len(self._entries) >= self.total:
            self._forget(self._victim())
        self._insert(entry)
        assert len(self._entries) <= self.total

    def entries(self) -> tuple[Remembered, ...]:
        """In insertion order (the snapshot's order)."""
        return tuple(self._entries.values())

    def expired(self) -> tuple[bytes, ...]:
        return tuple(self._expired)

    @classmethod
    def restore(cls, per_holder: int, total: int, entries: Iterable[Remembered],
                expired: Iterable[bytes]) -> Window:  # fmt: skip
        window = cls(per_holder, total)
        for entry in entries:
            window._insert(entry)
        window._expired = dict.fromkeys(expired)
        assert len(window._entries) <= total
        assert all(len(q) <= per_holder for q in window._by_holder.values())
        assert sum(map(len, window._by_principal.values())) == len(window._entries)
        return window

    def _victim(self) -> Key:
        """The oldest entry of the principal with the most entries (ties: the smallest name;
        the principals are the auth file's, a handful, so the scan is cheap)."""
        by_principal = self._by_principal
        principal = min(by_principal, key=lambda p: (-len(by_principal[p]), p))
        return next(iter(by_principal[principal]))

    def _insert(self, entry: Remembered) -> None:
        key = entry.key
        principal, holder, request_id = key
        self._entries[key] = entry
        self._by_holder.setdefault((principal, holder), deque()).append(request_id)
        self._by_principal.setdefault(principal, {})[key] = None

    def _forget(self, key: Key) -> None:
        """Evict ``key``, which is always its holder's oldest entry (FIFO per holder)."""
        principal, holder, request_id = key
        del self._entries[key]
        if len(self._expired) >= EXPIRED_TOTAL:
            del self._expired[next(iter(self._expired))]
        self._expired[fingerprint(holder, request_id, principal)] = None
        mine = self._by_holder[(principal, holder)]
        assert mine[0] == request_id, "window eviction is FIFO per holder"
        mine.popleft()
        if not mine:
            del self._by_holder[(principal, holder)]
        theirs = self._by_principal[principal]
        del theirs[key]
        if not theirs:
            del self._by_principal[principal]
