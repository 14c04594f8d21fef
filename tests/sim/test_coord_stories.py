"""Stories the coordination simulation found, replayed at the smallest scale that shows them.

Found by ``coord_sim`` (keeper plant ``EarlySessionExpiry``, seed 7, static membership: its
early expiries with lock-delay made blocks out of token order): the ``prefix`` check saw a
member's snapshot differ from the state machine folded over the chosen log. A shared name's
lock-delay blocks are kept in the order the holds *expired*, but a restore sorts them by
token: a replica that restored a snapshot then encodes its state differently from one that
applied the same entries — snapshots of one chosen prefix are no longer byte-equal, so a
member that installs one fails the prefix check, and the order of ``SharedName.blocked``
in queries depends on the member's history."""

from __future__ import annotations

from paxlock.coordinator.core.coord_commands import AcquireShared, ExpireShared, SharedExpired
from paxlock.coordinator.core.leases import LeaseMachine


def test_a_snapshot_round_trip_keeps_blocks_that_expired_out_of_token_order() -> None:
    machine = LeaseMachine()
    for holder in ("a", "b"):
        machine.apply(AcquireShared("rwlock", "x", holder, "read", 0, 1.0, None, 0.05))
    expired = [machine.apply(ExpireShared("rwlock", "x", h, t)) for h, t in (("b", 2), ("a", 1))]
    assert all(isinstance(e, SharedExpired) and e.blocked for e in expired), expired
    data = machine.snapshot()
    assert LeaseMachine.restore(data).snapshot() == data
