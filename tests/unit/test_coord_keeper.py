"""The primary's side of sessions, semaphores and read/write locks (DESIGN.md §7, issue 15 spec
§2), one rule per test: session timers and their one-entry end, renewals by confirmation round
with no log write, FIFO waiters of shared names without overtaking, and office changes."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from paxlock.coordinator.core.ballot import Ballot
from paxlock.coordinator.core.coord_commands import (
    AcquireShared,
    CloseSession,
    ExpireSession,
    ExpireShared,
    OpenSession,
    Permit,
    ReleaseShared,
    Session,
    SessionEnded,
    SharedKind,
    SharedMode,
    UnblockShared,
)
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
    AnyClientCommand,
    Expire,
    Ignored,
    Lease,
    LeaseCommand,
    Office,
    Refused,
    Release,
    Result,
    Unblock,
)
from paxlock.coordinator.core.leases import LeaseMachine
from paxlock.coordinator.core.replica_io import (
    CommandOp,
    RenewSessionOp,
    RenewSharedOp,
    ReplicaReady,
    RequestOp,
)

B1 = Ballot(1, "n1")
B2 = Ballot(2, "n2")


@dataclass
class Primary:
    """A keeper and its machine joined by a log that chooses every proposal at once, and the
    runtime's reply rule (``reply_expires_in``)."""

    machine: LeaseMachine = field(default_factory=LeaseMachine)
    now: float = 0.0
    ballot: Ballot = B1
    config: KeeperConfig = field(default_factory=KeeperConfig)
    keeper: LeaseKeeper = field(init=False)
    replies: dict[RequestKey, Reply] = field(default_factory=dict)
    proposed: list[LeaseCommand] = field(default_factory=list)
    batches: list[list[LeaseCommand]] = field(default_factory=list)
    """The proposals of each keeper step that proposed any."""
    results: list[Result] = field(default_factory=list)
    next_key: int = 0
    auto_apply: bool = True
    """Off: proposals wait in ``pending`` until ``flush`` (acquires in flight)."""
    pending: list[Propose] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.keeper = LeaseKeeper(self.config)
        if self.machine.office < self.ballot:
            self.machine.apply(Office(self.ballot))
        self.handle(self.keeper.take_office(self.machine, self.now, self.ballot))

    def handle(self, ready: KeeperReady) -> None:
        for reply in ready.replies:
            assert reply.to not in self.replies, f"request {reply.to} answered twice"
            self.replies[reply.to] = reply
        if ready.proposals:
            self.batches.append([p.command for p in ready.proposals])
        self.proposed += [proposal.command for proposal in ready.proposals]
        self.pending += ready.proposals
        if self.auto_apply:
            self.flush()

    def flush(self, count: int | None = None) -> None:
        """Choose and apply the first ``count`` pending proposals (all: None), in order."""
        while self.pending and (count is None or count > 0):
            count = None if count is None else count - 1
            proposal = self.pending.pop(0)
            result = self.machine.apply(proposal.command)
            self.results.append(result)
            after = self.keeper.on_applied(proposal.command, result, self.now)
            if proposal.reply_to is not None:
                command = proposal.command
                assert isinstance(command, AnyClientCommand)
                expires_in = self.keeper.reply_expires_in(command, result, self.now)
                self.replies[proposal.reply_to] = Reply(proposal.reply_to, result, expires_in)
            self.handle(after)

    def key(self) -> RequestKey:
        self.next_key += 1
        return RequestKey(self.next_key)

    def send(self, command: AcquireShared | Acquire, wait_s: float = 0.0) -> RequestKey:
        key = self.key()
        self.handle(self.keeper.acquire(AcquireRequest(key, command, wait_s), self.now))
        return key

    def propose(self, command: LeaseCommand) -> Result:
        """A client command the replica proposes as it is (close, release, open)."""
        key = self.key()
        self.handle(KeeperReady([Propose(command, key)]))
        outcome = self.replies[key].outcome
        assert not isinstance(outcome, Unavailable)
        return outcome  # type: ignore[return-value]

    def open(self, holder: str = "w", ttl_s: float = 5.0) -> Session:
        session = self.propose(OpenSession(holder, ttl_s))
        assert isinstance(session, Session), session
        return session

    def shared(self, kind: SharedKind, name: str, holder: str, mode: SharedMode, *,
               limit: int = 0, session: str | None = None, ttl_s: float = 10.0,
               lock_delay_s: float = 0.0, wait_s: float = 0.0) -> RequestKey:  # fmt: skip
        return self.send(AcquireShared(kind, name, holder, mode, limit,
                                       0.0 if session else ttl_s, session, lock_delay_s),
                         wait_s)  # fmt: skip

    def permit(self, key: RequestKey) -> Permit:
        outcome = self.result(key)
        assert isinstance(outcome, Permit), outcome
        return outcome

    def release(self, permit: Permit) -> None:
        self.propose(ReleaseShared(permit.kind, permit.name, permit.holder, permit.token))

    def tick(self, now: float) -> None:
        self.now = now
        self.handle(self.keeper.tick(now))

    def confirm_round(self) -> None:
        """The runtime's confirmation round, confirmed at once."""
        if self.keeper.needs_confirmation():
            round_id = self.keeper.start_round(self.now)
            self.handle(self.keeper.on_confirmed(round_id, self.now))

    def result(self, key: RequestKey) -> Result | Unavailable:
        return self.replies[key].outcome if key in self.replies else Unavailable("no reply")


def rw(p: Primary, name: str, holder: str, mode: SharedMode, **kw: float) -> RequestKey:
    return p.shared("rwlock", name, holder, mode, **kw)  # type: ignore[arg-type]


def decisions(p: Primary) -> list[LeaseCommand]:
    return [c for c in p.proposed
            if isinstance(c, Expire | Unblock | ExpireSession | ExpireShared | UnblockShared)]


# --- sessions ------------------------------------------------------------------------------------


def test_a_session_expiry_ends_everything_bound_in_one_entry_and_hands_names_on() -> None:
    p = Primary()
    s = p.open(ttl_s=5.0)
    lease = p.send(Acquire("db", "w", 0.0, session=s.id))
    assert isinstance(p.result(lease), Lease) and p.replies[lease].expires_in_s == 5.0
    writer = p.permit(rw(p, "cache", "w", "write", session=s.id))
    permit = p.permit(p.shared("semaphore", "pool", "w", "permit", limit=1, session=s.id))
    lease_waiter = p.send(Acquire("db", "x", 10.0), wait_s=30.0)
    reader = rw(p, "cache", "r", "read", wait_s=30.0)
    pool_waiter = p.shared("semaphore", "pool", "y", "permit", limit=1, wait_s=30.0)
    assert {lease_waiter, reader, pool_waiter}.isdisjoint(p.replies)
    p.tick(4.9)
    assert decisions(p) == []
    p.tick(5.0)
    assert decisions(p) == [ExpireSession(s.id, s.token, B1)]  # one entry, no timer per hold
    ended = p.results[p.proposed.index(ExpireSession(s.id, s.token, B1))]
    assert isinstance(ended, SessionEnded) and ended.expired
    assert {(f.kind, f.name) for f in ended.freed} == {
        ("lease", "db"), ("rwlock", "cache"), ("semaphore", "pool")}
    assert isinstance(p.result(lease_waiter), Lease)
    assert p.permit(reader).token > writer.token and p.permit(pool_waiter).token > permit.token
    assert p.keeper.session_expires_in(s.id, p.now) is None


def test_a_session_expiry_blocks_a_bound_lease_with_lock_delay_then_hands_it_on() -> None:
    p = Primary()
    s = p.open(ttl_s=5.0)
    p.send(Acquire("db", "w", 0.0, lock_delay_s=2.0, session=s.id))
    waiter = p.send(Acquire("db", "x", 10.0), wait_s=30.0)
    p.tick(5.0)
    assert p.machine.blocked("db") is not None and waiter not in p.replies
    p.tick(6.9)
    assert not any(isinstance(c, Unblock) for c in p.proposed)
    p.tick(7.0)
    assert isinstance(p.result(waiter), Lease)


def test_a_close_frees_without_lock_delay_and_stops_the_timer() -> None:
    p = Primary()
    s = p.open(ttl_s=5.0)
    p.send(Acquire("db", "w", 0.0, lock_delay_s=2.0, session=s.id))
    waiter = p.send(Acquire("db", "x", 10.0), wait_s=30.0)
    ended = p.propose(CloseSession(s.id, "w"))
    assert isinstance(ended, SessionEnded) and not ended.expired
    assert isinstance(p.result(waiter), Lease)
    p.tick(100.0)
    assert not any(isinstance(c, ExpireSession) for c in p.proposed)


def test_take_office_restarts_session_timers_at_full_ttl() -> None:
    old = Primary()
    s = old.open(ttl_s=5.0)
    old.tick(4.0)
    new = Primary(machine=old.machine, now=100.0, ballot=B2)
    assert new.keeper.session_expires_in(s.id, 100.0) == 5.0
    new.tick(104.9)
    assert decisions(new) == []
    new.tick(105.0)
    assert decisions(new) == [ExpireSession(s.id, s.token, B2)]
    assert new.machine.session(s.id) is None


def test_take_office_restarts_unbound_permit_timers_and_lock_delays_at_full_length() -> None:
    old = Primary()
    a = old.permit(old.shared("semaphore", "pool", "a", "permit", limit=2, ttl_s=3.0,
                              lock_delay_s=4.0))  # fmt: skip
    old.tick(3.0)  # expired: blocked for 4 s
    b = old.permit(old.shared("semaphore", "pool", "b", "permit", limit=2, ttl_s=3.0))
    new = Primary(machine=old.machine, now=50.0, ballot=B2)
    assert new.keeper.shared_expires_in("semaphore", "pool", "b", 50.0) == 3.0
    new.tick(52.9)
    assert decisions(new) == []
    new.tick(53.0)
    assert decisions(new) == [ExpireShared("semaphore", "pool", "b", b.token, B2)]
    new.tick(54.0)
    assert decisions(new)[-1] == UnblockShared("semaphore", "pool", a.token, B2)
    assert new.machine.shared("semaphore", "pool") is None


def test_a_deposed_primarys_session_expiry_is_ignored() -> None:
    old = Primary()
    s = old.open(ttl_s=5.0)
    new = Primary(machine=old.machine, now=1.0, ballot=B2)  # B2's office entry is applied
    old.tick(5.0)  # the old keeper, unaware, decides under B1
    assert decisions(old) == [ExpireSession(s.id, s.token, B1)]
    assert isinstance(old.results[-1], Ignored) and old.results[-1].deposed
    assert new.machine.session(s.id) is not None
    assert new.keeper.session_expires_in(s.id, 5.0) == 1.0


# --- renewals ------------------------------------------------------------------------------------


def test_one_confirmation_round_renews_sessions_and_permits_without_a_log_entry() -> None:
    p = Primary()
    s = p.open(ttl_s=5.0)
    p.send(Acquire("db", "w", 0.0, session=s.id))
    bound = p.permit(rw(p, "cache", "w", "read", session=s.id))
    unbound = p.permit(p.shared("semaphore", "pool", "u", "permit", limit=3, ttl_s=9.0))
    entries = len(p.proposed)
    p.tick(3.0)
    keys = [p.key() for _ in range(4)]
    p.handle(p.keeper.renew_session(s.id, "w", keys[0], p.now))
    p.handle(p.keeper.renew("db", "w", p.machine.get("db").token, keys[1], p.now))  # type: ignore[union-attr]
    p.handle(p.keeper.renew_shared("rwlock", "cache", "w", bound.token, keys[2], p.now))
    p.handle(p.keeper.renew_shared("semaphore", "pool", "u", unbound.token, keys[3], p.now))
    assert set(keys).isdisjoint(p.replies) and p.keeper.renewals_waiting == 4
    p.confirm_round()
    assert len(p.proposed) == entries  # no log write
    outcomes = [p.replies[k].outcome for k in keys]
    assert [type(o).__name__ for o in outcomes] == ["Session", "Lease", "Permit", "Permit"]
    assert [p.replies[k].expires_in_s for k in keys] == [5.0, 5.0, 5.0, 9.0]
    assert p.keeper.session_expires_in(s.id, p.now) == 5.0
    p.tick(7.9)
    assert decisions(p) == []
    p.tick(8.0)
    assert decisions(p) == [ExpireSession(s.id, s.token, B1)]


def test_renewals_are_refused_for_unknown_sessions_holders_and_tokens() -> None:
    p = Primary()
    s = p.open(ttl_s=5.0)
    permit = p.permit(p.shared("semaphore", "pool", "u", "permit", limit=3))
    keys = [p.key() for _ in range(4)]
    p.handle(p.keeper.renew_session("s999", "w", keys[0], p.now))
    p.handle(p.keeper.renew_session(s.id, "intruder", keys[1], p.now))
    p.handle(p.keeper.renew_session(s.id, "w", keys[2], p.now, principal="other"))
    p.handle(p.keeper.renew_shared("semaphore", "pool", "u", permit.token + 1, keys[3], p.now))
    # A holder or principal that is not the session's is refused at once (fixed facts of
    # the id); a session or token unknown here only once a round confirms this primary.
    assert keys[1] in p.replies and keys[2] in p.replies
    assert keys[0] not in p.replies and keys[3] not in p.replies
    p.handle(p.keeper.on_confirmed(p.keeper.start_round(p.now), p.now))
    codes = [p.result(k) for k in keys]
    assert [c.code for c in codes if isinstance(c, Refused)] == [
        "not_found", "not_holder", "forbidden", "not_holder"]


def test_a_session_that_ended_before_its_round_is_answered_not_found() -> None:
    p = Primary()
    s = p.open(ttl_s=5.0)
    key = p.key()
    p.handle(p.keeper.renew_session(s.id, "w", key, p.now))
    round_id = p.keeper.start_round(p.now)
    p.propose(CloseSession(s.id, "w"))
    p.handle(p.keeper.on_confirmed(round_id, p.now))
    refused = p.result(key)
    assert isinstance(refused, Refused) and refused.code == "not_found"


# --- FIFO waiters of shared names -----------------------------------------------------------------


def test_a_waiting_writer_is_not_overtaken_by_later_readers() -> None:
    p = Primary()
    r1, r2 = p.permit(rw(p, "m", "r1", "read")), p.permit(rw(p, "m", "r2", "read"))
    writer = rw(p, "m", "w", "write", wait_s=30.0)
    late = rw(p, "m", "r3", "read", wait_s=30.0)
    entries = len(p.proposed)
    impatient = rw(p, "m", "r4", "read")  # wait 0 behind a waiter: held, no log write
    refused = p.result(impatient)
    assert isinstance(refused, Refused) and refused.code == "held"
    assert len(p.proposed) == entries and {writer, late}.isdisjoint(p.replies)
    p.release(r1)
    assert writer not in p.replies
    p.release(r2)
    w = p.permit(writer)
    assert late not in p.replies
    p.release(w)
    assert p.permit(late).token > w.token


def test_readers_waiting_behind_a_writer_are_granted_together() -> None:
    p = Primary()
    w = p.permit(rw(p, "m", "w", "write"))
    readers = [rw(p, "m", f"r{i}", "read", wait_s=30.0) for i in range(3)]
    p.release(w)
    assert len(p.batches[-1]) == 3  # proposed in one step
    assert len({p.permit(r).token for r in readers}) == 3


def test_a_semaphore_of_two_grants_two_waiters_at_once() -> None:
    p = Primary()
    s = p.open(ttl_s=5.0)
    for holder in ("a", "b"):
        p.permit(p.shared("semaphore", "pool", holder, "permit", limit=2, session=s.id))
    waiters = [p.shared("semaphore", "pool", h, "permit", limit=2, wait_s=30.0)
               for h in ("c", "d", "e")]  # fmt: skip
    assert set(waiters).isdisjoint(p.replies)
    p.propose(CloseSession(s.id, "w"))
    assert p.batches[-1] == [AcquireShared("semaphore", "pool", h, "permit", 2, 10.0)
                             for h in ("c", "d")]  # fmt: skip
    assert isinstance(p.result(waiters[0]), Permit) and isinstance(p.result(waiters[1]), Permit)
    assert waiters[2] not in p.replies
    view = p.machine.shared("semaphore", "pool")
    assert view is not None and [h.holder for h in view.holds] == ["c", "d"]


def test_newcomers_in_flight_count_against_the_limit() -> None:
    """Two acquires proposed before either is applied: the second must park, not be
    refused by the log."""
    p = Primary()
    first = AcquireShared("semaphore", "pool", "a", "permit", 1, 10.0)
    second = AcquireShared("semaphore", "pool", "b", "permit", 1, 10.0)
    k1, k2 = p.key(), p.key()
    r1 = p.keeper.acquire(AcquireRequest(k1, first, 0.0), p.now)
    r2 = p.keeper.acquire(AcquireRequest(k2, second, 30.0), p.now)
    assert [x.command for x in r1.proposals] == [first] and r2.proposals == []
    assert k2 not in [r.to for r in r2.replies]


def test_a_limit_mismatch_is_the_logs_answer_at_once() -> None:
    p = Primary()
    p.permit(p.shared("semaphore", "pool", "a", "permit", limit=1))
    key = p.shared("semaphore", "pool", "b", "permit", limit=2, wait_s=30.0)
    refused = p.result(key)
    assert isinstance(refused, Refused) and refused.code == "limit_mismatch"


def test_a_waiting_writer_that_hangs_up_lets_the_readers_behind_it_in() -> None:
    p = Primary()
    p.permit(rw(p, "m", "r1", "read"))
    writer = rw(p, "m", "w", "write", wait_s=30.0)
    reader = rw(p, "m", "r2", "read", wait_s=30.0)
    assert reader not in p.replies
    p.handle(p.keeper.cancel(writer, p.now))
    assert writer not in p.replies and isinstance(p.result(reader), Permit)


def test_a_waiter_whose_wait_runs_out_is_told_who_holds_it_and_for_how_long() -> None:
    p = Primary()
    w = p.permit(rw(p, "m", "w", "write", ttl_s=20.0))
    reader = rw(p, "m", "r", "read", wait_s=3.0)
    p.tick(3.0)
    refused = p.result(reader)
    assert isinstance(refused, Refused) and (refused.holder, refused.token) == ("w", w.token)
    assert p.replies[reader].expires_in_s == 17.0


def test_an_unbound_permit_expires_with_lock_delay_then_its_slot_is_granted() -> None:
    p = Primary()
    a = p.permit(p.shared("semaphore", "pool", "a", "permit", limit=1, ttl_s=2.0,
                          lock_delay_s=1.0))  # fmt: skip
    waiter = p.shared("semaphore", "pool", "b", "permit", limit=1, wait_s=30.0)
    p.tick(2.0)
    assert decisions(p) == [ExpireShared("semaphore", "pool", "a", a.token, B1)]
    assert waiter not in p.replies
    p.tick(3.0)
    assert decisions(p)[-1] == UnblockShared("semaphore", "pool", a.token, B1)
    assert isinstance(p.result(waiter), Permit)


def test_step_down_answers_shared_waiters_503() -> None:
    p = Primary()
    p.permit(rw(p, "m", "w", "write"))
    reader = rw(p, "m", "r", "read", wait_s=30.0)
    replies = p.keeper.step_down()
    assert [(r.to, type(r.outcome)) for r in replies] == [(reader, Unavailable)]


def test_releases_of_leases_still_hand_names_to_lease_waiters() -> None:
    p = Primary()
    lease = p.result(p.send(Acquire("db", "a", 10.0)))
    assert isinstance(lease, Lease)
    waiter = p.send(Acquire("db", "b", 10.0), wait_s=5.0)
    p.propose(Release("db", "a", lease.token))
    assert isinstance(p.result(waiter), Lease)


# --- through the replica ------------------------------------------------------------------------


class One:
    """A cluster of one ``LeaseReplica``, its messages to itself delivered at once."""

    def __init__(self) -> None:
        import random

        from paxlock.coordinator.core.config import CoreConfig
        from paxlock.coordinator.core.ready import DurableState
        from paxlock.coordinator.core.replica import LeaseReplica

        self.replica = LeaseReplica(CoreConfig("n1", ("n1",), election=False),
                                    DurableState(), random.Random(1), origin="n1/1")  # fmt: skip
        self.replies: dict[RequestKey, Reply] = {}
        self.entries = 0
        self.next_key = 0
        self.take(self.replica.start(0.0))
        self.take(self.replica.run_phase1(0.0))
        assert self.replica.keeper.in_office

    def take(self, ready: ReplicaReady, now: float = 0.0) -> None:
        """Record its effects, and deliver the messages it sends itself."""
        self.entries += len(ready.applied)
        for reply in ready.replies:
            self.replies[reply.to] = reply
        for envelope in ready.messages:
            self.take(self.replica.receive(envelope.src, envelope.msg, now), now)

    def ask(self, op: RequestOp, now: float = 0.0) -> Reply:
        self.next_key += 1
        key = RequestKey(self.next_key)
        self.take(self.replica.request(key, op, now), now)
        return self.replies[key]


def test_the_replica_answers_sessions_and_permits_with_expires_in_and_renews_without_entries(
) -> None:  # fmt: skip
    one = One()
    opened = one.ask(CommandOp(OpenSession("w", 6.0, request_id="o1")))
    session = opened.outcome
    assert isinstance(session, Session) and opened.expires_in_s == 6.0
    again = one.ask(CommandOp(OpenSession("w", 6.0, request_id="o1")), now=1.0)
    assert again.outcome == session and again.expires_in_s == 5.0  # replayed, no entry
    granted = one.ask(CommandOp(AcquireShared("rwlock", "m", "w", "write", session=session.id)))
    assert isinstance(granted.outcome, Permit) and granted.expires_in_s == 6.0
    entries = one.entries
    renewed = one.ask(RenewSessionOp(session.id, "w"), now=2.0)
    assert renewed.outcome == session and renewed.expires_in_s == 6.0
    permit = granted.outcome
    renewed = one.ask(RenewSharedOp("rwlock", "m", "w", permit.token), now=3.0)
    assert isinstance(renewed.outcome, Permit) and renewed.expires_in_s == 6.0
    assert one.entries == entries  # renewals write nothing
    assert one.replica.session_expires_in(session.id, 4.0) == 5.0
    assert one.replica.shared_expires_in("rwlock", "m", "w", 4.0) == 5.0
    assert one.replica.shared_expires_in("rwlock", "m", "nobody", 4.0) is None
    closed = one.ask(CommandOp(CloseSession(session.id, "w")), now=4.0)
    assert isinstance(closed.outcome, SessionEnded) and len(closed.outcome.freed) == 1


def test_the_replica_parks_a_shared_acquire_and_answers_it_when_the_name_frees() -> None:
    one = One()
    first = one.ask(CommandOp(AcquireShared("semaphore", "p", "a", "permit", 1, 10.0)))
    assert isinstance(first.outcome, Permit)
    one.next_key += 1
    parked = RequestKey(one.next_key)
    one.take(one.replica.request(parked, CommandOp(AcquireShared(
        "semaphore", "p", "b", "permit", 1, 10.0), wait_s=30.0), 1.0), 1.0)
    assert parked not in one.replies
    released = one.ask(CommandOp(ReleaseShared("semaphore", "p", "a", first.outcome.token)))
    assert released.outcome.__class__.__name__ == "SharedReleased"
    assert isinstance(one.replies[parked].outcome, Permit)


# --- a random workload -----------------------------------------------------------------------------

HOLDERS = ("a", "b", "c", "d", "e")
shared_ops = st.lists(st.one_of(
    st.tuples(st.just("acquire"), st.sampled_from(HOLDERS), st.sampled_from(["read", "write"]),
              st.sampled_from([0.0, 2.0, 30.0])),
    st.tuples(st.just("release"), st.sampled_from(HOLDERS)),
    st.tuples(st.just("tick"), st.sampled_from([0.5, 3.0])),
    st.tuples(st.just("cancel"), st.integers(0, 30)),
), max_size=40)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(shared_ops)
def test_random_rwlock_workload_grants_in_arrival_order_and_answers_every_request_once(
    ops: list[tuple[object, ...]],
) -> None:
    """Whatever the mix: never a writer beside another holder, every request answered at
    most once (the harness checks), and a grant only once every earlier request for the name
    was answered or hung up (FIFO: no reader overtakes a waiting writer)."""
    p = Primary()
    sent: list[RequestKey] = []
    gone: set[RequestKey] = set()
    for op in ops:
        before = set(p.replies)
        match op:
            case ("acquire", holder, mode, wait_s):
                sent.append(rw(p, "m", str(holder), mode, ttl_s=4.0,  # type: ignore[arg-type]
                               wait_s=wait_s))  # type: ignore[arg-type]
            case ("release", holder):
                view = p.machine.shared("rwlock", "m")
                hold = next((h for h in view.holds if h.holder == holder), None) if view else None
                if hold is not None:
                    p.release(hold)
            case ("tick", dt):
                p.tick(p.now + dt)  # type: ignore[operator]
            case ("cancel", index):
                if sent and sent[index % len(sent)] not in p.replies:  # type: ignore[operator]
                    key = sent[index % len(sent)]  # type: ignore[operator]
                    gone.add(key)
                    p.handle(p.keeper.cancel(key, p.now))
        view = p.machine.shared("rwlock", "m")
        if view is not None and any(h.mode == "write" for h in view.holds):
            assert len(view.holds) == 1, view
        for key in set(p.replies) - before:
            if isinstance(p.replies[key].outcome, Permit):
                waiting = [k for k in sent if k < key and k not in p.replies and k not in gone]
                assert waiting == [], f"{key} granted while {waiting} wait ahead of it"
    for key in sent:
        p.tick(p.now + 10.0)  # every hold expires, every wait runs out
    assert set(sent) <= set(p.replies) | gone


def test_a_bound_lease_is_not_renewable_after_its_session_expired() -> None:
    p = Primary()
    s = p.open(ttl_s=5.0)
    lease = p.result(p.send(Acquire("db", "w", 0.0, session=s.id)))
    assert isinstance(lease, Lease)
    p.tick(5.0)
    key = p.key()
    p.handle(p.keeper.renew("db", "w", lease.token, key, p.now))
    p.handle(p.keeper.on_confirmed(p.keeper.start_round(p.now), p.now))
    refused = p.result(key)
    assert isinstance(refused, Refused) and refused.code == "not_holder"
    assert refused.holder is None


semaphore_ops = st.lists(st.one_of(
    st.tuples(st.just("acquire"), st.sampled_from(HOLDERS), st.sampled_from([0.0, 2.0, 30.0]),
              st.booleans()),
    st.tuples(st.just("release"), st.sampled_from(HOLDERS)),
    st.tuples(st.just("flush"), st.integers(1, 3)),
    st.tuples(st.just("tick"), st.sampled_from([0.5, 3.0])),
    st.tuples(st.just("close"),),
    st.tuples(st.just("cancel"), st.integers(0, 30)),
), max_size=50)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(semaphore_ops)
def test_random_semaphore_workload_with_acquires_in_flight_never_refuses_a_waiter_early(
    ops: list[tuple[object, ...]],
) -> None:
    """Proposals apply only when flushed, so acquires are in flight while others arrive, and
    the session binding some permits may end: a request allowed to wait is never refused
    ``held`` before its wait ran out (what is in flight counts), grants follow arrival order,
    and every request is answered once."""
    p = Primary(auto_apply=False)
    p.auto_apply = True
    session = p.open(ttl_s=50.0)
    p.auto_apply = False
    sent: dict[RequestKey, float] = {}
    """Each request and when its wait runs out."""
    gone: set[RequestKey] = set()
    for op in ops:
        before = set(p.replies)
        match op:
            case ("acquire", holder, wait_s, bound):
                key = p.shared("semaphore", "p", str(holder), "permit", limit=2, ttl_s=4.0,
                               session=session.id if bound else None,
                               wait_s=wait_s)  # type: ignore[arg-type]
                sent[key] = p.now + wait_s  # type: ignore[operator]
            case ("release", holder):
                view = p.machine.shared("semaphore", "p")
                hold = next((h for h in view.holds if h.holder == holder), None) if view else None
                if hold is not None:
                    p.handle(KeeperReady([Propose(ReleaseShared(
                        "semaphore", "p", hold.holder, hold.token), None)]))
            case ("flush", count):
                p.flush(count)  # type: ignore[arg-type]
            case ("tick", dt):
                p.tick(p.now + dt)  # type: ignore[operator]
            case ("close",):
                p.handle(KeeperReady([Propose(CloseSession(session.id, "w"), None)]))
            case ("cancel", index):
                keys = list(sent)
                if keys and keys[index % len(keys)] not in p.replies:  # type: ignore[operator]
                    gone.add(keys[index % len(keys)])  # type: ignore[operator]
                    p.handle(p.keeper.cancel(keys[index % len(keys)], p.now))  # type: ignore[operator]
        view = p.machine.shared("semaphore", "p")
        assert view is None or len(view.holds) + len(view.blocked) <= 2
        for key in set(p.replies) - before:
            outcome = p.replies[key].outcome
            if isinstance(outcome, Refused) and outcome.code == "held":
                assert p.now >= sent[key], f"{key} refused held before its wait ran out"
            if isinstance(outcome, Permit):
                waiting = [k for k in sent if k < key and k not in p.replies and k not in gone]
                assert waiting == [], f"{key} granted while {waiting} wait ahead of it"
    p.auto_apply = True
    p.flush()
    for _ in range(len(sent) + 2):
        p.tick(p.now + 60.0)  # the session, every hold and every wait run out
    assert set(sent) <= set(p.replies) | gone


def test_an_acquire_proposed_for_the_log_to_refuse_still_counts_while_in_flight() -> None:
    """B holds the only permit; its release and then C's acquire (wait 0, so proposed for
    the log to answer) are in flight. Once the release is applied, D arrives willing to wait:
    C will be granted first, so D must wait rather than be proposed and refused ``held``."""
    p = Primary()
    b = p.permit(p.shared("semaphore", "p", "b", "permit", limit=1))
    p.auto_apply = False
    p.handle(KeeperReady([Propose(ReleaseShared("semaphore", "p", "b", b.token), None)]))
    c = p.shared("semaphore", "p", "c", "permit", limit=1)
    p.flush(1)  # the release
    d = p.shared("semaphore", "p", "d", "permit", limit=1, wait_s=30.0)
    p.flush()
    assert isinstance(p.result(c), Permit) and d not in p.replies
    p.auto_apply = True
    p.release(p.permit(c))
    assert isinstance(p.result(d), Permit)


def test_a_new_primary_times_bound_holds_by_their_session_only() -> None:
    old = Primary()
    s = old.open(ttl_s=5.0)
    old.send(Acquire("db", "w", 0.0, session=s.id))
    old.permit(rw(old, "m", "w", "write", session=s.id))
    new = Primary(machine=old.machine, now=100.0, ballot=B2)
    assert new.keeper.expires_in("db", 100.0) == 5.0
    assert new.keeper.shared_expires_in("rwlock", "m", "w", 100.0) == 5.0
    new.tick(105.0)
    assert decisions(new) == [ExpireSession(s.id, s.token, B2)]
    assert new.machine.get("db") is None and new.machine.shared("rwlock", "m") is None
