"""Groups of the state machine (DESIGN.md §7): named sets of members, each bound to a session.

A membership is a grant: its token is the revision its join raised; an update of its
capabilities raises its ``revision`` but keeps the token. A group's ``revision`` is that of
its last change (create, join, leave, update, a member freed by its session's end), which is
what an observer of the group waits on. Rules written down:

- Groups belong to nobody: any principal may create or delete one (``exists``,
  ``not_found``, ``not_empty``). A member belongs to the principal that joined it: leave and
  update by another principal are ``forbidden``. A member is bound to a session of its own
  principal; the member name, not the holder, says who it is.
- Deleting a group leaves the lease of its leader election (``group:<g>``) alone.
- Capabilities count towards ``Ledger.value_bytes`` and a member towards its owner's holds.
"""

from __future__ import annotations

import msgspec

from paxlock.coordinator.core.coord_commands import (
    CreateGroup,
    DeleteGroup,
    Group,
    GroupDeleted,
    JoinGroup,
    LeaveGroup,
    Left,
    Member,
    Session,
    UpdateCapabilities,
)
from paxlock.coordinator.core.lease_commands import Refused
from paxlock.coordinator.core.ledger import Ledger
from paxlock.coordinator.core.sessions import BoundHold, Sessions


class Groups:
    def __init__(self, ledger: Ledger, sessions: Sessions) -> None:
        self._ledger = ledger
        self._sessions = sessions
        self._groups: dict[str, dict[str, Member]] = {}
        self._revisions: dict[str, int] = {}
        """Group -> the revision of its last change."""

    # -- queries --------------------------------------------------------------------------

    def get(self, name: str) -> Group | None:
        members = self._groups.get(name)
        if members is None:
            return None
        return Group(name, self._revisions[name], tuple(members[m] for m in sorted(members)))

    def names(self) -> list[str]:
        return sorted(self._groups)

    def member(self, group: str, member: str) -> Member | None:
        return self._groups.get(group, {}).get(member)

    def holds(self) -> int:
        return sum(map(len, self._groups.values()))

    # -- changes --------------------------------------------------------------------------

    def create(self, command: CreateGroup) -> Group | Refused:
        if command.group in self._groups:
            return Refused("exists", command.group, message=f"group {command.group} exists")
        revision = self._ledger.bump()
        self._groups[command.group] = {}
        self._revisions[command.group] = revision
        return Group(command.group, revision)

    def delete(self, command: DeleteGroup) -> GroupDeleted | Refused:
        members = self._groups.get(command.group)
        if members is None:
            return self._no_group(command.group)
        if members:
            count = f"{len(members)} member" + ("s" if len(members) > 1 else "")
            return Refused("not_empty", command.group,
                           message=f"group {command.group} has {count}")
        del self._groups[command.group], self._revisions[command.group]
        return GroupDeleted(command.group, self._ledger.bump())

    def join(self, command: JoinGroup, session: Session) -> Member | Refused:
        """``session`` was checked by the caller (``Sessions.binding``); the group first."""
        members = self._groups[command.group]
        if command.member in members:
            return Refused("exists", command.group, message=f"{command.member} is already a "
                           f"member of {command.group}")  # fmt: skip
        token = self._ledger.grant()
        member = Member(command.group, command.member, command.capabilities, session.id,
                        token, token, command.principal)  # fmt: skip
        members[command.member] = member
        self._revisions[command.group] = token
        self._ledger.add_hold(member.owner, len(member.capabilities))
        self._sessions.bind(session.id, token, ("member", command.group, command.member))
        return member

    def leave(self, command: LeaveGroup) -> Left | Refused:
        member = self._matching(command)
        if isinstance(member, Refused):
            return member
        self._sessions.unbind(member.session, member.token)
        revision = self._ledger.bump()
        self.free(command.group, command.member, revision)
        return Left(command.group, command.member, member.token, revision)

    def update(self, command: UpdateCapabilities) -> Member | Refused:
        member = self._matching(command)
        if isinstance(member, Refused):
            return member
        revision = self._ledger.bump()
        updated = msgspec.structs.replace(member, capabilities=command.capabilities,
                                          revision=revision)  # fmt: skip
        self._groups[command.group][command.member] = updated
        self._revisions[command.group] = revision
        self._ledger.resize(len(member.capabilities), len(updated.capabilities))
        return updated

    def free(self, group: str, member: str, revision: int) -> None:
        """Remove a member at ``revision`` (raised by the caller, who unbound it)."""
        gone = self._groups[group].pop(member)
        self._ledger.drop_hold(gone.owner, len(gone.capabilities))
        assert gone.token <= revision and self._revisions[group] <= revision
        self._revisions[group] = revision

    def missing(self, group: str) -> Refused | None:
        return None if group in self._groups else self._no_group(group)

    def _no_group(self, group: str) -> Refused:
        return Refused("not_found", group, message=f"no group {group}")

    def _matching(self, command: LeaveGroup | UpdateCapabilities) -> Member | Refused:
        members = self._groups.get(command.group)
        if members is None:
            return self._no_group(command.group)
        member = members.get(command.member)
        if member is None:
            return Refused("not_member", command.group, message=f"{command.member} is not a "
                           f"member of {command.group}")  # fmt: skip
        if member.owner != command.principal:
            return Refused("forbidden", command.group, message=f"member {command.member} "
                           "belongs to another principal")  # fmt: skip
        return member

    # -- snapshots ------------------------------------------------------------------------

    def snapshot(self) -> tuple[Group, ...]:
        return tuple(group for name in self.names() if (group := self.get(name)) is not None)

    def restore(self, groups: tuple[Group, ...]) -> None:
        for group in groups:
            assert group.name not in self._groups, group.name
            self._groups[group.name] = {m.member: m for m in group.members}
            self._revisions[group.name] = group.revision
            for m in group.members:
                assert m.group == group.name and m.token <= m.revision <= group.revision
                self._ledger.add_hold(m.owner, len(m.capabilities))

    def bound(self) -> list[tuple[str, int, BoundHold]]:
        """Every membership as (session, token, ("member", group, member))."""
        return [(m.session, m.token, ("member", m.group, m.member))
                for members in self._groups.values() for m in members.values()]  # fmt: skip
