"""Ownership, the idempotency window by principal, and the admission limits, on the pure
machine and keeper (DESIGN.md §8): a hold belongs to the principal that took it; one
principal's flood evicts only its own remembered results; limits refuse at admission."""

from __future__ import annotations

import msgspec
import pytest

from paxlock.coordinator.core.ballot import ZERO_BALLOT, Ballot
from paxlock.coordinator.core.keeper import (
    AcquireRequest,
    KeeperConfig,
    KeeperReady,
    LeaseKeeper,
    Reply,
    RequestKey,
    TooMany,
)
from paxlock.coordinator.core.lease_commands import (
    Acquire,
    Expire,
    Lease,
    Office,
    Proclaim,
    Refused,
    Release,
    Released,
)
from paxlock.coordinator.core.leases import LeaseMachine

B1 = Ballot(1, "n1")


def grant(machine: LeaseMachine, name: str, holder: str, principal: str,
          value: str | None = None) -> Lease:  # fmt: skip
    lease = machine.apply(Acquire(name, holder, 10.0, value, principal=principal))
    assert isinstance(lease, Lease), lease
    return lease


# --- ownership in the state machine ---------------------------------------------------------


def test_a_grant_records_the_principal_that_took_it() -> None:
    machine = LeaseMachine()
    assert grant(machine, "a/x", "h", "alice").owner == "alice"
    assert machine.get("a/x") is not None and machine.get("a/x").owner == "alice"  # type: ignore[union-attr]


@pytest.mark.parametrize("make", [
    lambda lease, p: Release(lease.name, lease.holder, lease.token, principal=p),
    lambda lease, p: Proclaim(lease.name, lease.holder, lease.token, "x", principal=p),
], ids=["release", "proclaim"])  # fmt: skip
def test_another_principal_with_the_right_holder_and_token_is_forbidden(make) -> None:  # type: ignore[no-untyped-def]
    machine = LeaseMachine()
    lease = grant(machine, "a/x", "h", "alice")
    refused = machine.apply(make(lease, "mallory"))
    assert isinstance(refused, Refused) and refused.code == "forbidden"
    assert machine.get("a/x") == lease, "a refused command changes nothing"
    assert not isinstance(machine.apply(make(lease, "alice")), Refused)


def test_a_wrong_token_stays_not_holder_whoever_asks() -> None:
    """A holder that lost its lease learns that (not_holder), even though the name's new
    grant belongs to another principal."""
    machine = LeaseMachine()
    old = grant(machine, "a/x", "h", "alice")
    machine.apply(Expire("a/x", old.token, ZERO_BALLOT))
    grant(machine, "a/x", "h2", "bob")
    refused = machine.apply(Release("a/x", "h", old.token, principal="alice"))
    assert isinstance(refused, Refused) and refused.code == "not_holder"


def test_counts_follow_grants_proclaims_releases_and_expiries() -> None:
    machine = LeaseMachine()
    a = grant(machine, "a", "h", "alice", "xx")
    b = grant(machine, "b", "h", "alice", "yyy")
    grant(machine, "c", "h", "bob")
    assert (machine.holds_of("alice"), machine.holds_of("bob"), machine.holds()) == (2, 1, 3)
    assert machine.value_bytes() == 5
    machine.apply(Proclaim("a", "h", a.token, "z" * 10, principal="alice"))
    assert machine.value_bytes() == 13
    machine.apply(Release("b", "h", b.token, principal="alice"))
    machine.apply(Expire("c", machine.get("c").token, ZERO_BALLOT))  # type: ignore[union-attr]
    assert (machine.holds_of("alice"), machine.holds_of("bob"), machine.value_bytes()) == (1, 0, 10)
    restored = LeaseMachine.restore(machine.snapshot())
    assert (restored.holds_of("alice"), restored.value_bytes()) == (1, 10)


def test_a_version_2_snapshot_restores_with_the_anonymous_principal() -> None:
    """Snapshots written before principals: leases owned by "", counted, releasable by ""."""
    old_lease = {"type": "lease", "name": "n", "holder": "h", "token": 1, "revision": 1,
                 "ttl_s": 10.0, "value": "vv", "lock_delay_s": 0.0}  # fmt: skip
    old_acquire = {"type": "acquire", "name": "n", "holder": "h", "ttl_s": 10.0,
                   "value": "vv", "lock_delay_s": 0.0, "request_id": "r1"}  # fmt: skip
    data = msgspec.msgpack.encode(
        [2, 1, 1, 1024, 65536, [old_lease], [], [["h", "r1", old_acquire, old_lease]],
         ZERO_BALLOT, []]
    )  # fmt: skip
    machine = LeaseMachine.restore(data)
    assert machine.get("n") is not None and machine.get("n").owner == ""  # type: ignore[union-attr]
    assert (machine.holds_of(""), machine.value_bytes()) == (1, 2)
    replayed = machine.apply(Acquire("n", "h", 10.0, "vv", request_id="r1"))
    assert isinstance(replayed, Lease) and replayed.token == 1, "the old window still answers"
    assert isinstance(machine.apply(Release("n", "h", 1)), Released)


# --- the idempotency window by principal ----------------------------------------------------


def test_the_window_is_keyed_by_principal() -> None:
    """Another principal reusing a holder name and request id gets its own answer, not the
    first principal's remembered grant."""
    machine = LeaseMachine()
    mine = machine.apply(Acquire("n", "h", 10.0, request_id="r", principal="alice"))
    theirs = machine.apply(Acquire("n", "h", 10.0, request_id="r", principal="bob"))
    assert isinstance(mine, Lease)
    assert isinstance(theirs, Refused) and theirs.code == "held"


def flood(machine: LeaseMachine, principal: str, count: int) -> None:
    """``count`` refused acquires of a held name, each with its own holder and request id
    (so no per-holder bound protects anyone: only the total bound applies)."""
    for i in range(count):
        machine.apply(Acquire("taken", f"f{i}", 10.0, request_id=f"r{i}", principal=principal))


def test_another_principals_flood_does_not_evict_a_remembered_result() -> None:
    """The issue's finding: a third party's ~66,000 refused acquires evicted a holder's
    remembered grant, and its retry was answered ``held`` by itself."""
    machine = LeaseMachine()
    grant(machine, "taken", "owner", "c")
    first = machine.apply(Acquire("mine", "a", 10.0, request_id="ra", principal="alice"))
    assert isinstance(first, Lease)
    flood(machine, "bob", 70_000)
    assert machine.window_size() == machine.window_total
    retry = machine.apply(Acquire("mine", "a", 10.0, request_id="ra", principal="alice"))
    assert retry == first, "alice's retry gets alice's first answer"


def test_without_principals_the_same_flood_evicts_it() -> None:
    """The contrast (and why the test above can fail): everyone anonymous shares one bound."""
    machine = LeaseMachine(window_per_holder=10, window_total=1000)
    grant(machine, "taken", "owner", "")
    machine.apply(Acquire("mine", "a", 10.0, request_id="ra"))
    flood(machine, "", 1001)
    retry = machine.apply(Acquire("mine", "a", 10.0, request_id="ra"))
    assert isinstance(retry, Refused) and retry.code == "request_expired"


def test_eviction_takes_the_oldest_entry_of_the_principal_with_most() -> None:
    machine = LeaseMachine(window_per_holder=4, window_total=6)
    grant(machine, "taken", "owner", "")
    for i in range(2):
        machine.apply(Acquire("taken", f"a{i}", 1.0, request_id="r", principal="alice"))
    for i in range(4):
        machine.apply(Acquire("taken", f"b{i}", 1.0, request_id="r", principal="bob"))
    machine.apply(Acquire("taken", "c0", 1.0, request_id="r", principal="carol"))
    bob_first = machine.apply(Acquire("taken", "b0", 1.0, request_id="r", principal="bob"))
    assert isinstance(bob_first, Refused) and bob_first.code == "request_expired"
    for i in range(2):  # alice's entries are all still there, answered as first
        again = machine.apply(Acquire("taken", f"a{i}", 1.0, request_id="r", principal="alice"))
        assert isinstance(again, Refused) and again.code == "held"


def test_eviction_is_the_same_after_a_restore() -> None:
    """Replicas that restored a snapshot mid-flood evict exactly as those that did not."""
    live = LeaseMachine(window_per_holder=3, window_total=8)
    grant(live, "taken", "owner", "")
    commands = [Acquire("taken", f"h{i % 5}", 1.0, request_id=f"r{i}", principal=f"p{i % 3}")
                for i in range(40)]  # fmt: skip
    for command in commands[:17]:
        live.apply(command)
    restored = LeaseMachine.restore(live.snapshot())
    for command in commands[17:]:
        assert live.apply(command) == restored.apply(command)
    assert live.snapshot() == restored.snapshot()


# --- the keeper: renew ownership and admission limits ----------------------------------------


class Primary:
    """A keeper in office over a machine, with a log that chooses at once."""

    def __init__(self, config: KeeperConfig | None = None) -> None:
        self.machine = LeaseMachine()
        self.machine.apply(Office(B1))
        self.keeper = LeaseKeeper(config)
        self.replies: dict[RequestKey, Reply] = {}
        self.keys = 0
        self.run(self.keeper.take_office(self.machine, 0.0, B1))

    def run(self, ready: KeeperReady) -> None:
        for reply in ready.replies:
            self.replies[reply.to] = reply
        for proposal in ready.proposals:
            result = self.machine.apply(proposal.command)
            if proposal.reply_to is not None:
                self.replies[proposal.reply_to] = Reply(proposal.reply_to, result)
            self.run(self.keeper.on_applied(proposal.command, result, 0.0))

    def acquire(self, command: Acquire) -> object:
        self.keys += 1
        key = RequestKey(self.keys)
        self.run(self.keeper.acquire(AcquireRequest(key, command), 0.0))
        return self.replies[key].outcome

    def renew(self, lease: Lease, principal: str) -> object:
        self.keys += 1
        key = RequestKey(self.keys)
        self.run(self.keeper.renew(lease.name, lease.holder, lease.token, key, 0.0, principal))
        if key not in self.replies:  # queued for a confirmation round: confirm it
            self.run(self.keeper.on_confirmed(self.keeper.start_round(0.0), 0.0))
        return self.replies[key].outcome


def test_renew_by_another_principal_is_forbidden_even_with_holder_and_token() -> None:
    p = Primary()
    lease = p.acquire(Acquire("a/x", "h", 10.0, principal="alice"))
    assert isinstance(lease, Lease)
    refused = p.renew(lease, "mallory")
    assert isinstance(refused, Refused) and refused.code == "forbidden"
    assert isinstance(p.renew(lease, "alice"), Lease)


def test_a_release_by_another_principal_hands_the_name_to_no_waiter() -> None:
    p = Primary()
    lease = p.acquire(Acquire("n", "h", 10.0, principal="alice"))
    assert isinstance(lease, Lease)
    p.keeper.acquire(AcquireRequest(RequestKey(99), Acquire("n", "w", 10.0, principal="bob"),
                                    wait_s=30.0), 0.0)  # fmt: skip
    forged = Release("n", "h", lease.token, principal="mallory")
    assert p.keeper.release_requested(forged, 0.0).proposals == []


def limited(**limits: int) -> Primary:
    return Primary(KeeperConfig(**limits))


def test_holds_per_principal_are_refused_at_the_limit_for_that_principal_only() -> None:
    p = limited(holds_per_principal_max=2)
    for name in ("a", "b"):
        assert isinstance(p.acquire(Acquire(name, "h", 10.0, principal="alice")), Lease)
    refused = p.acquire(Acquire("c", "h", 10.0, principal="alice"))
    assert isinstance(refused, TooMany) and refused.limit == "holds_per_principal"
    assert p.machine.get("c") is None, "nothing was proposed"
    assert isinstance(p.acquire(Acquire("c", "h", 10.0, principal="bob")), Lease)


def test_holds_in_total_are_refused_at_the_limit() -> None:
    p = limited(holds_max=2)
    p.acquire(Acquire("a", "h", 10.0, principal="alice"))
    p.acquire(Acquire("b", "h", 10.0, principal="bob"))
    refused = p.acquire(Acquire("c", "h", 10.0, principal="carol"))
    assert isinstance(refused, TooMany) and refused.limit == "holds"


def test_value_bytes_in_total_count_acquires_and_growing_proclaims() -> None:
    p = limited(value_bytes_max=10)
    lease = p.acquire(Acquire("a", "h", 10.0, "x" * 6, principal="alice"))
    assert isinstance(lease, Lease)
    refused = p.acquire(Acquire("b", "h", 10.0, "y" * 5, principal="bob"))
    assert isinstance(refused, TooMany) and refused.limit == "value_bytes"
    grow = Proclaim("a", "h", lease.token, "x" * 11, principal="alice")
    too_many = p.keeper.admit(grow)
    assert isinstance(too_many, TooMany) and too_many.limit == "value_bytes"
    assert p.keeper.admit(Proclaim("a", "h", lease.token, "x", principal="alice")) is None


def test_a_retry_of_an_applied_acquire_is_answered_even_at_the_limit() -> None:
    p = limited(holds_per_principal_max=1)
    first = p.acquire(Acquire("a", "h", 10.0, request_id="r", principal="alice"))
    assert p.acquire(Acquire("a", "h", 10.0, request_id="r", principal="alice")) == first


def test_a_proclaim_by_another_principal_is_left_to_the_log_to_refuse() -> None:
    """At the value limit, a stranger's proclaim is still answered forbidden, not 429."""
    p = limited(value_bytes_max=10)
    lease = p.acquire(Acquire("a", "h", 10.0, "x" * 6, principal="alice"))
    assert isinstance(lease, Lease)
    assert p.keeper.admit(Proclaim("a", "h", lease.token, "y" * 9, principal="mallory")) is None
