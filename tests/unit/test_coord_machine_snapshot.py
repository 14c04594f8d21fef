"""Snapshot version 4 of the state machine, and property tests over random sequences of
session, shared-name, group and lease commands: the invariants of spec §1 after every step,
byte-exact round trips, and restores of versions 1-3."""

from __future__ import annotations

import random
from typing import TypeVar

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paxlock.coordinator.core.coord_commands import (
    AcquireShared,
    SharedKind,
    SharedMode,
    CloseSession,
    CreateGroup,
    DeleteGroup,
    ExpireSession,
    ExpireShared,
    JoinGroup,
    LeaveGroup,
    OpenSession,
    Permit,
    ReleaseShared,
    Session,
    SessionEnded,
    UnblockShared,
    UpdateCapabilities,
)
from paxlock.coordinator.core.lease_commands import (
    Acquire,
    Expire,
    Lease,
    LeaseCommand,
    Release,
    Result,
    Unblock,
)
from paxlock.coordinator.core.leases import LeaseMachine

GRANTS = (Lease, Permit, Session)
T = TypeVar("T")


def busy_machine() -> LeaseMachine:
    m = LeaseMachine()
    s = m.apply(OpenSession("w", 5.0, request_id="o1"))
    assert isinstance(s, Session)
    m.apply(Acquire("db", "a", 10.0, "v", 2.0, request_id="r1"))
    m.apply(Acquire("bound", "w", 0.0, lock_delay_s=1.0, session=s.id))
    m.apply(AcquireShared("semaphore", "pool", "a", "permit", 3, 10.0, lock_delay_s=1.0))
    m.apply(AcquireShared("semaphore", "pool", "w", "permit", 3, session=s.id))
    m.apply(AcquireShared("rwlock", "doc", "r", "read", ttl_s=10.0, lock_delay_s=1.0))
    m.apply(ExpireShared("rwlock", "doc", "r", 6))
    m.apply(CreateGroup("g", "w", request_id="g1"))
    m.apply(JoinGroup("g", "m1", "w", b"\x00caps", s.id))
    m.apply(CreateGroup("empty", "w"))
    return m


def test_snapshot_round_trip_of_every_kind_of_state_is_byte_exact() -> None:
    m = busy_machine()
    data = m.snapshot()
    restored = LeaseMachine.restore(data)
    assert restored.snapshot() == data
    for query in ("sessions", "groups", "shared_names", "blocks", "list"):
        assert getattr(restored, query)() == getattr(m, query)()
    assert restored.bound("s1") == m.bound("s1") and len(m.bound("s1")) == 3
    assert (restored.holds(), restored.holds_of(""), restored.value_bytes()) == \
        (m.holds(), m.holds_of(""), m.value_bytes()) == (5, 5, 6)  # fmt: skip
    # the restored machine goes on exactly like the original
    for machine in (m, restored):
        ended = machine.apply(ExpireSession("s1", 1))
        assert isinstance(ended, SessionEnded) and len(ended.freed) == 3
    assert restored.snapshot() == m.snapshot()


@pytest.mark.parametrize("version, fields", [(1, 8), (2, 9), (3, 10)])
def test_older_snapshot_versions_restore_with_empty_new_state(version: int, fields: int) -> None:
    m = LeaseMachine()
    m.apply(Acquire("db", "a", 10.0, "v", 2.0, request_id="r1"))
    m.apply(Acquire("other", "b", 10.0))
    m.apply(Expire("other", 2))
    v4 = m.snapshot()
    old = msgspec.msgpack.decode(v4)[:fields]
    old[0] = version
    restored = LeaseMachine.restore(msgspec.msgpack.encode(old))
    assert restored.sessions() == [] and restored.groups() == []
    assert restored.shared_names() == [] and restored.list() == m.list()
    if version > 1:
        assert restored.snapshot() == v4
    assert isinstance(restored.apply(OpenSession("w", 1.0)), Session)


# --- properties --------------------------------------------------------------------------------

HOLDERS = ["a", "b", "c"]
NAMES = ["x", "y"]


def draw_command(rnd: random.Random, m: LeaseMachine) -> LeaseCommand:
    """A command whose session ids and tokens mostly name what the machine holds now, so
    that ends, expiries and unblocks are exercised, not refused. (Hypothesis draws one
    ``Random`` per example: a draw per field made the test slow.)"""
    ids = [s.id for s in m.sessions()] + ["s999"]
    grants = [*m.list(), *m.blocks(), *m.sessions(),
              *(p for v in m.shared_names() for p in [*v.holds, *v.blocked])]  # fmt: skip

    def pick(options: list[T]) -> T:
        return options[rnd.randrange(len(options))]

    name, holder, other, id = pick(NAMES), pick(HOLDERS), pick(HOLDERS), pick(ids)
    token = pick([g.token for g in grants] + [999])
    session, request_id = pick([None, id]), pick([None, "r1", "r2"])
    kind: SharedKind = pick(["semaphore", "rwlock"])
    mode: SharedMode = "permit" if kind == "semaphore" else pick(["read", "write"])
    delay, ttl_s = pick([0.0, 1.0]), 0.0 if session else 5.0
    limit = pick([1, 2]) if kind == "semaphore" else 0
    shared, permits = "x", [p for v in m.shared_names() for p in v.holds]
    if permits and rnd.random() < 0.5:  # name a current hold exactly
        p = pick(permits)
        kind, shared, holder, token = p.kind, p.name, p.holder, p.token
    leases = m.list()
    lease = pick(leases) if leases and rnd.random() < 0.5 else Lease(name, holder, token,
                                                                     0, 1, None, 0)
    return pick([
        OpenSession(holder, 5.0, request_id),
        CloseSession(id, holder, request_id),
        ExpireSession(id, token),
        Acquire(name, holder, ttl_s, None, delay, session=session),
        Release(lease.name, lease.holder, lease.token),
        Expire(lease.name, lease.token),
        Unblock(name, token),
        AcquireShared(kind, shared, holder, mode, limit, ttl_s, session, delay, request_id),
        ReleaseShared(kind, shared, holder, token),
        ExpireShared(kind, shared, holder, token),
        UnblockShared(kind, shared, token),
        CreateGroup(name, holder),
        DeleteGroup(name, holder),
        JoinGroup(name, other, holder, b"c", id),
        LeaveGroup(name, other, holder),
        UpdateCapabilities(name, other, holder, pick([b"", b"cc"])),
    ])


def check(m: LeaseMachine) -> None:
    """The invariants of spec §1 from the queries alone."""
    shared = m.shared_names()
    permits = [p for view in shared for p in view.holds]
    members = [mb for g in m.groups() if (group := m.group(g)) for mb in group.members]
    assert m.holds() == len(m.list()) + len(permits) + len(members)
    for view in shared:
        modes = [p.mode for p in view.holds]
        if view.kind == "semaphore":
            assert len(view.holds) + len(view.blocked) <= view.limit
        else:
            assert "write" not in modes or len(modes) + len(view.blocked) == 1
        assert [p.token for p in view.holds] == sorted(p.token for p in view.holds)
    open_ids = {s.id for s in m.sessions()}
    bound = [h.session for h in [*m.list(), *permits] if h.session] + [mb.session for mb in members]
    assert set(bound) <= open_ids, "no hold outlives its session"
    assert sum(len(m.bound(id)) for id in open_ids) == len(bound)


@settings(max_examples=100, deadline=None)
@given(st.randoms(use_true_random=False))
def test_random_sequences_keep_the_invariants_and_snapshots_round_trip(
    rnd: random.Random,
) -> None:
    m = LeaseMachine()
    last_token = 0
    for _ in range(rnd.randrange(60)):
        command = draw_command(rnd, m)
        revision = m.revision
        result: Result = m.apply(command)
        assert m.revision in (revision, revision + 1), "one apply raises the revision once"
        if isinstance(result, GRANTS) and result.token > revision:
            assert result.token == m.revision > last_token
            last_token = result.token
        check(m)
    snapshot = m.snapshot()
    assert LeaseMachine.restore(snapshot).snapshot() == snapshot
