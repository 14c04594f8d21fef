"""The lease state machine (DESIGN.md §3, §7): applied identically on every node, in slot
order. Leases live here; sessions, shared names (semaphores, read/write locks) and groups in
the sub-machines ``sessions``, ``shared`` and ``groups``, which share one ``Ledger`` (the
revision, the last token and the counts for the limits) and are driven from ``apply``.

It never reads a clock: expiry is a command (``Expire``) proposed by the primary's timer, so
every node agrees on *when* in the log a lease ended. Decisions written down here:

- **Revision.** One cluster-wide counter, raised by every change of a lease object: a grant,
  a proclaim, a release, an expiry. A grant's fencing token is the revision it raised, so
  tokens strictly increase across the cluster. ``Unblock`` does *not* raise it: the end of a
  lock-delay changes no lease object (the name was already free of any holder since the
  expiry, which did raise it), so observers are not woken by a change they cannot see.
- **Idempotency window** (``window``). A client command with a ``request_id`` has its first
  result remembered under ``(principal, holder, request_id)``; applying an equal command
  again returns that result unchanged, whatever happened since. One principal's flood evicts
  its own results, never another principal's. A different command under a remembered key is
  refused with ``bad_request`` rather than answered with another command's result. (Without
  ``--auth`` every client is the one principal ``""``: the total bound is then shared.)
- **Ownership.** A grant records the principal that took it (``Lease.owner``). A Release or
  Proclaim whose holder and token name the current grant but whose principal is another is
  ``forbidden``; one that names no current grant stays ``not_holder`` (so a holder that
  lost its lease learns that, whoever holds the name now).
- **Counts for the limits.** Holds per owner and the total bytes of values are kept up to
  date here, but no limit is enforced here: the primary's keeper checks them when it admits
  a request, before proposing. A limit in ``apply`` would make replicas started with
  different flags diverge; at admission a flag changes only what one primary accepts.
- **Not reentrant.** An acquire by the current holder that is not a replay is ``held``.
- **Lock-delay** follows an expiry only, never a release, and answers acquires ``held``.
- **Office.** The machine keeps the ballot of the latest applied ``Office`` entry (the
  highest: a ghost office entry of a lower ballot changes nothing). A primary decision
  (``Expire``, ``Unblock``, ``ExpireSession``, ``ExpireShared``, ``UnblockShared``) stamped with a lower ballot is ``Ignored(deposed=True)``: a
  deposed primary's minority-accepted proposal, recovered later by P2c(b), must not end a
  lease its successor has since renewed (DESIGN.md §2).
- **Sessions.** A hold bound to a session (``Acquire.session`` …) has no timer and takes
  the session's ttl; an unknown session is ``not_found``, another principal's ``forbidden``.
  ``CloseSession``/``ExpireSession`` end every bound hold in one apply that raises the
  revision once; expiry leaves lock-delay blocks like ``Expire``, close does not. An
  ``Expire``/``ExpireShared`` naming a bound hold is Ignored (no timer can have sent it).
- **Group leaders.** ``Acquire`` of ``group:<g>`` is ``not_found`` while group g does not
  exist; membership is not required.
- **Determinism.** Snapshots list leases and blocks sorted by name and the window in
  insertion order; nothing is ever produced by iterating a set or a hash-ordered structure.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from typing import assert_never

from paxlock.coordinator.core.ballot import ZERO_BALLOT, Ballot
from paxlock.coordinator.core.command_parts import group_of
from paxlock.coordinator.core.coord_commands import (
    AcquireShared,
    CloseSession,
    CreateGroup,
    DeleteGroup,
    ExpireSession,
    ExpireShared,
    Freed,
    Group,
    JoinGroup,
    LeaveGroup,
    OpenSession,
    ReleaseShared,
    Session,
    SessionEnded,
    SharedKind,
    SharedName,
    UnblockShared,
    UpdateCapabilities,
    session_id,
)
from paxlock.coordinator.core.groups import Groups
from paxlock.coordinator.core.lease_commands import (
    Acquire,
    AnyClientCommand,
    Block,
    Expire,
    Ignored,
    InOffice,
    Lease,
    LeaseCommand,
    Office,
    PrimaryDecision,
    Proclaim,
    Refused,
    Release,
    Result,
    Unblock,
    Verification,
    invalid_reason,
    subject_of,
)
from paxlock.coordinator.core.lease_table import LeaseTable
from paxlock.coordinator.core.ledger import Ledger
from paxlock.coordinator.core.machine_snapshot import (
    SNAPSHOT_VERSION,
    Snapshot,
    decode_snapshot,
    encode_snapshot,
)
from paxlock.coordinator.core.sessions import BoundHold, Sessions
from paxlock.coordinator.core.shared import SharedNames
from paxlock.coordinator.core.window import WINDOW_PER_HOLDER, WINDOW_TOTAL, Window


class LeaseMachine:
    """Leases, lock-delay blocks, sessions, shared names, groups, the revision counter and
    the idempotency window."""

    def __init__(
        self,
        *,
        window_per_holder: int = WINDOW_PER_HOLDER,
        window_total: int = WINDOW_TOTAL,
    ) -> None:
        """The window sizes must be equal on every node (they are part of the snapshot)."""
        self._window = Window(window_per_holder, window_total)
        self._ledger = Ledger()
        self._office = ZERO_BALLOT
        self._sessions = Sessions()
        self._leases = LeaseTable(self._ledger, self._sessions)
        self._shared = SharedNames(self._ledger, self._sessions)
        self._groups = Groups(self._ledger, self._sessions)

    # -- queries ------------------------------------------------------------------------------

    @property
    def window_per_holder(self) -> int:
        return self._window.per_holder

    @property
    def window_total(self) -> int:
        return self._window.total

    @property
    def revision(self) -> int:
        return self._ledger.revision

    @property
    def office(self) -> Ballot:
        """The ballot of the latest applied ``Office`` entry: the one that governs now."""
        return self._office

    def get(self, name: str) -> Lease | None:
        return self._leases.get(name)

    def blocked(self, name: str) -> Block | None:
        """The lock-delay block on ``name``, if the name is waiting for an ``Unblock``."""
        return self._leases.blocked(name)

    def list(self, prefix: str = "") -> list[Lease]:
        """Current leases whose name starts with ``prefix``, sorted by name."""
        return self._leases.listing(prefix)

    def leases(self) -> Iterator[Lease]:
        """Every current lease, unsorted: in the order of the grants since the machine was
        made or restored (so the same on every run of the same history, never by hash)."""
        return self._leases.leases()

    def blocks(self) -> builtins.list[Block]:
        """Every name in lock-delay, sorted by name."""
        return self._leases.blocks()

    def holds(self) -> int:
        """Current leases, permits, read/write holds and memberships."""
        return self._ledger.holds()

    def holds_of(self, principal: str) -> int:
        """Current leases, permits, read/write holds and memberships owned by ``principal``."""
        return self._ledger.holds_by_owner.get(principal, 0)

    def value_bytes(self) -> int:
        """Total bytes of the values of current leases and the capabilities of members."""
        return self._ledger.value_bytes

    def verify(self, name: str, token: int) -> Verification:
        return self._leases.verify(name, token)

    def session(self, id: str) -> Session | None:
        return self._sessions.get(id)

    def sessions(self, holder: str | None = None) -> builtins.list[Session]:
        """Open sessions (of ``holder`` when given), in token order."""
        return self._sessions.listing(holder)

    def bound(self, id: str) -> builtins.list[Freed]:
        """What session ``id`` holds, in token order (``blocked`` false; [] when none)."""
        return self._sessions.bound(id)

    def shared(self, kind: SharedKind, name: str) -> SharedName | None:
        return self._shared.get(kind, name)

    def shared_list(self, kind: SharedKind, prefix: str = "") -> builtins.list[SharedName]:
        """Shared names of ``kind`` starting with ``prefix``, sorted by name."""
        return self._shared.listing(kind, prefix)

    def shared_names(self) -> builtins.list[SharedName]:
        """Every shared name of both kinds, sorted by (kind, name)."""
        return self._shared.listing()

    def verify_shared(self, kind: SharedKind, name: str, token: int) -> Verification:
        return self._shared.verify(kind, name, token)

    def shared_refusal(self, command: AcquireShared) -> Refused | None:
        """What applying ``command`` now would refuse, or None: it would be granted (or
        answered from the window). For the keeper's waiters; changes nothing."""
        reason = invalid_reason(command)
        if reason is not None:
            return Refused("bad_request", command.name, message=reason)
        if command.session is not None:
            binding = self._sessions.binding(command.session, command.principal, command.name)
            if isinstance(binding, Refused):
                return binding
        return self._shared.refusal(command)

    def group(self, name: str) -> Group | None:
        return self._groups.get(name)

    def groups(self) -> builtins.list[str]:
        return self._groups.names()

    def replay(self, command: AnyClientCommand) -> Result | None:
        """What the window answers for ``command`` without applying it (None: not in it).

        Lets the primary answer a retry of an already-applied command without a log write;
        a remembered result is a past fact, so returning it is always linearizable.
        """
        if command.request_id is None:
            return None
        entry = self._window.get(command)
        if entry is None:
            if self._window.evicted(command):
                return Refused("request_expired", subject_of(command),
                               message="the result of this request_id is no longer kept: "
                                       "read the current state before acting again")  # fmt: skip
            return None
        if entry.command != command:
            return Refused(
                "bad_request",
                subject_of(command),
                message="request_id was already used for a different request",
            )
        return entry.result

    def window_size(self) -> int:
        return len(self._window)

    # -- apply --------------------------------------------------------------------------------

    def apply(self, command: LeaseCommand) -> Result:
        """Apply one chosen command; the same sequence yields the same results everywhere."""
        if isinstance(command, Office):
            return self._take_office(command)
        reason = invalid_reason(command)
        if reason is not None:
            return Refused("bad_request", subject_of(command), message=reason)
        match command:
            case Expire() | Unblock() | ExpireSession() | ExpireShared() | UnblockShared():
                if self._deposed(command):
                    return Ignored(subject_of(command), command.token, deposed=True)
                return self._decide(command)
            case _:
                replayed = self.replay(command)
                if replayed is not None:
                    return replayed
                result = self._apply_client(command)
                if command.request_id is not None:
                    self._window.remember(command, result)
                return result

    def _take_office(self, command: Office) -> InOffice:
        if command.ballot <= self._office:
            return InOffice(command.ballot, current=False)
        self._office = command.ballot
        return InOffice(command.ballot, current=True)

    def _deposed(self, decision: PrimaryDecision) -> bool:
        """A decision from under a ballot older than the one in office is a ghost."""
        return decision.ballot < self._office

    def _decide(self, command: PrimaryDecision) -> Result:
        match command:
            case Expire():
                return self._leases.expire(command)
            case Unblock():
                return self._leases.unblock(command)
            case ExpireSession():
                session = self._sessions.get(command.id)
                if session is None or session.token != command.token:
                    return Ignored(command.id, command.token)
                return self._end_session(session, expired=True)
            case ExpireShared():
                return self._shared.expire(command)
            case UnblockShared():
                return self._shared.unblock(command)
            case _:
                assert_never(command)

    def _apply_client(self, command: AnyClientCommand) -> Result:
        match command:
            case Acquire():
                return self._acquire(command)
            case Release():
                return self._leases.release(command)
            case Proclaim():
                return self._leases.proclaim(command)
            case OpenSession():
                token = self._ledger.grant()
                session = Session(session_id(token), command.holder, command.ttl_s, token,
                                  token, command.principal)  # fmt: skip
                self._sessions.open(session)
                return session
            case CloseSession():
                return self._close_session(command)
            case AcquireShared():
                if command.session is None:
                    return self._shared.acquire(command, None)
                binding = self._sessions.binding(command.session, command.principal,
                                                 command.name)  # fmt: skip
                if isinstance(binding, Refused):
                    return binding
                return self._shared.acquire(command, binding)
            case ReleaseShared():
                return self._shared.release(command)
            case CreateGroup():
                return self._groups.create(command)
            case DeleteGroup():
                return self._groups.delete(command)
            case JoinGroup():
                missing = self._groups.missing(command.group)
                if missing is not None:
                    return missing
                binding = self._sessions.binding(command.session, command.principal,
                                                 command.group)  # fmt: skip
                if isinstance(binding, Refused):
                    return binding
                return self._groups.join(command, binding)
            case LeaveGroup():
                return self._groups.leave(command)
            case UpdateCapabilities():
                return self._groups.update(command)
            case _:
                assert_never(command)

    # -- sessions -------------------------------------------------------------------------

    def _close_session(self, command: CloseSession) -> SessionEnded | Refused:
        session = self._sessions.get(command.id)
        if session is None:
            return Refused("not_found", command.id, message=f"no session {command.id}")
        if session.holder != command.holder:
            return Refused("not_holder", command.id, session.holder, session.token)
        if session.owner != command.principal:
            return Refused("forbidden", command.id, message=f"session {command.id} belongs "
                           "to another principal")  # fmt: skip
        return self._end_session(session, expired=False)

    def _end_session(self, session: Session, *, expired: bool) -> SessionEnded:
        """One revision for the whole end; holds freed in token order."""
        revision = self._ledger.bump()
        freed = tuple(self._free(token, hold, revision, expired)
                      for token, hold in self._sessions.end(session.id))  # fmt: skip
        assert self._sessions.bound_count(session.id) == 0
        return SessionEnded(session.id, session.holder, session.token, revision, expired, freed)

    def _free(self, token: int, hold: BoundHold, revision: int, expired: bool) -> Freed:
        kind, name, holder = hold
        match kind:
            case "lease":
                blocked = self._leases.free(name, token, revision, expired=expired)
                return Freed(kind, name, holder, token, blocked)
            case "semaphore" | "rwlock":
                blocked = self._shared.free(kind, name, token, revision, expired=expired)
                return Freed(kind, name, holder, token, blocked)
            case "member":
                self._groups.free(name, holder, revision)
                return Freed(kind, name, holder, token)
            case _:
                assert_never(kind)

    def _acquire(self, command: Acquire) -> Lease | Refused:
        session = None
        if command.session is not None:
            binding = self._sessions.binding(command.session, command.principal, command.name)
            if isinstance(binding, Refused):
                return binding
            session = binding
        group = group_of(command.name)
        if group is not None and (missing := self._groups.missing(group)) is not None:
            return Refused("not_found", command.name, message=missing.message)
        return self._leases.acquire(command, session)

    # -- snapshots ------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """msgpack of the whole state (``machine_snapshot``); equal states give equal bytes."""
        return encode_snapshot(
            Snapshot(
                SNAPSHOT_VERSION,
                self._ledger.revision,
                self._ledger.last_token,
                self.window_per_holder,
                self.window_total,
                tuple(self.list()),
                tuple(self.blocks()),
                self._window.entries(),
                self._office,
                self._window.expired(),
                tuple(self._sessions.listing()),
                self._shared.snapshot(),
                self._groups.snapshot(),
            )
        )

    @classmethod
    def restore(cls, data: bytes) -> LeaseMachine:
        snap = decode_snapshot(data)
        machine = cls(window_per_holder=snap.window_per_holder, window_total=snap.window_total)
        machine._ledger.revision = snap.revision
        machine._ledger.last_token = snap.last_token
        machine._office = snap.office
        machine._leases.restore(snap.leases, snap.blocks)
        machine._shared.restore(snap.shared)
        machine._groups.restore(snap.groups)
        machine._sessions.restore(snap.sessions, machine._leases.bound()
                                  + machine._shared.bound() + machine._groups.bound())  # fmt: skip
        machine._window = Window.restore(snap.window_per_holder, snap.window_total,
                                         snap.window, snap.expired)  # fmt: skip
        machine._check_restored(snap)
        return machine

    def _check_restored(self, snap: Snapshot) -> None:
        """Paired assertions: what ``apply`` checks before writing, checked again on reading
        (each sub-machine checks its own part as it restores)."""
        assert len(self._window) == len(snap.window), "one window entry per key"
        assert len(self._sessions) == len(snap.sessions), "one session per id"
        assert self._ledger.last_token <= self._ledger.revision
        for session in snap.sessions:
            assert session.id == session_id(session.token), session
            assert session.token <= session.revision <= self._ledger.revision, session
