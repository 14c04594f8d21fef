"""The primary keeper's timers: one per lease, session, unbound permit and lock-delay, all in
one ``Deadlines`` heap with the parked waiters' deadlines, so that ``tick`` fires them in one
order (two heaps could order equal deadlines differently).

A timer names the grant it ends (its token) and whether its decision was proposed already;
its heap entry then means "propose it again" (``retry_s`` later), as a decision lost with a
failed proposal must not leave a grant running for ever.
"""

from __future__ import annotations

import msgspec

from paxlock.coordinator.core.deadlines import Deadlines


class Kind:
    """What a deadline is for. Plain ints, not an ``IntEnum``: a key tuple of ints and strings
    (and the heap entry holding it) leaves the garbage collector's care after its first pass,
    where an enum member would keep one key per lease tracked, scanned by every full
    collection: a primary holding 100k leases paused for it."""

    EXPIRE = 0
    """A lease's ttl, keyed by its name."""
    UNBLOCK = 1
    """A lease name's lock-delay, keyed by the name."""
    WAIT = 2
    """A parked waiter's wait, keyed by its waiter id."""
    SESSION = 3
    """A session's ttl, keyed by its id."""
    SHARED_EXPIRE = 4
    """An unbound permit's (or read/write hold's) ttl, keyed by its token."""
    SHARED_UNBLOCK = 5
    """The lock-delay after a permit's expiry, keyed by the expired token."""


Key = tuple[int, str | int]
"""A deadline: (kind, what it is keyed by)."""


class Timer(msgspec.Struct, gc=False):
    """Untracked by the garbage collector (``gc=False``): it holds numbers only, so it can
    be in no reference cycle, and one exists per grant."""

    token: int
    deadline: float
    """When the grant (or its lock-delay) runs out; fixed until restarted."""
    proposed: bool = False
    """Its decision was proposed; the deadline entry now means "propose it again"."""


class Timers:
    def __init__(self, deadlines: Deadlines[Key]) -> None:
        self.deadlines = deadlines
        self.by_key: dict[Key, Timer] = {}

    def start(self, kind: int, ident: str | int, token: int, deadline: float) -> None:
        key = (kind, ident)
        self.by_key[key] = Timer(token, deadline)
        self.deadlines.set(key, deadline)

    def start_all(self, starts: list[tuple[Key, int, float]]) -> None:
        """Start many at once in O(n): a new primary restarts every timer when it takes
        office (100k leases at once)."""
        by_key = self.by_key
        for key, token, deadline in starts:
            by_key[key] = Timer(token, deadline)
        self.deadlines.set_many([(key, deadline) for key, _, deadline in starts])

    def stop(self, kind: int, ident: str | int) -> Timer | None:
        key = (kind, ident)
        self.deadlines.cancel(key)
        return self.by_key.pop(key, None)

    def get(self, kind: int, ident: str | int) -> Timer | None:
        return self.by_key.get((kind, ident))

    def fired(self, key: Key, retry_at: float) -> Timer:
        """``key``'s deadline was popped: its decision is proposed now, and again at
        ``retry_at`` unless it was applied by then."""
        timer = self.by_key[key]
        timer.proposed = True
        self.deadlines.set(key, retry_at)
        return timer

    def running(self, kind: int, ident: str | int, token: int) -> bool:
        """The timer of grant ``token`` runs and its end was not proposed yet."""
        timer = self.by_key.get((kind, ident))
        return timer is not None and timer.token == token and not timer.proposed

    def left(self, kind: int, ident: str | int, now: float) -> float | None:
        timer = self.by_key.get((kind, ident))
        return None if timer is None else max(0.0, timer.deadline - now)
