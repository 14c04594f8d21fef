"""Who waits on lease names at this node: watches for ``observe`` (long poll and SSE) — who
waits for a name to change, and the revision of each name's last change as this node applied
it —, ``Revisions``, who waits for any change at all (``GET /v1/changes``), and
``WaitingAcquires``, the bound on acquires waiting for one name."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable, Hashable, Iterator

from paxlock.coordinator.errors import TooMany
from paxlock.coordinator.views import LeaseView


class Watches:
    def __init__(self, current: Callable[[str], LeaseView | None],
                 clock: Callable[[], float]) -> None:  # fmt: skip
        """``current(name)`` is the name's lease view now, None when nobody holds it."""
        self.current = current
        self.clock = clock
        self._changes: dict[str, int] = {}
        self._watchers: dict[str, list[asyncio.Future[None]]] = {}

    def changed(self, name: str, revision: int) -> None:
        """The applied log changed ``name`` at ``revision`` (a replay changes nothing)."""
        if revision > self._changes.get(name, 0):
            self._changes[name] = revision
            self._wake(name)

    def reread_all(self) -> None:
        """The state was replaced (a snapshot install): every watcher looks again."""
        for name in list(self._watchers):
            self._wake(name)

    def _wake(self, name: str) -> None:
        for future in self._watchers.pop(name, []):
            if not future.done():
                future.set_result(None)

    def state(self, name: str) -> LeaseView:
        """The name now, with the revision of its last change (also when it is free)."""
        view = self.current(name)
        last = self._changes.get(name, 0)
        if view is None:
            return LeaseView(name, None, None, last, None, None, None, 0.0)
        return dataclasses.replace(view, revision=max(view.revision, last))

    async def observe(self, name: str, *, after: int, timeout: float) -> LeaseView | None:
        """Served from this node's applied log (any node, no forwarding): it sees every change
        in log order, and an SDK that re-polls with the last revision misses nothing."""
        deadline = self.clock() + timeout
        while True:
            state = self.state(name)
            if state.revision > after:
                return state
            left = deadline - self.clock()
            if left <= 0:
                return None
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            watchers = self._watchers.setdefault(name, [])
            watchers.append(future)
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(future, left)
            finally:  # woken, timed out or cancelled: a watcher never outlives its poll
                self._forget(name, future)

    def _forget(self, name: str, future: asyncio.Future[None]) -> None:
        watchers = self._watchers.get(name)
        if watchers is not None and future in watchers:
            watchers.remove(future)
            if not watchers:
                del self._watchers[name]

    @property
    def watching(self) -> int:
        """Polls waiting right now (bounded by the open requests, never by their history)."""
        return sum(len(watchers) for watchers in self._watchers.values())


class Revisions:
    """The cluster-wide revision this node has applied, and the polls waiting for it to pass
    a number: what a status page needs to refetch on every change of any kind (leases,
    elections, sessions, permits, read/write holds, groups, expiries), without one watch per
    name. Served from the applied log like ``Watches`` (any node, no forwarding)."""

    def __init__(self, revision: Callable[[], int], clock: Callable[[], float]) -> None:
        """``revision()``: the machine's revision now."""
        self.revision = revision
        self.clock = clock
        self._seen = revision()
        self._watchers: list[asyncio.Future[None]] = []

    def check(self) -> None:
        """After each replica step: wake every poll when the revision moved (a snapshot
        install may move it by many at once)."""
        now = self.revision()
        if now != self._seen:
            self._seen = now
            watchers, self._watchers = self._watchers, []
            for future in watchers:
                if not future.done():
                    future.set_result(None)

    async def after(self, after: int, *, timeout: float) -> int | None:
        """The revision once it exceeds ``after``, or None when ``timeout`` passes first."""
        deadline = self.clock() + timeout
        while True:
            revision = self.revision()
            if revision > after:
                return revision
            left = deadline - self.clock()
            if left <= 0:
                return None
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._watchers.append(future)
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(future, left)
            finally:  # a watcher never outlives its poll
                if future in self._watchers:
                    self._watchers.remove(future)

    @property
    def watching(self) -> int:
        return len(self._watchers)


class WaitingAcquires:
    """Acquires with ``wait`` > 0 in flight per name, at most ``per_name_max`` each: one more
    is refused at once (429 ``too_many``, limit ``waiters_per_name``) instead of joining a
    queue that it, and everyone behind it, would wait through. Counted where the service
    answers them, so at the primary for requests forwarded by the others; the keeper's own
    per-name bound (a 503) is set no lower and stays a backstop."""

    def __init__(self, per_name_max: int) -> None:
        assert per_name_max >= 1
        self.per_name_max = per_name_max
        self._counts: dict[str, int] = {}
        self._relayed: dict[Hashable, str] = {}
        self._relayed_counts: dict[str, int] = {}

    @contextlib.contextmanager
    def waiting(self, name: str) -> Iterator[None]:
        count = self._counts.get(name, 0)
        if count >= self.per_name_max:
            raise TooMany(f"{count} acquires already wait for {name} (limit "
                          f"{self.per_name_max})", limit="waiters_per_name")  # fmt: skip
        self._counts[name] = count + 1
        try:
            yield
        finally:
            left = self._counts.pop(name) - 1
            if left:
                self._counts[name] = left

    def relayed(self, key: Hashable, name: str) -> None:
        """A follower relayed an acquire with ``wait`` > 0 for ``name`` here: counted (not
        bounded: its follower bounded it) until ``relayed_done(key)``."""
        assert key not in self._relayed
        self._relayed[key] = name
        self._relayed_counts[name] = self._relayed_counts.get(name, 0) + 1

    def relayed_done(self, key: Hashable) -> None:
        """The relayed request ``key`` was answered or withdrawn (any key may be given)."""
        name = self._relayed.pop(key, None)
        if name is not None:
            left = self._relayed_counts.pop(name) - 1
            if left:
                self._relayed_counts[name] = left

    def count(self, name: str) -> int:
        """Acquires with ``wait`` > 0 in flight for ``name`` here, relayed ones included (a
        lease's ``waiters``: at the primary, every acquire waiting for it)."""
        return self._counts.get(name, 0) + self._relayed_counts.get(name, 0)

    def __len__(self) -> int:
        return sum(self._counts.values())
