"""Product bugs the fault runs found, each reduced to a deterministic scenario and kept as a
regression test (the fault runs' own histories showed them first; see tests/fault/README.md).

1. A retried release — answered from the idempotency window — stopped the expiry timer of
   whoever held the name by then (``LeaseKeeper.on_applied``): that lease never expired.
2. A renewal racing its lease's in-flight Expire was refused ``not_holder`` naming the
   caller's own grant as the current one (``LeaseKeeper._not_holder``).
"""

from __future__ import annotations

from typing import Any

import pytest

from paxlock.coordinator.core.ballot import Ballot
from paxlock.coordinator.core.keeper import LeaseKeeper, RequestKey
from paxlock.coordinator.core.lease_commands import Acquire, Office, Refused
from paxlock.coordinator.core.leases import LeaseMachine

pytestmark = pytest.mark.fault


def test_a_retried_release_does_not_stop_the_next_holders_timer(
    cluster: Any, http: Any, wait_for: Any,
) -> None:
    url = cluster.url(cluster.wait_ready())
    status, _, first = http("POST", f"{url}/v1/leases/reg1:acquire", {"holder": "a", "ttl": 5})
    assert status == 200
    release = {"holder": "a", "token": first["token"], "request_id": "R"}
    assert http("POST", f"{url}/v1/leases/reg1:release", release)[0] == 200
    status, _, second = http("POST", f"{url}/v1/leases/reg1:acquire", {"holder": "b", "ttl": 1})
    assert status == 200
    status, _, body = http("POST", f"{url}/v1/leases/reg1:release", release)  # the retry
    assert status == 200 and body == {"released": True}
    status, _, renewed = http("POST", f"{url}/v1/leases/reg1:renew",
                              {"holder": "b", "token": second["token"]})  # fmt: skip
    assert status == 200, renewed
    # and b's lease still expires once nobody renews it
    wait_for(lambda: http("GET", f"{url}/v1/leases/reg1")[0] == 404, 10,
             "b's lease to expire")  # fmt: skip


def test_a_renewal_racing_its_expire_is_not_told_its_own_grant_is_current() -> None:
    machine, keeper = LeaseMachine(), LeaseKeeper()
    machine.apply(Office(Ballot(1, "n1")))
    keeper.take_office(machine, 0.0, Ballot(1, "n1"))
    grant = Acquire("reg2", "a", 1.0)
    lease = machine.apply(grant)
    keeper.on_applied(grant, lease, 0.0)
    expiring = keeper.tick(1.05)  # the timer ran out: its Expire is proposed, not yet applied
    assert [type(p.command).__name__ for p in expiring.proposals] == ["Expire"]
    ready = keeper.renew("reg2", "a", lease.token, RequestKey(1), 1.06)  # type: ignore[union-attr]
    assert ready.replies == []  # a refusal, too, waits for a confirmation round
    (reply,) = keeper.on_confirmed(keeper.start_round(1.06), 1.07).replies
    assert isinstance(reply.outcome, Refused) and reply.outcome.code == "not_holder"
    assert (reply.outcome.holder, reply.outcome.token) == (None, None)
