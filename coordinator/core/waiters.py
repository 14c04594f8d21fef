"""The primary's parked acquires: one FIFO queue per name, each waiter with its own deadline.

A part of ``LeaseKeeper``, apart so that the keeper keeps the policy (when a name goes to
its first waiter, when to hand it off behind a Release, what a timed-out waiter is told)
and this class the bookkeeping that must stay consistent: a parked waiter is in its queue,
in the index by id and in the deadlines, or in none of them. Bounded per name and in total
(STYLE: a limit on every queue); pure and volatile like the keeper, whose ``step_down``
drops it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from paxlock.coordinator.core.deadlines import Deadlines
from paxlock.coordinator.core.coord_commands import AcquireShared
from paxlock.coordinator.core.keeper_effects import (
    AcquireRequest,
    QueueKey,
    Reply,
    RequestKey,
    Unavailable,
    queue_of,
)
from paxlock.coordinator.core.lease_commands import Acquire

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class Waiter:
    wid: int
    """Unique while parked; a retry that supersedes it keeps it (and so its place)."""
    request: AcquireRequest
    deadline: float
    """When its ``wait_s`` runs out: it is then answered ``held``."""


class Waiters(Generic[K]):
    def __init__(
        self, per_name_max: int, total_max: int, deadlines: Deadlines[K], key: Callable[[int], K]
    ) -> None:
        """``deadlines`` is the keeper's heap, shared with its timers (a waiter's entry is
        ``key(wid)``) so that its ``tick`` fires both in one order: two heaps could order
        equal deadlines differently, as which stale entries ``Deadlines`` has pruned decides
        ties."""
        self.per_name_max = per_name_max
        self.total_max = total_max
        self._queues: dict[QueueKey, deque[Waiter]] = {}
        """Never holds an empty queue, so ``name in _queues`` means "has waiters"."""
        self._by_id: dict[int, Waiter] = {}
        self._by_key: dict[RequestKey, int] = {}
        """Request key -> wid of every parked waiter: a client that goes away is found in
        O(1) (10k waiters whose clients all disconnect would otherwise cost 10k squared)."""
        self._deadlines = deadlines
        self._key = key
        self._next_wid = 0
        self._handoffs: dict[str, Waiter] = {}
        """Unparked, their Acquire proposed right behind the holder's Release; kept until it
        is applied or rejected, as a Release that fails puts its waiter back (``front``).
        Not counted by ``len``, but against the bounds: the room a handoff left is kept for
        it, or its return would overflow them."""

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[Waiter]:
        """Every waiter: name by name in the order the names were first queued, FIFO within."""
        return (waiter for queue in self._queues.values() for waiter in queue)

    def first(self, name: QueueKey) -> Waiter | None:
        queue = self._queues.get(name)
        return queue[0] if queue else None

    def queued(self, name: QueueKey) -> list[Waiter]:
        """The waiters of ``name``, head first."""
        return list(self._queues.get(name, ()))

    def full(self, name: QueueKey) -> bool:
        """Parking one more for ``name`` would pass a bound: the request is answered 503."""
        queue = self._queues.get(name, ())
        handed = len(self._handoffs)
        return (len(self._by_id) + handed >= self.total_max
                or len(queue) + (name in self._handoffs) >= self.per_name_max)  # fmt: skip

    def park(self, request: AcquireRequest, deadline: float, *, front: bool = False) -> None:
        """Queue ``request`` until ``deadline``; ``front``: at the head (a handoff behind a
        Release that failed goes back to where it was)."""
        self._next_wid += 1
        waiter = Waiter(self._next_wid, request, deadline)
        queue = self._queues.setdefault(request.queue, deque())
        if front:
            queue.appendleft(waiter)
        else:
            queue.append(waiter)
        self._by_id[waiter.wid] = waiter
        self._by_key[request.key] = waiter.wid
        self._deadlines.set(self._key(waiter.wid), deadline)
        assert len(self._by_id) <= self.total_max and len(self._by_key) == len(self._by_id)

    def unpark(self, waiter: Waiter) -> None:
        name = waiter.request.queue
        queue = self._queues[name]
        queue.remove(waiter)
        del self._by_id[waiter.wid]
        del self._by_key[waiter.request.key]
        self._deadlines.cancel(self._key(waiter.wid))
        if not queue:
            del self._queues[name]

    def hand_off(self, waiter: Waiter) -> None:
        """Unpark ``waiter``: its Acquire goes to the log right behind the holder's Release
        (leases only)."""
        assert isinstance(waiter.request.command, Acquire), waiter
        self.unpark(waiter)
        self._handoffs[waiter.request.command.name] = waiter

    def handing_off(self, name: str) -> bool:
        return name in self._handoffs

    def handoffs(self) -> list[Waiter]:
        return list(self._handoffs.values())

    def handoff_over(self, command: Acquire) -> Waiter | None:
        """The waiter handed ``command``, which was applied or rejected: it is forgotten."""
        handoff = self._handoffs.get(command.name)
        if handoff is None or handoff.request.command != command:
            return None
        del self._handoffs[command.name]
        return handoff

    def unpark_retries(self, command: Acquire | AcquireShared) -> list[Waiter]:
        """Unpark the parked retries of ``command`` (same request id, so equal), FIFO: once
        it is applied, they get its answer."""
        queue = self._queues.get(queue_of(command), ())
        retries = [w for w in queue if w.request.command == command]
        for waiter in retries:
            self.unpark(waiter)
        return retries

    def supersede(self, request: AcquireRequest, now: float, replies: list[Reply]) -> bool:
        """A retry of a parked request takes its place in the queue (and its own wait); the
        old one is answered 503. A retry that will not wait only removes the old one.
        True if the retry is parked."""
        queue = self._queues.get(request.queue, deque())
        for index, waiter in enumerate(queue):
            if waiter.request.command == request.command:
                replies.append(Reply(waiter.request.key, Unavailable("superseded by a retry")))
                if request.wait_s == 0:
                    self.unpark(waiter)
                    return False
                retry = Waiter(waiter.wid, request, now + request.wait_s)
                queue[index] = self._by_id[waiter.wid] = retry
                del self._by_key[waiter.request.key]
                self._by_key[request.key] = waiter.wid
                self._deadlines.set(self._key(retry.wid), retry.deadline)
                return True
        return False

    def cancel(self, key: RequestKey) -> Waiter | None:
        """The client of ``key`` went away: its waiter leaves, so nobody is granted a name
        for a request no one will read."""
        wid = self._by_key.get(key)
        if wid is None:
            return None
        waiter = self._by_id[wid]
        self.unpark(waiter)
        return waiter

    def timed_out(self, wid: int) -> Waiter | None:
        """The deadline ``key(wid)`` was popped: waiter ``wid`` leaves its queue. None when it
        left already: one ``tick`` pops every due deadline first, and a shared name's waiter
        that ran out may be answered while its queue is walked (``SharedKeeper.grant``)."""
        waiter = self._by_id.get(wid)
        if waiter is not None:
            self.unpark(waiter)
        return waiter
