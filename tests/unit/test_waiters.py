"""The primary's parked acquires (``waiters.Waiters``), one rule per test (DESIGN.md §3):
FIFO per name, bounded per name and in total, a retry takes its predecessor's place, a
waiter whose wait runs out leaves. The keeper's use of them is in ``test_keeper.py``."""

from __future__ import annotations

import pytest

from paxlock.coordinator.core.ballot import Ballot
from paxlock.coordinator.core.deadlines import Deadlines
from paxlock.coordinator.core.keeper import (
    AcquireRequest,
    KeeperConfig,
    LeaseKeeper,
    Reply,
    RequestKey,
    Unavailable,
)
from paxlock.coordinator.core.lease_commands import Acquire, Lease, Office, Release
from paxlock.coordinator.core.leases import LeaseMachine
from paxlock.coordinator.core.waiters import Waiters


def request(key: int, name: str = "db", holder: str | None = None, *, wait_s: float = 5.0,
            request_id: str | None = None) -> AcquireRequest:
    command = Acquire(name, holder or f"h{key}", 10.0, None, 0.0, request_id)
    return AcquireRequest(RequestKey(key), command, wait_s)


def keys(waiters: Waiters[int]) -> list[int]:
    return [w.request.key for w in waiters]


def waiters_and_deadlines(per_name_max: int = 8,
                          total_max: int = 8) -> tuple[Waiters[int], Deadlines[int]]:
    """As the keeper composes them, but with the waiter id as the whole deadline key."""
    deadlines: Deadlines[int] = Deadlines()
    return Waiters(per_name_max, total_max, deadlines, lambda wid: wid), deadlines


def time_out(waiters: Waiters[int], deadlines: Deadlines[int], now: float) -> list[int]:
    """What the keeper's tick does: the waiters whose deadline is due leave, earliest first."""
    return [waiters.timed_out(wid).request.key for wid in deadlines.pop_due(now)]


def test_waiters_of_a_name_leave_in_the_order_they_were_parked() -> None:
    waiters, _ = waiters_and_deadlines()
    for key in [3, 1, 2]:
        waiters.park(request(key), deadline=9.0)
    order = []
    while (first := waiters.first("db")) is not None:
        waiters.unpark(first)
        order.append(first.request.key)
    assert order == [3, 1, 2] and len(waiters) == 0


def test_a_waiter_put_back_goes_to_the_head_of_its_queue() -> None:
    waiters, _ = waiters_and_deadlines()
    waiters.park(request(1), 9.0)
    waiters.park(request(2), 9.0, front=True)
    assert keys(waiters) == [2, 1]


def test_waiters_are_bounded_per_name_and_in_total() -> None:
    waiters, _ = waiters_and_deadlines(per_name_max=2, total_max=3)
    waiters.park(request(1, "a"), 9.0)
    assert not waiters.full("a")
    waiters.park(request(2, "a"), 9.0)
    assert waiters.full("a") and not waiters.full("b")
    waiters.park(request(3, "b"), 9.0)
    assert waiters.full("b") and waiters.full("c")  # the total bound, for any name
    waiters.unpark(waiters.first("a") or pytest.fail())
    assert not waiters.full("a") and not waiters.full("c")


def test_a_retry_of_a_parked_request_takes_its_place_and_its_own_wait() -> None:
    waiters, deadlines = waiters_and_deadlines()
    waiters.park(request(1, holder="b", request_id="rb"), deadline=5.0)
    waiters.park(request(2), deadline=5.0)
    replies: list[Reply] = []
    retry = request(3, holder="b", request_id="rb", wait_s=60.0)
    assert waiters.supersede(retry, now=1.0, replies=replies)
    assert replies == [Reply(RequestKey(1), Unavailable("superseded by a retry"))]
    assert keys(waiters) == [3, 2] and len(waiters) == 2
    assert time_out(waiters, deadlines, 5.0) == [2]  # not the old wait
    assert deadlines.next() == 61.0


def test_a_retry_that_will_not_wait_only_removes_the_parked_one() -> None:
    waiters, deadlines = waiters_and_deadlines()
    waiters.park(request(1, holder="b", request_id="r1"), 5.0)
    replies: list[Reply] = []
    retry = request(2, holder="b", request_id="r1", wait_s=0.0)
    assert not waiters.supersede(retry, 1.0, replies)
    assert [r.to for r in replies] == [1] and len(waiters) == 0
    assert deadlines.next() is None


def test_a_request_that_is_not_a_retry_supersedes_nothing() -> None:
    waiters, _ = waiters_and_deadlines()
    waiters.park(request(1, holder="b", request_id="r1"), 5.0)
    replies: list[Reply] = []
    assert not waiters.supersede(request(2, holder="b", request_id="r2"), 1.0, replies)
    assert replies == [] and keys(waiters) == [1]


def test_waiters_whose_wait_ran_out_leave_earliest_first_ties_in_parking_order() -> None:
    waiters, deadlines = waiters_and_deadlines()
    for key, name, deadline in [(1, "a", 3.0), (2, "b", 2.0), (3, "a", 2.0), (4, "b", 7.0)]:
        waiters.park(request(key, name), deadline)
    assert deadlines.next() == 2.0
    assert time_out(waiters, deadlines, 3.0) == [2, 3, 1]
    assert keys(waiters) == [4] and deadlines.next() == 7.0


def test_a_cancelled_request_leaves_its_queue_and_its_deadline() -> None:
    waiters, deadlines = waiters_and_deadlines()
    waiters.park(request(1), 2.0)
    waiters.park(request(2), 4.0)
    waiters.cancel(RequestKey(1))
    assert keys(waiters) == [2] and deadlines.next() == 4.0
    waiters.cancel(RequestKey(99))  # gone already, or never parked: nothing happens
    assert keys(waiters) == [2]


def test_a_handed_off_waiter_is_kept_until_its_own_acquire_is_over() -> None:
    waiters, deadlines = waiters_and_deadlines()
    waiters.park(request(1), 2.0)
    waiter = waiters.first("db") or pytest.fail()
    waiters.hand_off(waiter)
    assert len(waiters) == 0 and waiters.handing_off("db") and deadlines.pop_due(9.0) == []
    assert waiters.handoff_over(request(2).command) is None  # another request's Acquire
    assert waiters.handoff_over(waiter.request.command) == waiter
    assert not waiters.handing_off("db") and waiters.handoffs() == []


def test_a_failed_handoff_put_back_in_a_full_queue_keeps_the_bound() -> None:
    """The bound holds whatever the order of events: here the waiter handed off behind a
    Release leaves room that a newcomer takes, and the Release then fails."""
    machine, ballot = LeaseMachine(), Ballot(1, "n1")
    machine.apply(Office(ballot))
    keeper = LeaseKeeper(KeeperConfig(waiters_max=1))
    keeper.take_office(machine, 0.0, ballot)
    held = Acquire("job", "a", 10.0)
    lease = machine.apply(held)
    assert isinstance(lease, Lease)
    keeper.on_applied(held, lease, 0.0)
    handed = request(1, "job", "b")
    keeper.acquire(handed, 0.1)
    assert keeper.release_requested(Release("job", "a", lease.token), 0.2).proposals
    keeper.acquire(request(2, "job", "c"), 0.2)  # parked in the room the handoff left
    # the Release never made it: the handed-off Acquire is refused held
    keeper.on_applied(handed.command, machine.apply(handed.command), 0.3)
    assert keeper.waiters <= 1
