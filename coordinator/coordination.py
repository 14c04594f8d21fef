"""``Coordination``: sessions, semaphores, read/write locks and groups at the asyncio edge
(DESIGN.md §7), beside the leases of ``service.LeaseService``, whose request path it shares.

Like the lease service it only turns requests into replica ops (``CommandOp`` and the
renewal ops) and replies into views or typed errors. These requests are never relayed over
the peer channel: a follower raises ``NotPrimary`` and the HTTP edge forwards them.
Reads are linearizable (the lease service's read barrier) unless ``consistent=False``.

A group's leader is an election on the reserved lease name ``group:<group>`` (``:`` is not
in a client's name pattern, so no one reaches it through ``/v1/elections``): its campaign,
renewal, proclaim and resign are the lease service's own operations on that name.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from paxlock.coordinator.core.coord_commands import (
    AcquireShared, CloseSession, CreateGroup, DeleteGroup, Freed, Group, GroupDeleted,
    JoinGroup, LeaveGroup, Left, Member, OpenSession, Permit, ReleaseShared, Session,
    SessionEnded, SharedKind, SharedName, SharedReleased, UpdateCapabilities,
)  # fmt: skip
from paxlock.coordinator.core.keeper_effects import Reply
from paxlock.coordinator.core.lease_commands import Refused
from paxlock.coordinator.core.replica_io import (
    Applied, CommandOp, RenewSessionOp, RenewSharedOp, RequestOp,
)  # fmt: skip
from paxlock.coordinator.errors import (
    Exists, LimitMismatch, NotEmpty, NotFound, NotMember, Unavailable,
)  # fmt: skip
from paxlock.coordinator.group_watch import GroupEvents
from paxlock.coordinator.views import (
    GroupChanges, GroupEvent, GroupView, HoldView, LeaseView, MemberView, PermitView,
    SessionView, SharedHolderView, SharedView,
)  # fmt: skip

if TYPE_CHECKING:
    from paxlock.coordinator.service import LeaseService

LEADER_PREFIX = "group:"
"""The lease name of group G's leader election is ``group:G``."""


def leader_name(group: str) -> str:
    return f"{LEADER_PREFIX}{group}"


class Coordination:
    """See the module docstring; ``LeaseService.coordination`` is the one of a node."""

    def __init__(self, service: LeaseService) -> None:
        self.leases = service
        self.replica = service.replica
        self.clock = service.clock
        self.group_events = GroupEvents(self._group_now, self._revision, self.clock)
        self._started = False

    def _revision(self) -> int:
        return self.replica.machine.revision  # read each time: a snapshot install replaces it

    # -- what each replica step applied ------------------------------------------------------

    def on_applied(self, applied: Applied) -> None:
        """Feed the group histories (and nothing else: lease watches are the service's)."""
        if not applied.changed:
            return
        result, command = applied.result, applied.command
        match result:
            case Group(name=name, revision=revision) if isinstance(command, CreateGroup):
                self.group_events.record(name, GroupEvent("created", None, revision))
            case GroupDeleted(name=name, revision=revision):
                self.group_events.record(name, GroupEvent("deleted", None, revision))
            case Member(group=group, member=member, revision=revision):
                kind = "joined" if isinstance(command, JoinGroup) else "updated"
                self.group_events.record(group, GroupEvent(kind, member, revision))
            case Left(group=group, member=member, revision=revision):
                self.group_events.record(group, GroupEvent("left", member, revision))
            case SessionEnded(freed=freed, revision=revision):
                for hold in freed:
                    if hold.kind == "member":
                        self.group_events.record(hold.name,
                                                 GroupEvent("left", hold.holder, revision))
            case _:
                pass

    def on_ready_done(self, installed: bool) -> None:
        """After a step's applied results: the first step (the start) and a snapshot install
        leave a gap before the histories."""
        if not self._started:
            self._started = True
            self.group_events.started()
        elif installed:
            self.group_events.reread_all()

    # -- sessions --------------------------------------------------------------------------

    async def open_session(self, *, holder: str, ttl: float, request_id: str | None = None,
                           principal: str = "") -> SessionView:  # fmt: skip
        reply = await self._ask(CommandOp(OpenSession(holder, ttl, request_id, principal)))
        return self._session_or_raise(reply)

    async def renew_session(self, session_id: str, *, holder: str,
                            principal: str = "") -> SessionView:  # fmt: skip
        return self._session_or_raise(
            await self._ask(RenewSessionOp(session_id, holder, principal)))

    async def close_session(self, session_id: str, *, holder: str,
                            request_id: str | None = None,
                            principal: str = "") -> tuple[HoldView, ...]:  # fmt: skip
        """End the session and everything bound to it; what that freed."""
        command = CloseSession(session_id, holder, request_id, principal)
        outcome = self._outcome(await self._ask(CommandOp(command)))
        if not isinstance(outcome, SessionEnded):
            raise Unavailable(f"unexpected outcome closing {session_id}: {outcome!r:.200}")
        return tuple(_hold(freed) for freed in outcome.freed)

    async def get_session(self, session_id: str, *, consistent: bool = True) -> SessionView:
        await self.leases.read_barrier(consistent)
        session = self.replica.machine.session(session_id)
        if session is None:
            raise NotFound(f"no session {session_id}")
        holds = tuple(_hold(freed) for freed in self.replica.machine.bound(session_id))
        return self._session_view(session, None, holds)

    async def list_sessions(self, holder: str | None = None, *,
                            consistent: bool = True) -> list[SessionView]:  # fmt: skip
        await self.leases.read_barrier(consistent)
        return [self._session_view(s) for s in self.replica.machine.sessions(holder)]

    def _session_or_raise(self, reply: Reply) -> SessionView:
        outcome = self._outcome(reply)
        if not isinstance(outcome, Session):
            raise Unavailable(f"unexpected outcome for a session: {outcome!r:.200}")
        return self._session_view(outcome, reply.expires_in_s)

    def _session_view(self, session: Session, expires_in: float | None = None,
                      holds: tuple[HoldView, ...] | None = None) -> SessionView:  # fmt: skip
        if expires_in is None:
            expires_in = self.replica.session_expires_in(session.id, self.clock())
        return SessionView(session.id, session.holder, session.ttl_s, session.token,
                           session.revision, expires_in, holds)  # fmt: skip

    # -- semaphores and read/write locks ---------------------------------------------------

    async def acquire_shared(self, kind: SharedKind, name: str, *, holder: str, mode: str,
                             limit: int = 0, ttl: float | None = None,
                             session: str | None = None, wait: float = 0.0,
                             lock_delay: float = 0.0, request_id: str | None = None,
                             principal: str = "") -> PermitView:  # fmt: skip
        """A permit (``mode`` "permit", ``limit``) or a read/write hold, with its own
        ``ttl`` or bound to ``session``; waits FIFO up to ``wait`` s, then ``Held``."""
        assert mode in ("permit", "read", "write"), mode
        command = AcquireShared(kind, name, holder, mode, limit,  # type: ignore[arg-type]
                                ttl or 0.0, session, lock_delay, request_id, principal)
        waiting = self.leases.waiting.waiting(f"{kind}:{name}")  # ":" keeps it apart
        with waiting if wait > 0 else contextlib.nullcontext():
            reply = await self._ask(CommandOp(command, wait))
        return self._permit_or_raise(kind, name, reply)

    async def renew_shared(self, kind: SharedKind, name: str, *, holder: str, token: int,
                           principal: str = "") -> PermitView:  # fmt: skip
        reply = await self._ask(RenewSharedOp(kind, name, holder, token, principal))
        return self._permit_or_raise(kind, name, reply)

    async def release_shared(self, kind: SharedKind, name: str, *, holder: str, token: int,
                             request_id: str | None = None,
                             principal: str = "") -> None:  # fmt: skip
        command = ReleaseShared(kind, name, holder, token, request_id, principal)
        outcome = self._outcome(await self._ask(CommandOp(command)), kind)
        if not isinstance(outcome, SharedReleased):
            raise Unavailable(f"unexpected outcome releasing {name}: {outcome!r:.200}")

    async def verify_shared(self, kind: SharedKind, name: str, *,
                            token: int) -> tuple[bool, int | None]:  # fmt: skip
        """Whether ``token`` is a current hold of ``name`` (one of several, for a semaphore
        or readers), and ``token`` again when it is, else the newest current one or None."""
        await self.leases.read_barrier(True)
        current, current_token = self.replica.machine.verify_shared(kind, name, token)
        return current, current_token

    async def get_shared(self, kind: SharedKind, name: str, *,
                         consistent: bool = True) -> SharedView:  # fmt: skip
        await self.leases.read_barrier(consistent)
        shared = self.replica.machine.shared(kind, name)
        if shared is None:
            raise NotFound(f"no {kind} {name} is held")
        return self._shared_view(shared)

    async def list_shared(self, kind: SharedKind, prefix: str = "", *,
                          consistent: bool = True) -> list[SharedView]:  # fmt: skip
        await self.leases.read_barrier(consistent)
        return [self._shared_view(s) for s in self.replica.machine.shared_list(kind, prefix)]

    def _permit_or_raise(self, kind: SharedKind, name: str, reply: Reply) -> PermitView:
        outcome = self._outcome(reply, kind)
        if not isinstance(outcome, Permit):
            raise Unavailable(f"unexpected outcome for {kind} {name}: {outcome!r:.200}")
        expires_in = reply.expires_in_s
        if expires_in is None:
            expires_in = self._shared_expires_in(kind, name, outcome.holder, outcome.session)
        return PermitView(kind, outcome.name, outcome.holder, outcome.mode, outcome.token,
                          outcome.revision, outcome.limit, outcome.ttl_s, expires_in,
                          outcome.session, outcome.lock_delay_s, outcome.holders)  # fmt: skip

    def _shared_expires_in(self, kind: SharedKind, name: str, holder: str,
                           session: str | None) -> float | None:  # fmt: skip
        now = self.clock()
        if session is not None:
            return self.replica.session_expires_in(session, now)
        return self.replica.shared_expires_in(kind, name, holder, now)

    def _shared_view(self, shared: SharedName) -> SharedView:
        holders = tuple(
            SharedHolderView(hold.holder, hold.mode, hold.token,
                             self._shared_expires_in(shared.kind, shared.name, hold.holder,
                                                     hold.session), hold.session)
            for hold in shared.holds
        )  # fmt: skip
        revision = max([h.revision for h in shared.holds] + [b.revision for b in shared.blocked],
                       default=0)  # fmt: skip
        return SharedView(shared.kind, shared.name, shared.limit, revision, holders,
                          len(shared.blocked))  # fmt: skip

    # -- groups ----------------------------------------------------------------------------

    async def create_group(self, group: str, *, holder: str, request_id: str | None = None,
                           principal: str = "") -> GroupView:  # fmt: skip
        outcome = self._outcome(
            await self._ask(CommandOp(CreateGroup(group, holder, request_id, principal))))
        if not isinstance(outcome, Group):
            raise Unavailable(f"unexpected outcome creating {group}: {outcome!r:.200}")
        return _group_view(outcome)

    async def delete_group(self, group: str, *, holder: str, request_id: str | None = None,
                           principal: str = "") -> None:  # fmt: skip
        outcome = self._outcome(
            await self._ask(CommandOp(DeleteGroup(group, holder, request_id, principal))))
        if not isinstance(outcome, GroupDeleted):
            raise Unavailable(f"unexpected outcome deleting {group}: {outcome!r:.200}")

    async def join_group(self, group: str, member: str, *, session: str,
                         capabilities: bytes = b"", holder: str | None = None,
                         request_id: str | None = None,
                         principal: str = "") -> MemberView:  # fmt: skip
        command = JoinGroup(group, member, holder or member, capabilities, session,
                            request_id, principal)  # fmt: skip
        return self._member_or_raise(group, await self._ask(CommandOp(command)))

    async def leave_group(self, group: str, member: str, *, holder: str | None = None,
                          request_id: str | None = None, principal: str = "") -> None:  # fmt: skip
        command = LeaveGroup(group, member, holder or member, request_id, principal)
        outcome = self._outcome(await self._ask(CommandOp(command)))
        if not isinstance(outcome, Left):
            raise Unavailable(f"unexpected outcome leaving {group}: {outcome!r:.200}")

    async def update_capabilities(self, group: str, member: str, *, capabilities: bytes,
                                  holder: str | None = None, request_id: str | None = None,
                                  principal: str = "") -> MemberView:  # fmt: skip
        command = UpdateCapabilities(group, member, holder or member, capabilities,
                                     request_id, principal)  # fmt: skip
        return self._member_or_raise(group, await self._ask(CommandOp(command)))

    async def groups(self, *, consistent: bool = True) -> list[str]:
        await self.leases.read_barrier(consistent)
        return self.replica.machine.groups()

    async def get_group(self, group: str, *, consistent: bool = True) -> GroupView:
        await self.leases.read_barrier(consistent)
        view = self._group_now(group)
        if view is None:
            raise NotFound(f"no group {group}")
        return view

    async def member(self, group: str, member: str, *, consistent: bool = True) -> MemberView:
        view = await self.get_group(group, consistent=consistent)
        for found in view.members:
            if found.member == member:
                return found
        raise NotMember(f"{member} is not a member of {group}", group=group, member=member)

    async def observe_group(self, group: str, *, after: int,
                            timeout: float) -> GroupChanges | None:  # fmt: skip
        """The events of ``group`` after revision ``after`` and its members now, once there
        are any (None after ``timeout``), from this node's applied log (no forwarding)."""
        if not self.group_events.known(group):
            raise NotFound(f"no group {group}")
        return await self.group_events.observe(group, after=after, timeout=timeout)

    async def group_leader(self, group: str, *, consistent: bool = True) -> LeaseView:
        """The leader of ``group`` (``holder`` None when nobody leads, with the revision of
        the election's last change); ``NotFound`` without the group."""
        await self.leases.read_barrier(consistent)
        if self.replica.machine.group(group) is None:
            raise NotFound(f"no group {group}")
        return self.leases.watches.state(leader_name(group))

    def _group_now(self, group: str) -> GroupView | None:
        found = self.replica.machine.group(group)
        return None if found is None else _group_view(found)

    def _member_or_raise(self, group: str, reply: Reply) -> MemberView:
        outcome = self._outcome(reply)
        if not isinstance(outcome, Member):
            raise Unavailable(f"unexpected outcome for a member of {group}: {outcome!r:.200}")
        return _member_view(outcome)

    # -- requests --------------------------------------------------------------------------

    async def _ask(self, op: RequestOp) -> Reply:
        return await self.leases.ask(op)

    def _outcome(self, reply: Reply, kind: SharedKind | None = None) -> object:
        """The reply's outcome, or its refusal raised as the typed error."""
        outcome = reply.outcome
        if isinstance(outcome, Refused):
            self._raise_refused(outcome, kind)
        return outcome

    def _raise_refused(self, refused: Refused, kind: SharedKind | None) -> None:
        code, name = refused.code, refused.name
        what = f"{kind} {name}" if kind is not None else name
        if code == "not_found":
            raise NotFound(refused.message or f"no such session or group: {name}")
        if code == "not_member":
            raise NotMember(refused.message or f"not a member of {name}", group=name,
                            member=refused.holder)  # fmt: skip
        if code == "exists":
            raise Exists(refused.message or f"{name} exists already")
        if code == "not_empty":
            raise NotEmpty(refused.message or f"group {name} has members")
        if code == "limit_mismatch":
            shared = self.replica.machine.shared(kind, name) if kind is not None else None
            raise LimitMismatch(refused.message or f"{what} has another limit",
                                limit=shared.limit if shared is not None else None)  # fmt: skip
        expires_in = None
        if code == "held" and kind is not None and refused.holder is not None:
            expires_in = self.replica.shared_expires_in(kind, name, refused.holder, self.clock())
        self.leases.raise_refused(refused, expires_in)


def _hold(freed: Freed) -> HoldView:
    return HoldView(freed.kind, freed.name, freed.holder, freed.token)


def _member_view(member: Member) -> MemberView:
    return MemberView(member.group, member.member, member.capabilities, member.session,
                      member.token, member.revision)  # fmt: skip


def _group_view(group: Group) -> GroupView:
    return GroupView(group.name, group.revision, tuple(_member_view(m) for m in group.members))
