"""Sessions, bound holds and groups in the state machine (DESIGN.md §7, issue 15 spec §1),
one rule per test."""

from __future__ import annotations

import pytest

from paxlock.coordinator.core.ballot import Ballot
from paxlock.coordinator.core.coord_commands import (
    AcquireShared,
    CloseSession,
    CreateGroup,
    DeleteGroup,
    ExpireSession,
    Freed,
    Group,
    GroupDeleted,
    JoinGroup,
    LeaveGroup,
    Left,
    Member,
    OpenSession,
    Permit,
    Session,
    SessionEnded,
    UpdateCapabilities,
)
from paxlock.coordinator.core.lease_commands import (
    Acquire,
    Expire,
    Ignored,
    Lease,
    LeaseCommand,
    Office,
    Refused,
    Release,
    Released,
    Unblock,
    Unblocked,
)
from paxlock.coordinator.core.leases import LeaseMachine


def open_session(m: LeaseMachine, holder: str = "w", ttl_s: float = 10.0,
                 principal: str = "") -> Session:  # fmt: skip
    session = m.apply(OpenSession(holder, ttl_s, principal=principal))
    assert isinstance(session, Session), session
    return session


def bound_lease(m: LeaseMachine, session: Session, name: str, holder: str = "w",
                lock_delay_s: float = 0.0) -> Lease:  # fmt: skip
    lease = m.apply(Acquire(name, holder, 0.0, lock_delay_s=lock_delay_s, session=session.id))
    assert isinstance(lease, Lease), lease
    return lease


def group_with_member(m: LeaseMachine, session: Session, group: str = "g",
                      member: str = "m1") -> Member:  # fmt: skip
    if m.group(group) is None:
        assert isinstance(m.apply(CreateGroup(group, "w")), Group)
    joined = m.apply(JoinGroup(group, member, "w", b"caps", session.id))
    assert isinstance(joined, Member), joined
    return joined


# --- sessions ----------------------------------------------------------------------------------


def test_open_session_is_a_grant_with_id_from_its_token() -> None:
    m = LeaseMachine()
    m.apply(Acquire("x", "a", 5.0))
    session = open_session(m, principal="p")
    assert session == Session("s2", "w", 10.0, 2, 2, "p")
    assert m.session("s2") == session and m.sessions() == [session]
    assert m.sessions(holder="other") == []


def test_bound_lease_takes_the_sessions_ttl_and_records_the_session() -> None:
    m = LeaseMachine()
    session = open_session(m, ttl_s=7)
    lease = bound_lease(m, session, "db")
    assert lease.session == session.id and lease.ttl_s == 7.0
    assert m.bound(session.id) == [Freed("lease", "db", "w", lease.token)]


def test_acquire_with_an_unknown_session_is_not_found() -> None:
    m = LeaseMachine()
    result = m.apply(Acquire("db", "w", 0.0, session="s9"))
    assert isinstance(result, Refused) and result.code == "not_found"
    assert m.revision == 0 and m.get("db") is None


def test_binding_to_another_principals_session_is_forbidden() -> None:
    m = LeaseMachine()
    session = open_session(m, principal="alice")
    result = m.apply(Acquire("db", "w", 0.0, session=session.id, principal="bob"))
    assert isinstance(result, Refused) and result.code == "forbidden"


def test_unbound_acquire_still_needs_a_positive_ttl() -> None:
    result = LeaseMachine().apply(Acquire("db", "w", 0.0))
    assert isinstance(result, Refused) and result.code == "bad_request"


def test_close_ends_every_bound_hold_in_one_apply_with_one_revision_bump() -> None:
    m = LeaseMachine()
    session = open_session(m)
    leases = [bound_lease(m, session, f"n{i}", lock_delay_s=5) for i in range(3)]
    permit = m.apply(AcquireShared("semaphore", "pool", "w", "permit", 2, session=session.id))
    assert isinstance(permit, Permit) and permit.session == session.id
    member = group_with_member(m, session)
    unbound = m.apply(Acquire("free", "w", 10.0))
    before = m.revision
    ended = m.apply(CloseSession(session.id, "w"))
    assert isinstance(ended, SessionEnded) and not ended.expired
    assert ended.revision == before + 1 == m.revision
    assert ended.freed == (
        *(Freed("lease", lease.name, "w", lease.token) for lease in leases),
        Freed("semaphore", "pool", "w", permit.token),
        Freed("member", "g", "m1", member.token),
    )
    assert [m.get(f"n{i}") for i in range(3)] == [None] * 3 and m.blocks() == []
    assert m.shared("semaphore", "pool") is None
    group = m.group("g")
    assert group == Group("g", ended.revision, ())
    assert m.get("free") == unbound and m.session(session.id) is None
    assert m.bound(session.id) == [] and m.holds() == 1


def test_session_expiry_counts_as_expiry_and_leaves_lock_delay_blocks() -> None:
    m = LeaseMachine()
    session = open_session(m)
    slow = bound_lease(m, session, "slow", lock_delay_s=5)
    quick = bound_lease(m, session, "quick")
    ended = m.apply(ExpireSession(session.id, session.token))
    assert isinstance(ended, SessionEnded) and ended.expired
    assert ended.freed == (Freed("lease", "slow", "w", slow.token, blocked=True),
                           Freed("lease", "quick", "w", quick.token))  # fmt: skip
    block = m.blocked("slow")
    assert block is not None and block.token == slow.token and block.revision == ended.revision
    refused = m.apply(Acquire("slow", "x", 10.0))
    assert isinstance(refused, Refused) and refused.blocked
    assert isinstance(m.apply(Unblock("slow", slow.token)), Unblocked)
    assert isinstance(m.apply(Acquire("slow", "x", 10.0)), Lease)


def test_close_by_another_holder_or_principal_or_of_no_session() -> None:
    m = LeaseMachine()
    session = open_session(m, principal="p")
    codes = [r.code for r in (m.apply(CloseSession("s99", "w", principal="p")),
                              m.apply(CloseSession(session.id, "x", principal="p")),
                              m.apply(CloseSession(session.id, "w", principal="q")))
             if isinstance(r, Refused)]  # fmt: skip
    assert codes == ["not_found", "not_holder", "forbidden"]
    assert m.session(session.id) == session and m.revision == session.revision


def test_stale_or_ghost_expire_session_is_ignored() -> None:
    m = LeaseMachine()
    m.apply(Office(Ballot(2, "b")))
    session = open_session(m)
    bound_lease(m, session, "db")
    ghost = m.apply(ExpireSession(session.id, session.token, Ballot(1, "a")))
    assert ghost == Ignored(session.id, session.token, deposed=True)
    stale = m.apply(ExpireSession(session.id, session.token + 1, Ballot(2, "b")))
    assert stale == Ignored(session.id, session.token + 1)
    assert m.session(session.id) == session and m.get("db") is not None


def test_a_bound_lease_has_no_timer_so_expire_naming_it_is_ignored() -> None:
    m = LeaseMachine()
    lease = bound_lease(m, open_session(m), "db")
    assert m.apply(Expire("db", lease.token)) == Ignored("db", lease.token)
    assert m.get("db") == lease


def test_releasing_a_bound_lease_unbinds_it() -> None:
    m = LeaseMachine()
    session = open_session(m)
    lease = bound_lease(m, session, "db")
    assert isinstance(m.apply(Release("db", "w", lease.token)), Released)
    assert m.bound(session.id) == []
    ended = m.apply(CloseSession(session.id, "w"))
    assert isinstance(ended, SessionEnded) and ended.freed == ()


def test_retried_close_returns_the_first_end() -> None:
    m = LeaseMachine()
    session = open_session(m)
    bound_lease(m, session, "db")
    close = CloseSession(session.id, "w", request_id="r1")
    first = m.apply(close)
    assert isinstance(first, SessionEnded)
    revision = m.revision
    assert m.apply(close) == first and m.revision == revision


# --- groups ------------------------------------------------------------------------------------


def test_create_list_and_delete_a_group() -> None:
    m = LeaseMachine()
    created = m.apply(CreateGroup("g", "w"))
    assert created == Group("g", 1) and m.groups() == ["g"]
    exists = m.apply(CreateGroup("g", "x"))
    assert isinstance(exists, Refused) and exists.code == "exists"
    assert m.apply(DeleteGroup("g", "x")) == GroupDeleted("g", 2)
    gone = m.apply(DeleteGroup("g", "x"))
    assert isinstance(gone, Refused) and gone.code == "not_found" and m.groups() == []


def test_join_is_a_grant_and_raises_the_groups_revision() -> None:
    m = LeaseMachine()
    session = open_session(m)
    member = group_with_member(m, session)
    assert member == Member("g", "m1", b"caps", session.id, 3, 3, "")
    assert m.group("g") == Group("g", 3, (member,))
    assert m.holds_of("") == 1 and m.value_bytes() == 4


def test_join_refusals_name_what_is_missing() -> None:
    m = LeaseMachine()
    session = open_session(m)
    no_group = m.apply(JoinGroup("g", "m1", "w", b"", session.id))
    assert isinstance(no_group, Refused) and no_group.code == "not_found"
    assert "group" in no_group.message
    m.apply(CreateGroup("g", "w"))
    no_session = m.apply(JoinGroup("g", "m1", "w", b"", "s77"))
    assert isinstance(no_session, Refused) and no_session.code == "not_found"
    assert "session" in no_session.message
    group_with_member(m, session)
    again = m.apply(JoinGroup("g", "m1", "w", b"", session.id))
    assert isinstance(again, Refused) and again.code == "exists"


def test_delete_of_a_group_with_members_is_not_empty() -> None:
    m = LeaseMachine()
    group_with_member(m, open_session(m))
    refused = m.apply(DeleteGroup("g", "w"))
    assert isinstance(refused, Refused) and refused.code == "not_empty"


def test_update_raises_revision_keeps_token_and_leave_ends_membership() -> None:
    m = LeaseMachine()
    session = open_session(m)
    member = group_with_member(m, session)
    updated = m.apply(UpdateCapabilities("g", "m1", "w", b"more caps"))
    assert isinstance(updated, Member) and updated.token == member.token
    assert updated.revision == m.revision > member.revision
    assert m.value_bytes() == len(b"more caps")
    left = m.apply(LeaveGroup("g", "m1", "w"))
    assert left == Left("g", "m1", member.token, m.revision)
    assert m.bound(session.id) == [] and m.holds() == 0 and m.value_bytes() == 0
    not_member = m.apply(LeaveGroup("g", "m1", "w"))
    assert isinstance(not_member, Refused) and not_member.code == "not_member"


def test_another_principal_cannot_leave_or_update_a_member() -> None:
    m = LeaseMachine()
    group_with_member(m, open_session(m))
    for command in (LeaveGroup("g", "m1", "w", principal="q"),
                    UpdateCapabilities("g", "m1", "w", b"", principal="q")):  # fmt: skip
        refused = m.apply(command)
        assert isinstance(refused, Refused) and refused.code == "forbidden"


def test_group_leader_name_needs_the_group_not_membership() -> None:
    m = LeaseMachine()
    refused = m.apply(Acquire("group:g", "c", 10.0))
    assert isinstance(refused, Refused) and refused.code == "not_found"
    m.apply(CreateGroup("g", "w"))
    leader = m.apply(Acquire("group:g", "c", 10.0, value="v"))
    assert isinstance(leader, Lease) and leader.name == "group:g"
    assert isinstance(m.apply(DeleteGroup("g", "w")), GroupDeleted)
    assert m.get("group:g") == leader, "deleting a group leaves its leader lease alone"


@pytest.mark.parametrize("command", [
    Acquire("group:", "c", 10.0),
    Acquire("group:a:b", "c", 10.0),
    CreateGroup("bad name", "w"),
    JoinGroup("g", "bad:member", "w", b"", "s1"),
    JoinGroup("g", "m", "w", b"x" * 4097, "s1"),
    JoinGroup("g", "m", "w", b"", ""),
    OpenSession("w", 0.0),
    OpenSession("", 1.0),
    CloseSession("s1", ""),
])  # fmt: skip
def test_malformed_commands_are_bad_request_and_change_nothing(command: LeaseCommand) -> None:
    m = LeaseMachine()
    m.apply(CreateGroup("g", "w"))
    open_session(m)
    before = m.snapshot()
    result = m.apply(command)
    assert isinstance(result, Refused) and result.code == "bad_request", result
    assert m.snapshot() == before
