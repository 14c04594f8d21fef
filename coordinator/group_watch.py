"""Observe for groups: a bounded history of each group's changes as this node applied them,
and who waits for the next one (long polls and event streams of ``GET
/v1/groups/{group}:observe``).

Served from this node's own applied log, like ``watch.Watches`` (any node, no forwarding):
a client that polls again with the last revision it saw, at any node, misses no event the
node still holds. What a node cannot give — events older than its history
(``HISTORY_PER_GROUP_MAX`` per group), or from before it started or installed a snapshot —
it says: the answer is then not ``complete``, and its ``members`` are the state to resync
from. Each answer carries the members as they are now.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable

from paxlock.coordinator.views import GroupChanges, GroupEvent, GroupView

HISTORY_PER_GROUP_MAX = 1024
"""Events kept per group (a group deleted and created again keeps one history)."""
GROUPS_WITH_HISTORY_MAX = 10_000
"""Groups whose history is kept; beyond it the oldest-changed group's is dropped (its next
observer gets a non-complete answer, not a wrong one)."""


class GroupEvents:
    def __init__(self, current: Callable[[str], GroupView | None],
                 revision: Callable[[], int], clock: Callable[[], float]) -> None:  # fmt: skip
        """``current(group)``: the group now (None when it does not exist); ``revision()``:
        the revision of the machine now."""
        self.current = current
        self.revision = revision
        self.clock = clock
        self._history: dict[str, deque[GroupEvent]] = {}
        self._floor: dict[str, int] = {}
        """Per group: events at or below this revision may be missing (dropped from a full
        history). ``_global_floor`` is the same for every group."""
        self._global_floor = 0
        self._watchers: dict[str, list[asyncio.Future[None]]] = {}

    def started(self) -> None:
        """This node applies from here on: what came before it is not in any history."""
        self._global_floor = self.revision()

    def record(self, group: str, event: GroupEvent) -> None:
        """The applied log changed ``group`` (a replay changes nothing: not recorded)."""
        history = self._history.pop(group, None)  # re-inserted last: dicts keep order
        if history is None:
            history = deque()
            if len(self._history) >= GROUPS_WITH_HISTORY_MAX:
                oldest = next(iter(self._history))
                dropped = self._history.pop(oldest)
                if dropped:
                    self._floor[oldest] = dropped[-1].revision
        if history and history[-1].revision > event.revision:
            return  # never out of log order; defensive
        if len(history) == HISTORY_PER_GROUP_MAX:
            self._floor[group] = history.popleft().revision
        history.append(event)
        self._history[group] = history
        self._wake(group)

    def reread_all(self) -> None:
        """A snapshot replaced the state: the histories have a gap up to its revision."""
        self._global_floor = self.revision()
        for group in list(self._watchers):
            self._wake(group)

    def _wake(self, group: str) -> None:
        for future in self._watchers.pop(group, []):
            if not future.done():
                future.set_result(None)

    def changes(self, group: str, after: int) -> GroupChanges | None:
        """The events after ``after`` and the members now; None when nothing is newer."""
        view = self.current(group)
        history = self._history.get(group, ())
        events = tuple(event for event in history if event.revision > after)
        revision = max(events[-1].revision if events else 0,
                       view.revision if view is not None else 0)  # fmt: skip
        if revision <= after:
            return None
        floor = max(self._global_floor, self._floor.get(group, 0))
        return GroupChanges(group, revision, events, view.members if view is not None else (),
                            complete=after >= floor)  # fmt: skip

    def known(self, group: str) -> bool:
        """The group exists, or this node saw it change (so an observer learns it is gone)."""
        return group in self._history or self.current(group) is not None

    async def observe(self, group: str, *, after: int, timeout: float) -> GroupChanges | None:
        deadline = self.clock() + timeout
        while True:
            changes = self.changes(group, after)
            if changes is not None:
                return changes
            left = deadline - self.clock()
            if left <= 0:
                return None
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._watchers.setdefault(group, []).append(future)
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(future, left)
            finally:  # a watcher never outlives its poll
                watchers = self._watchers.get(group)
                if watchers is not None and future in watchers:
                    watchers.remove(future)
                    if not watchers:
                        del self._watchers[group]

    @property
    def watching(self) -> int:
        return sum(len(watchers) for watchers in self._watchers.values())
