"""The primary's lease keeper, one rule per test (DESIGN.md §3): expiry and lock-delay timers,
renewals confirmed by one quorum round, FIFO waiters; plus a property test that drives it
with a random workload and checks that no lease ends early and every request is answered
exactly once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from paxlock.coordinator.core.ballot import Ballot
from paxlock.coordinator.core.keeper import (
    AcquireRequest,
    KeeperConfig,
    KeeperReady,
    LeaseKeeper,
    Propose,
    Reply,
    RequestKey,
    Unavailable,
)
from paxlock.coordinator.core.lease_commands import (
    Acquire,
    Expire,
    Expired,
    Lease,
    LeaseCommand,
    Office,
    Refused,
    Release,
    Result,
    Unblock,
)
from paxlock.coordinator.core.leases import LeaseMachine

B1 = Ballot(1, "n1")
B2 = Ballot(2, "n2")
"""The ballots of a first primary and of its successor."""


@dataclass
class Primary:
    """A primary's keeper and state machine joined by a log that chooses at once (or, with
    ``auto_apply`` off, holds proposals until ``flush``), and the runtime's reply rule."""

    machine: LeaseMachine = field(default_factory=LeaseMachine)
    config: KeeperConfig = field(default_factory=KeeperConfig)
    now: float = 0.0
    auto_apply: bool = True
    keeper: LeaseKeeper = field(init=False)
    replies: dict[RequestKey, Reply] = field(default_factory=dict)
    proposed: list[LeaseCommand] = field(default_factory=list)
    pending: list[Propose] = field(default_factory=list)
    applied: list[tuple[float, LeaseCommand, Result]] = field(default_factory=list)
    deadline: float | None = None
    next_key: int = 0
    ballot: Ballot = B1

    def __post_init__(self) -> None:
        """Take office as a replica does: once this ballot's ``Office`` entry is applied."""
        self.keeper = LeaseKeeper(self.config)
        if self.machine.office < self.ballot:
            self.machine.apply(Office(self.ballot))
        self.handle(self.keeper.take_office(self.machine, self.now, self.ballot))

    def handle(self, ready: KeeperReady) -> None:
        for reply in ready.replies:
            self.answer(reply)
        self.deadline = ready.deadline
        for proposal in ready.proposals:
            self.proposed.append(proposal.command)
            self.pending.append(proposal)
        if self.auto_apply:
            self.flush()

    def answer(self, reply: Reply) -> None:
        assert reply.to not in self.replies, f"request {reply.to} answered twice"
        self.replies[reply.to] = reply

    def flush(self) -> None:
        while self.pending:
            proposal = self.pending.pop(0)
            result = self.machine.apply(proposal.command)
            self.applied.append((self.now, proposal.command, result))
            ready = self.keeper.on_applied(proposal.command, result, self.now)
            if proposal.reply_to is not None:
                expires_in = self.keeper.expires_in(proposal.command.name, self.now)
                self.answer(Reply(proposal.reply_to, result, expires_in))
            self.handle(ready)

    def key(self) -> RequestKey:
        self.next_key += 1
        return RequestKey(self.next_key)

    def acquire(self, name: str, holder: str, *, ttl_s: float = 10.0, wait_s: float = 0.0,
                lock_delay_s: float = 0.0, request_id: str | None = None) -> RequestKey:
        key = self.key()
        command = Acquire(name, holder, ttl_s, None, lock_delay_s, request_id)
        self.handle(self.keeper.acquire(AcquireRequest(key, command, wait_s), self.now))
        return key

    def grant(self, name: str, holder: str, *, ttl_s: float = 10.0,
              lock_delay_s: float = 0.0) -> Lease:
        lease = self.result(self.acquire(name, holder, ttl_s=ttl_s, lock_delay_s=lock_delay_s))
        assert isinstance(lease, Lease), lease
        return lease

    def release(self, lease: Lease) -> None:
        self.handle(KeeperReady([Propose(Release(lease.name, lease.holder, lease.token), None)]))

    def renew(self, lease: Lease) -> RequestKey:
        key = self.key()
        self.handle(self.keeper.renew(lease.name, lease.holder, lease.token, key, self.now))
        return key

    def confirm(self, round_id: int) -> None:
        self.handle(self.keeper.on_confirmed(round_id, self.now))

    def tick(self, now: float) -> None:
        self.now = now
        self.handle(self.keeper.tick(now))

    def result(self, key: RequestKey) -> Result | Unavailable:
        return self.replies[key].outcome


def expires(p: Primary) -> list[LeaseCommand]:
    return [c for c in p.proposed if isinstance(c, Expire | Unblock)]


# --- expiry timers -----------------------------------------------------------------------------


def test_expiry_timer_proposes_expire_when_ttl_runs_out_not_before() -> None:
    p = Primary()
    lease = p.grant("db", "a")
    assert p.deadline == 10.0
    p.tick(9.999)
    assert expires(p) == []
    p.tick(10.0)
    assert expires(p) == [Expire("db", lease.token, B1)]
    assert p.machine.get("db") is None


def test_release_stops_the_expiry_timer() -> None:
    p = Primary()
    p.release(p.grant("db", "a"))
    assert p.deadline is None
    p.tick(50.0)
    assert expires(p) == []


def test_unapplied_expire_is_proposed_again_after_retry() -> None:
    p = Primary(config=KeeperConfig(retry_s=1.0))
    lease = p.grant("db", "a")
    p.auto_apply = False
    p.tick(10.0)
    p.tick(10.5)
    assert expires(p) == [Expire("db", lease.token, B1)]
    p.tick(11.0)
    assert expires(p) == [Expire("db", lease.token, B1)] * 2
    p.flush()  # the duplicate is a stale no-op
    assert [type(r).__name__ for _, c, r in p.applied if isinstance(c, Expire)] == [
        "Expired", "Ignored"]


def test_new_primary_restarts_timers_at_full_ttl() -> None:
    old = Primary()
    old.grant("db", "a")
    old.tick(9.0)  # the old primary's timer had 1 s left
    new = Primary(machine=old.machine, now=100.0, ballot=B2)
    assert new.keeper.expires_in("db", 100.0) == 10.0
    new.tick(109.999)
    assert expires(new) == []
    new.tick(110.0)
    assert expires(new) == [Expire("db", 1, B2)]


def test_new_primary_restarts_lock_delay_timers_at_full_lock_delay() -> None:
    old = Primary()
    old.grant("db", "a", lock_delay_s=3.0)
    old.tick(10.0)
    assert old.machine.blocked("db") is not None
    new = Primary(machine=old.machine, now=50.0, ballot=B2)
    new.tick(52.9)
    assert expires(new) == []
    new.tick(53.0)
    assert expires(new) == [Unblock("db", 1, B2)] and new.machine.blocked("db") is None


def test_expiry_with_lock_delay_proposes_unblock_when_lock_delay_runs_out() -> None:
    p = Primary()
    lease = p.grant("db", "a", lock_delay_s=3.0)
    p.tick(10.0)
    assert p.keeper.expires_in("db", 10.0) == 3.0 and p.deadline == 13.0
    p.tick(12.9)
    assert p.machine.blocked("db") is not None
    p.tick(13.0)
    assert expires(p) == [Expire("db", lease.token, B1), Unblock("db", lease.token, B1)]
    assert p.machine.blocked("db") is None and p.keeper.expires_in("db", 13.0) is None


def test_expires_in_counts_down_from_the_grant() -> None:
    p = Primary()
    p.grant("db", "a")
    assert p.keeper.expires_in("db", 4.0) == 6.0
    assert p.keeper.expires_in("db", 12.0) == 0.0
    assert p.keeper.expires_in("other", 4.0) is None


def test_deadline_is_the_earliest_timer() -> None:
    p = Primary()
    p.grant("a", "x", ttl_s=10.0)
    p.grant("b", "x", ttl_s=4.0)
    p.acquire("a", "y", wait_s=2.0)
    assert p.deadline == 2.0
    p.tick(2.0)
    assert p.deadline == 4.0


# --- renewals ------------------------------------------------------------------------------------


def test_renew_with_wrong_holder_or_token_is_not_holder_once_a_round_confirms_it() -> None:
    """Not at once: a primary deposed unawares would refuse from a stale machine a grant
    made since by its successor (the fault tests' linearizability checker caught that)."""
    p = Primary()
    lease = p.grant("db", "a")
    keys = [p.renew(bad) for bad in [Lease("db", "b", lease.token, 1, 10.0, None, 0.0),
                                     Lease("db", "a", lease.token + 1, 1, 10.0, None, 0.0),
                                     Lease("free", "a", lease.token, 1, 10.0, None, 0.0)]]
    assert not any(key in p.replies for key in keys) and p.keeper.needs_confirmation()
    p.confirm(p.keeper.start_round(p.now))
    for key in keys:
        outcome = p.result(key)
        assert isinstance(outcome, Refused) and outcome.code == "not_holder"


def test_a_renewal_of_a_grant_unknown_here_is_not_refused_if_the_round_fails() -> None:
    """A primary that does not know the token (its successor granted it) and then learns it
    was deposed answers 503, which the client retries elsewhere, never ``not_holder``."""
    p = Primary()
    p.grant("db", "a")
    key = p.renew(Lease("db", "c", 99, 99, 10.0, None, 0.0))  # granted by a successor
    p.keeper.on_round_failed(p.keeper.start_round(p.now))
    assert key not in p.replies
    for reply in p.keeper.step_down():
        p.replies[reply.to] = reply
    assert isinstance(p.result(key), Unavailable)


def test_renewal_waits_for_one_confirmation_round() -> None:
    p = Primary()
    lease = p.grant("db", "a")
    p.now = 5.0
    key = p.renew(lease)
    assert key not in p.replies and p.keeper.needs_confirmation()
    round_id = p.keeper.start_round(5.0)
    assert not p.keeper.needs_confirmation()
    p.now = 5.2
    p.confirm(round_id)
    assert p.replies[key] == Reply(key, lease, 10.0)
    assert not p.keeper.needs_confirmation()


def test_confirmed_renewal_restarts_timer_at_full_ttl() -> None:
    p = Primary()
    lease = p.grant("db", "a")
    p.now = 8.0
    p.renew(lease)
    round_id = p.keeper.start_round(8.0)
    p.now = 8.5  # the timer restarts when the round is confirmed, not when it started
    p.confirm(round_id)
    assert p.keeper.expires_in("db", 8.5) == 10.0
    p.tick(18.499)
    assert expires(p) == []
    p.tick(18.5)
    assert expires(p) == [Expire("db", lease.token, B1)]


def test_one_confirmation_round_serves_all_waiting_renewals() -> None:
    p = Primary()
    leases = [p.grant(f"n{i}", "a") for i in range(3)]
    keys = [p.renew(lease) for lease in leases]
    round_id = p.keeper.start_round(0.0)
    p.confirm(round_id)
    assert [p.result(k) for k in keys] == leases
    assert p.keeper.renewals_waiting == 0 and not p.keeper.needs_confirmation()


def test_renewal_arriving_during_a_round_waits_for_the_next_round() -> None:
    p = Primary()
    first, second = p.grant("a", "x"), p.grant("b", "x")
    early = p.renew(first)
    round_id = p.keeper.start_round(0.0)
    late = p.renew(second)  # same clock reading: the sequence number still tells them apart
    assert not p.keeper.needs_confirmation()
    p.confirm(round_id)
    assert early in p.replies and late not in p.replies
    assert p.keeper.needs_confirmation()
    p.confirm(p.keeper.start_round(0.0))
    assert p.result(late) == second


def test_failed_round_lets_a_new_round_start() -> None:
    p = Primary()
    key = p.renew(p.grant("db", "a"))
    round_id = p.keeper.start_round(0.0)
    p.keeper.on_round_failed(round_id)
    assert key not in p.replies and p.keeper.needs_confirmation()


def test_confirmation_of_a_round_from_an_earlier_term_serves_no_renewal() -> None:
    p = Primary()
    lease = p.grant("db", "a")
    p.renew(lease)
    stale_round = p.keeper.start_round(0.0)
    p.keeper.step_down()
    p.handle(p.keeper.take_office(p.machine, 1.0, B1))
    key = p.renew(lease)
    p.confirm(stale_round)
    assert key not in p.replies and p.keeper.needs_confirmation()


def test_unconfirmed_round_is_given_up_after_confirm_timeout() -> None:
    p = Primary(config=KeeperConfig(confirm_timeout_s=1.0))
    p.renew(p.grant("db", "a"))
    p.keeper.start_round(0.0)
    assert p.keeper.tick(0.5).deadline == 1.0
    p.tick(1.0)
    assert p.keeper.needs_confirmation()


def test_renewal_after_its_expire_was_proposed_is_not_holder() -> None:
    p = Primary()
    lease = p.grant("db", "a")
    waiting = p.renew(lease)
    p.auto_apply = False
    p.tick(10.0)  # the Expire is on its way to the log
    late = p.renew(lease)
    p.confirm(p.keeper.start_round(10.0))
    for key in (waiting, late):
        outcome = p.result(key)
        assert isinstance(outcome, Refused) and outcome.code == "not_holder"


# --- acquire and waiters ---------------------------------------------------------------------


def test_acquire_on_free_name_is_proposed_and_answered_with_expires_in() -> None:
    p = Primary()
    key = p.acquire("db", "a", ttl_s=7.0)
    assert p.proposed == [Acquire("db", "a", 7.0)]
    assert p.replies[key] == Reply(key, Lease("db", "a", 1, 1, 7.0, None, 0.0), 7.0)


def test_acquire_on_held_name_without_wait_gets_the_logs_exact_answer() -> None:
    p = Primary()
    p.grant("db", "a")
    p.now = 3.0
    key = p.acquire("db", "b")
    assert p.replies[key] == Reply(key, Refused("held", "db", "a", 1), 7.0)


def test_acquire_on_held_name_with_wait_is_parked() -> None:
    p = Primary()
    p.grant("db", "a")
    key = p.acquire("db", "b", wait_s=5.0)
    assert key not in p.replies and p.keeper.waiters == 1 and len(p.proposed) == 1


def test_waiters_granted_in_fifo_order() -> None:
    p = Primary()
    lease = p.grant("db", "a")
    keys = [p.acquire("db", holder, wait_s=60.0) for holder in ["b", "c", "d"]]
    order = []
    for _ in keys:
        p.release(lease)
        granted = [k for k in keys if k in p.replies and k not in order]
        assert len(granted) == 1
        order.append(granted[0])
        outcome = p.result(granted[0])
        assert isinstance(outcome, Lease)
        lease = outcome
    assert order == keys


def test_freed_name_is_proposed_to_the_first_waiter_only() -> None:
    p = Primary()
    lease = p.grant("db", "a")
    for holder in ["b", "c", "d"]:
        p.acquire("db", holder, wait_s=60.0)
    before = len(p.proposed)
    p.release(lease)
    assert p.proposed[before:] == [Release("db", "a", 1), Acquire("db", "b", 10.0)]


def test_waiter_times_out_with_held_holder_and_expires_in() -> None:
    p = Primary()
    p.grant("db", "a")
    key = p.acquire("db", "b", wait_s=2.0)
    p.tick(2.0)
    assert p.replies[key] == Reply(key, Refused("held", "db", "a", 1), 8.0)
    assert p.keeper.waiters == 0


def test_waiter_is_granted_only_after_expiry_and_lock_delay() -> None:
    p = Primary()
    p.grant("db", "a", lock_delay_s=3.0)
    key = p.acquire("db", "b", wait_s=60.0)
    p.tick(10.0)
    assert key not in p.replies
    p.tick(13.0)
    outcome = p.result(key)
    assert isinstance(outcome, Lease) and outcome.holder == "b"
    assert p.keeper.expires_in("db", 13.0) == 10.0


def test_waiters_are_bounded_per_name_and_in_total() -> None:
    p = Primary(config=KeeperConfig(waiters_per_name_max=2, waiters_max=3))
    p.grant("a", "x")
    p.grant("b", "x")
    parked = [p.acquire("a", f"h{i}", wait_s=9.0) for i in range(2)]
    over_name = p.acquire("a", "h9", wait_s=9.0)
    parked.append(p.acquire("b", "h3", wait_s=9.0))
    over_total = p.acquire("b", "h4", wait_s=9.0)
    assert all(k not in p.replies for k in parked)
    assert p.result(over_name) == Unavailable("too many waiters")
    assert p.result(over_total) == Unavailable("too many waiters")


def test_grant_in_flight_reserves_the_name_so_newcomers_queue_behind() -> None:
    p = Primary(auto_apply=False)
    first = p.acquire("db", "a")
    second = p.acquire("db", "b", wait_s=5.0)
    assert p.proposed == [Acquire("db", "a", 10.0)] and p.keeper.waiters == 1
    p.flush()
    assert isinstance(p.result(first), Lease) and second not in p.replies


def test_rejected_grant_passes_the_name_to_the_next_waiter() -> None:
    p = Primary(auto_apply=False)
    p.acquire("db", "a")
    p.acquire("db", "b", wait_s=5.0)
    rejected = p.pending.pop()
    p.handle(p.keeper.on_rejected(rejected.command, 0.0))
    assert p.proposed[-1] == Acquire("db", "b", 10.0)


def test_step_down_answers_waiters_and_renewals_unavailable() -> None:
    p = Primary()
    lease = p.grant("db", "a")
    waiter = p.acquire("db", "b", wait_s=5.0)
    renewal = p.renew(lease)
    replies = p.keeper.step_down()
    gone = Unavailable("no longer primary")
    assert replies == [Reply(waiter, gone), Reply(renewal, gone)]
    assert not p.keeper.in_office and p.keeper.waiters == 0


def test_malformed_acquire_is_bad_request_at_once() -> None:
    p = Primary()
    key = p.acquire("bad name", "a", wait_s=5.0)
    outcome = p.result(key)
    assert isinstance(outcome, Refused) and outcome.code == "bad_request"
    assert p.proposed == []


# --- idempotent retries --------------------------------------------------------------------------


def test_retry_of_applied_request_is_answered_from_window_without_a_proposal() -> None:
    p = Primary()
    first = p.result(p.acquire("db", "a", request_id="r1"))
    retry = p.acquire("db", "a", request_id="r1", wait_s=5.0)
    assert p.result(retry) == first and len(p.proposed) == 1
    assert p.replies[retry].expires_in_s == 10.0


def test_retry_of_parked_request_takes_its_place_in_the_queue() -> None:
    p = Primary()
    lease = p.grant("db", "a")
    old = p.acquire("db", "b", wait_s=60.0, request_id="rb")
    p.acquire("db", "c", wait_s=60.0)
    new = p.acquire("db", "b", wait_s=60.0, request_id="rb")
    assert p.result(old) == Unavailable("superseded by a retry")
    p.release(lease)
    outcome = p.result(new)
    assert isinstance(outcome, Lease) and outcome.holder == "b"


def test_parked_retry_of_an_in_flight_grant_gets_the_same_answer() -> None:
    p = Primary(auto_apply=False)
    original = p.acquire("db", "a", request_id="r1")
    retry = p.acquire("db", "a", request_id="r1", wait_s=5.0)
    assert retry not in p.replies
    p.flush()
    assert p.result(retry) == p.result(original) and p.keeper.waiters == 0


# --- property ------------------------------------------------------------------------------------

ops = st.lists(
    st.tuples(
        st.sampled_from(["acquire", "wait", "release", "renew", "confirm", "tick"]),
        st.sampled_from(["a", "b"]),
        st.sampled_from(["h1", "h2", "h3"]),
        st.floats(0.0, 4.0),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(ops)
def test_random_workload_never_ends_a_lease_early_and_answers_every_request_once(
    workload: list[tuple[str, str, str, float]],
) -> None:
    p = Primary()
    asked: list[RequestKey] = []
    renewed_at: dict[tuple[str, int], float] = {}  # when a renewal of the grant was confirmed
    for op, name, holder, amount in workload:
        lease = p.machine.get(name)
        if op in ("acquire", "wait"):
            wait = amount if op == "wait" else 0.0
            asked.append(p.acquire(name, holder, ttl_s=3.0, wait_s=wait, lock_delay_s=0.5))
        elif op == "release" and lease is not None:
            p.release(lease)
        elif op == "renew" and lease is not None:
            asked.append(p.renew(lease))
        elif op == "confirm" and p.keeper.needs_confirmation():
            round_id = p.keeper.start_round(p.now)
            p.now += amount / 10  # the round trip takes time
            before = set(p.replies)
            p.confirm(round_id)
            for key in set(p.replies) - before:
                outcome = p.result(key)
                if isinstance(outcome, Lease):
                    renewed_at[(outcome.name, outcome.token)] = p.now
        elif op == "tick":
            p.tick(p.now + amount)
    p.tick(p.now + 100.0)
    for reply in p.keeper.step_down():
        p.answer(reply)
    assert set(asked) <= set(p.replies), "every request is answered"
    granted_at = {(r.name, r.token): t for t, _, r in p.applied
                  if isinstance(r, Lease) and r.token == r.revision}
    for t, _, result in p.applied:
        if isinstance(result, Expired):
            lease_key = (result.name, result.token)
            start = max(granted_at[lease_key], renewed_at.get(lease_key, 0.0))
            assert t >= start + 3.0, "a lease never ends before its TTL"


# -- direct handoff in one log round -------------------------------------------------------


def _held_with_waiter() -> tuple[Any, Any, Any, Any]:
    from paxlock.coordinator.core.keeper import AcquireRequest, LeaseKeeper, RequestKey
    from paxlock.coordinator.core.lease_commands import Acquire
    from paxlock.coordinator.core.leases import LeaseMachine

    machine, keeper = LeaseMachine(), LeaseKeeper()
    machine.apply(Office(B1))
    keeper.take_office(machine, 0.0, B1)
    first = Acquire("job", "a", 10.0)
    keeper.on_applied(first, machine.apply(first), 0.0)
    waiting = Acquire("job", "b", 10.0)
    ready = keeper.acquire(AcquireRequest(RequestKey(7), waiting, wait_s=5.0), 0.1)
    assert ready.proposals == [] and ready.replies == []  # parked
    return machine, keeper, waiting, machine.get("job")


def test_release_requested_proposes_the_first_waiter_right_behind_the_release() -> None:
    """Handoff in one round: the waiter's Acquire goes out before the Release is applied,
    and the waiter is answered with its grant once both are applied."""
    from paxlock.coordinator.core.lease_commands import Lease, Release

    machine, keeper, waiting, lease = _held_with_waiter()
    release = Release("job", "a", lease.token)
    ready = keeper.release_requested(release, 0.2)
    assert [p.command for p in ready.proposals] == [waiting]
    assert ready.proposals[0].reply_to is None  # the keeper answers it itself
    keeper.on_applied(release, machine.apply(release), 0.3)
    applied = keeper.on_applied(waiting, machine.apply(waiting), 0.3)
    (reply,) = applied.replies
    assert reply.to == 7 and isinstance(reply.outcome, Lease) and reply.outcome.holder == "b"
    assert applied.proposals == []  # no second grant of the name


def test_handoff_behind_a_failed_release_puts_the_waiter_back_unanswered() -> None:
    from paxlock.coordinator.core.lease_commands import Release

    machine, keeper, waiting, lease = _held_with_waiter()
    assert keeper.release_requested(Release("job", "a", lease.token), 0.2).proposals
    # the Release does not make it (say, its Expire got there first under another name's
    # grant); the speculative Acquire is refused held
    applied = keeper.on_applied(waiting, machine.apply(waiting), 0.3)
    assert applied.replies == []
    assert keeper.waiters == 1  # back in the queue, at its head


def test_release_requested_by_a_non_holder_proposes_nothing() -> None:
    from paxlock.coordinator.core.lease_commands import Release

    _, keeper, _, lease = _held_with_waiter()
    assert keeper.release_requested(Release("job", "mallory", lease.token), 0.2).proposals == []
