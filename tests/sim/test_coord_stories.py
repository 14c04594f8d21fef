"""Stories the coordination simulation found, replayed at the smallest scale that shows them.
The first fails on core as merged here (core 8ba9db2): a bug to fix there, not here. The
second failed on core 567d194 and was fixed in core 3a68c10 (found there independently by
the keeper's property test): it stays as a regression test."""

from __future__ import annotations

from paxlock.coordinator.core.ballot import ZERO_BALLOT
from paxlock.coordinator.core.coord_commands import AcquireShared, ExpireShared, SharedExpired
from paxlock.coordinator.core.keeper import LeaseKeeper
from paxlock.coordinator.core.keeper_effects import AcquireRequest, RequestKey
from paxlock.coordinator.core.lease_commands import Refused
from paxlock.coordinator.core.leases import LeaseMachine


def test_a_snapshot_round_trip_keeps_blocks_that_expired_out_of_token_order() -> None:
    """Found by ``coord_sim`` (keeper plant ``EarlySessionExpiry``, seed 7, and replica
    plant ``NoOfficeEntry``, seed 8, static membership): the ``prefix`` check saw a member's
    snapshot differ from the machine folded over the chosen log. A shared name's lock-delay
    blocks are kept in the order the holds *expired*, a restore sorts them by token: a
    member that restored a snapshot encodes the same state differently from one that
    applied the entries (snapshots of one prefix are no longer byte-equal, and the order
    of ``SharedName.blocked`` depends on the member's history). With the shipped parts:
    ``run_seed(123, 12000, coord=True)``."""
    machine = LeaseMachine()
    for holder in ("a", "b"):
        machine.apply(AcquireShared("rwlock", "x", holder, "read", 0, 1.0, None, 0.05))
    expired = [machine.apply(ExpireShared("rwlock", "x", h, t)) for h, t in (("b", 2), ("a", 1))]
    assert all(isinstance(e, SharedExpired) and e.blocked for e in expired), expired
    data = machine.snapshot()
    assert LeaseMachine.restore(data).snapshot() == data


def test_two_waiters_of_one_shared_name_whose_waits_run_out_in_one_tick() -> None:
    """Found by ``coord_sim`` (replica plant ``NoOfficeEntry``, seed 5, static membership:
    that plant ticks its keeper at other moments than the shipped glue, so two waits ran
    out in one tick). ``Deadlines.pop_due`` hands the keeper every due key at once; the
    first waiter's timeout runs ``SharedKeeper.grant`` over its queue, which unparks the
    second one (its deadline passed too) and answers it; then the second popped key names a
    waiter that is gone, and ``Waiters.timed_out`` raises ``KeyError`` in the primary's
    tick. Any late tick (a loaded event loop, a SIGSTOP'd primary resuming) with two waits
    of one semaphore or rwlock overdue reaches it (with the shipped parts of core 567d194,
    ``coord_sim`` seed 122 of 12000 steps raised it)."""
    machine = LeaseMachine()
    machine.apply(AcquireShared("semaphore", "s", "h0", "permit", 1, 5.0))
    keeper = LeaseKeeper()
    keeper.take_office(machine, 0.0, ZERO_BALLOT)
    for key, holder in ((1, "h1"), (2, "h2")):
        command = AcquireShared("semaphore", "s", holder, "permit", 1, 5.0)
        ready = keeper.acquire(AcquireRequest(RequestKey(key), command, 0.5), 0.0)
        assert not ready.proposals and not ready.replies  # both wait behind h0
    ready = keeper.tick(1.0)  # late: both waits ran out
    answered = sorted(reply.to for reply in ready.replies)
    assert answered == [1, 2], ready.replies
    assert all(isinstance(r.outcome, Refused) and r.outcome.code == "held"
               for r in ready.replies)  # fmt: skip
