"""Semaphores and read/write locks in the state machine (issue 15 spec §1), one rule per
test."""

from __future__ import annotations

import pytest

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
    SharedExpired,
    SharedReleased,
    SharedUnblocked,
    UnblockShared,
)
from paxlock.coordinator.core.lease_commands import (
    Ignored,
    LeaseCommand,
    Office,
    Refused,
    Verification,
)
from paxlock.coordinator.core.leases import LeaseMachine


def permit(m: LeaseMachine, holder: str, limit: int = 2, *, name: str = "pool",
           lock_delay_s: float = 0.0, session: str | None = None) -> Permit:  # fmt: skip
    ttl_s = 0.0 if session else 10.0
    got = m.apply(AcquireShared("semaphore", name, holder, "permit", limit, ttl_s, session,
                                lock_delay_s))  # fmt: skip
    assert isinstance(got, Permit), got
    return got


def rw(m: LeaseMachine, holder: str, mode: str, lock_delay_s: float = 0.0) -> Permit | Refused:
    got = m.apply(AcquireShared("rwlock", "doc", holder, mode, ttl_s=10.0,  # type: ignore[arg-type]
                                lock_delay_s=lock_delay_s))  # fmt: skip
    assert isinstance(got, Permit | Refused), got
    return got


# --- semaphores --------------------------------------------------------------------------------


def test_semaphore_grants_up_to_its_limit_with_increasing_tokens() -> None:
    m = LeaseMachine()
    a, b = permit(m, "a"), permit(m, "b")
    assert (a.token, b.token) == (1, 2) and b.holders == ("a", "b") and a.holders == ("a",)
    full = m.apply(AcquireShared("semaphore", "pool", "c", "permit", 2, 10.0))
    assert full == Refused("held", "pool", "a", a.token)
    view = m.shared("semaphore", "pool")
    assert view is not None and view.limit == 2 and [p.holder for p in view.holds] == ["a", "b"]
    assert m.holds_of("") == 2 and m.revision == 2


def test_semaphore_is_not_reentrant() -> None:
    m = LeaseMachine()
    a = permit(m, "a", limit=5)
    again = m.apply(AcquireShared("semaphore", "pool", "a", "permit", 5, 10.0))
    assert isinstance(again, Refused) and again.code == "held" and again.token == a.token


def test_a_different_limit_while_held_is_limit_mismatch_and_fixed_again_once_free() -> None:
    m = LeaseMachine()
    a = permit(m, "a", limit=2)
    mismatch = m.apply(AcquireShared("semaphore", "pool", "b", "permit", 3, 10.0))
    assert isinstance(mismatch, Refused) and mismatch.code == "limit_mismatch"
    assert isinstance(m.apply(ReleaseShared("semaphore", "pool", "a", a.token)), SharedReleased)
    assert m.shared("semaphore", "pool") is None
    assert permit(m, "b", limit=3).limit == 3


def test_release_needs_holder_token_and_owner() -> None:
    m = LeaseMachine()
    a = permit(m, "a")
    wrong = m.apply(ReleaseShared("semaphore", "pool", "b", a.token))
    assert isinstance(wrong, Refused) and wrong.code == "not_holder"
    stale = m.apply(ReleaseShared("semaphore", "pool", "a", a.token + 7))
    assert stale == Refused("not_holder", "pool", "a", a.token)
    other = m.apply(ReleaseShared("semaphore", "pool", "a", a.token, principal="q"))
    assert isinstance(other, Refused) and other.code == "forbidden"
    assert m.apply(ReleaseShared("semaphore", "pool", "a", a.token)) == \
        SharedReleased("semaphore", "pool", "a", a.token, m.revision)  # fmt: skip


def test_expiry_leaves_a_block_that_counts_against_the_limit_until_unblocked() -> None:
    m = LeaseMachine()
    a = permit(m, "a", lock_delay_s=3)
    permit(m, "b")
    expired = m.apply(ExpireShared("semaphore", "pool", "a", a.token))
    assert expired == SharedExpired("semaphore", "pool", "a", a.token, m.revision, True)
    blocked = m.apply(AcquireShared("semaphore", "pool", "c", "permit", 2, 10.0))
    assert blocked == Refused("held", "pool", None, a.token, blocked=True)
    unblocked = m.apply(UnblockShared("semaphore", "pool", a.token))
    assert unblocked == SharedUnblocked("semaphore", "pool", a.token, m.revision)
    assert permit(m, "c").holders == ("b", "c")


def test_release_never_blocks() -> None:
    m = LeaseMachine()
    a = permit(m, "a", limit=1, lock_delay_s=3)
    m.apply(ReleaseShared("semaphore", "pool", "a", a.token))
    assert permit(m, "b", limit=1).holder == "b"


def test_stale_and_ghost_shared_decisions_are_ignored() -> None:
    m = LeaseMachine()
    m.apply(Office(Ballot(3, "n")))
    a = permit(m, "a", lock_delay_s=3)
    ghost = m.apply(ExpireShared("semaphore", "pool", "a", a.token, Ballot(2, "n")))
    assert ghost == Ignored("pool", a.token, deposed=True)
    wrong_holder = m.apply(ExpireShared("semaphore", "pool", "b", a.token, Ballot(3, "n")))
    assert wrong_holder == Ignored("pool", a.token)
    assert isinstance(m.apply(ExpireShared("semaphore", "pool", "a", a.token, Ballot(3, "n"))),
                      SharedExpired)  # fmt: skip
    ghost_unblock = m.apply(UnblockShared("semaphore", "pool", a.token, Ballot(1, "n")))
    assert ghost_unblock == Ignored("pool", a.token, deposed=True)
    view = m.shared("semaphore", "pool")
    assert view is not None and [b.token for b in view.blocked] == [a.token]


def test_verify_shared_knows_every_current_hold() -> None:
    m = LeaseMachine()
    a, b = permit(m, "a"), permit(m, "b")
    assert m.verify_shared("semaphore", "pool", a.token) == Verification(True, a.token)
    m.apply(ReleaseShared("semaphore", "pool", "a", a.token))
    assert m.verify_shared("semaphore", "pool", a.token) == Verification(False, b.token)
    assert m.verify_shared("rwlock", "pool", b.token) == Verification(False, None)


def test_semaphores_and_rwlocks_and_leases_are_separate_namespaces() -> None:
    m = LeaseMachine()
    permit(m, "a", limit=1, name="x")
    got = m.apply(AcquireShared("rwlock", "x", "b", "write", ttl_s=10.0))
    assert isinstance(got, Permit)
    assert [s.name for s in m.shared_list("semaphore")] == ["x"]
    assert [s.name for s in m.shared_list("rwlock", "x")] == ["x"]


def test_bound_permit_ends_with_its_session_expiry_and_blocks() -> None:
    m = LeaseMachine()
    session = m.apply(OpenSession("w", 5.0))
    assert isinstance(session, Session)
    p = permit(m, "w", session=session.id, lock_delay_s=2)
    assert p.ttl_s == 5.0 and p.session == session.id
    assert m.apply(ExpireShared("semaphore", "pool", "w", p.token)) == Ignored("pool", p.token)
    ended = m.apply(ExpireSession(session.id, session.token))
    assert isinstance(ended, SessionEnded) and ended.freed[0].blocked
    view = m.shared("semaphore", "pool")
    assert view is not None and view.holds == () and len(view.blocked) == 1


def test_close_frees_a_bound_permit_without_a_block() -> None:
    m = LeaseMachine()
    session = m.apply(OpenSession("w", 5.0))
    assert isinstance(session, Session)
    permit(m, "w", session=session.id, lock_delay_s=2)
    m.apply(CloseSession(session.id, "w"))
    assert m.shared("semaphore", "pool") is None and m.holds() == 0


# --- read/write locks --------------------------------------------------------------------------


def test_readers_share_and_a_writer_waits_for_all_of_them() -> None:
    m = LeaseMachine()
    r1, r2 = rw(m, "r1", "read"), rw(m, "r2", "read")
    assert isinstance(r2, Permit) and r2.holders == ("r1", "r2")
    assert isinstance(r1, Permit)
    assert rw(m, "w", "write") == Refused("held", "doc", "r1", r1.token)


def test_a_writer_excludes_readers_and_writers() -> None:
    m = LeaseMachine()
    w = rw(m, "w", "write")
    assert isinstance(w, Permit)
    assert rw(m, "r", "read") == Refused("held", "doc", "w", w.token)
    assert rw(m, "w2", "write") == Refused("held", "doc", "w", w.token)


def test_a_blocked_write_blocks_readers_a_blocked_read_blocks_only_writers() -> None:
    m = LeaseMachine()
    r = rw(m, "r", "read", lock_delay_s=2)
    assert isinstance(r, Permit)
    m.apply(ExpireShared("rwlock", "doc", "r", r.token))
    assert isinstance(rw(m, "r2", "read"), Permit)
    assert rw(m, "w", "write") == Refused("held", "doc", None, r.token, blocked=True)
    m2 = LeaseMachine()
    w = rw(m2, "w", "write", lock_delay_s=2)
    assert isinstance(w, Permit)
    m2.apply(ExpireShared("rwlock", "doc", "w", w.token))
    assert rw(m2, "r", "read") == Refused("held", "doc", None, w.token, blocked=True)


def test_shared_refusal_predicts_apply_without_changing_anything() -> None:
    m = LeaseMachine()
    rw(m, "r", "read")
    before = m.snapshot()
    write = AcquireShared("rwlock", "doc", "w", "write", ttl_s=10.0)
    read = AcquireShared("rwlock", "doc", "r2", "read", ttl_s=10.0)
    assert m.shared_refusal(read) is None
    predicted = m.shared_refusal(write)
    assert m.snapshot() == before and predicted == m.apply(write)


@pytest.mark.parametrize("command", [
    AcquireShared("semaphore", "pool", "a", "read", 2, 10.0),
    AcquireShared("semaphore", "pool", "a", "permit", 0, 10.0),
    AcquireShared("semaphore", "pool", "a", "permit", 100_001, 10.0),
    AcquireShared("rwlock", "doc", "a", "permit", 0, 10.0),
    AcquireShared("rwlock", "doc", "a", "read", 3, 10.0),
    AcquireShared("rwlock", "doc", "a", "read", 0, 0.0),
    AcquireShared("rwlock", "doc", "a", "read", 0, 1.0, lock_delay_s=-1),
    AcquireShared("mutex", "doc", "a", "read", 0, 1.0),  # type: ignore[arg-type]
    AcquireShared("rwlock", "bad name", "a", "read", 0, 1.0),
    ReleaseShared("rwlock", "doc", "", 1),
])  # fmt: skip
def test_malformed_shared_commands_are_bad_request(command: LeaseCommand) -> None:
    m = LeaseMachine()
    result = m.apply(command)
    assert isinstance(result, Refused) and result.code == "bad_request", result
    assert m.revision == 0
