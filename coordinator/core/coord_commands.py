"""The commands and results of sessions, semaphores, read/write locks and groups (DESIGN.md §7,
issue 15 spec §1), in the style of ``lease_commands``: frozen, tagged msgspec structs that
travel in the log, one union per role. ``lease_commands`` folds them into ``LeaseCommand``,
``PrimaryDecision`` and ``Result``; the lease's own ``ClientCommand`` stays Acquire | Release |
Proclaim (its members have a lease ``name``), and ``AnyClientCommand`` is every command a
client sends (the idempotency window's).

Decisions the spec left open, written down here:

- A session's ``id`` is ``f"s{token}"``; a command naming an unknown id is ``not_found`` (a
  malformed id too: it cannot name a session).
- A bound hold records its session's ``ttl_s`` in its own ``ttl_s`` (for display only: it has
  no timer); the ``ttl_s`` a bound acquire sends must be a finite number >= 0 and is ignored.
- ``Refused.name`` for these commands is ``subject(command)``: the session id ("" for an
  open), the shared name, or the group (``lease_commands.subject_of`` for any command).

Machine queries (``LeaseMachine``), the spec's names: ``session(id)``, ``sessions(holder)``,
``bound(id)`` (a list of ``Freed``), ``shared(kind, name)``, ``shared_list(kind, prefix)``,
``verify_shared(kind, name, token)``, ``group(name)``, ``groups()``; and beyond the spec
``shared_names()`` (both kinds) and ``shared_refusal(command)`` (what applying an
``AcquireShared`` now would refuse, for the keeper's waiters; changes nothing).
"""

from __future__ import annotations

from typing import Literal, TypeAlias, assert_never

import msgspec

from paxlock.coordinator.core.ballot import ZERO_BALLOT, Ballot
from paxlock.coordinator.core.command_parts import (
    HOLDER_CHARS_MAX,
    NAME_RE,
    REQUEST_ID_CHARS_MAX,
    VALUE_BYTES_MAX,
    Block,
    duration_ok,
    widen,
)

SharedKind: TypeAlias = Literal["semaphore", "rwlock"]
SharedMode: TypeAlias = Literal["permit", "read", "write"]
HoldKind: TypeAlias = Literal["lease", "semaphore", "rwlock", "member"]
SEMAPHORE_LIMIT_MAX = 100_000
CAPABILITIES_BYTES_MAX = VALUE_BYTES_MAX
SESSION_ID_PREFIX = "s"


def session_id(token: int) -> str:
    return f"{SESSION_ID_PREFIX}{token}"


# --- sessions ------------------------------------------------------------------------------


class OpenSession(msgspec.Struct, frozen=True, tag="open_session"):
    """Open a session of ``holder`` that lives ``ttl_s`` past its last renewal."""

    holder: str
    ttl_s: float
    request_id: str | None = None
    principal: str = ""

    def __post_init__(self) -> None:
        widen(self, "ttl_s")


class CloseSession(msgspec.Struct, frozen=True, tag="close_session"):
    """End a session and every hold bound to it, as a release (no lock-delay)."""

    id: str
    holder: str
    request_id: str | None = None
    principal: str = ""


class ExpireSession(msgspec.Struct, frozen=True, tag="expire_session"):
    """The primary's timer for session ``token`` ran out: end it and every bound hold, as an
    expiry (lock-delay applies). Stamped with the office ballot like ``Expire``."""

    id: str
    token: int
    ballot: Ballot = ZERO_BALLOT


class Session(msgspec.Struct, frozen=True, tag="session"):
    id: str
    holder: str
    ttl_s: float
    token: int
    revision: int
    owner: str = ""

    def __post_init__(self) -> None:
        widen(self, "ttl_s")


class Freed(msgspec.Struct, frozen=True):
    """One hold a session's end freed (a member: ``name`` is the group, ``holder`` the
    member); ``blocked`` when lock-delay now holds what it freed."""

    kind: HoldKind
    name: str
    holder: str
    token: int
    blocked: bool = False


class SessionEnded(msgspec.Struct, frozen=True, tag="session_ended"):
    """A session closed (``expired`` false) or expired, with every hold its end freed, in
    token order. One log entry, one revision for all of it."""

    id: str
    holder: str
    token: int
    revision: int
    expired: bool
    freed: tuple[Freed, ...] = ()


# --- semaphores and read/write locks -------------------------------------------------------


class AcquireShared(msgspec.Struct, frozen=True, tag="acquire_shared"):
    """A permit of semaphore ``name`` (mode "permit", ``limit`` 1..100,000) or a read or
    write hold of rwlock ``name`` (``limit`` 0); bound to ``session`` or with its own ttl."""

    kind: SharedKind
    name: str
    holder: str
    mode: SharedMode
    limit: int = 0
    ttl_s: float = 0.0
    session: str | None = None
    lock_delay_s: float = 0.0
    request_id: str | None = None
    principal: str = ""

    def __post_init__(self) -> None:
        widen(self, "ttl_s", "lock_delay_s")


class ReleaseShared(msgspec.Struct, frozen=True, tag="release_shared"):
    kind: SharedKind
    name: str
    holder: str
    token: int
    request_id: str | None = None
    principal: str = ""


class ExpireShared(msgspec.Struct, frozen=True, tag="expire_shared"):
    kind: SharedKind
    name: str
    holder: str
    token: int
    ballot: Ballot = ZERO_BALLOT


class UnblockShared(msgspec.Struct, frozen=True, tag="unblock_shared"):
    kind: SharedKind
    name: str
    token: int
    ballot: Ballot = ZERO_BALLOT


class Permit(msgspec.Struct, frozen=True, tag="permit"):
    """A hold on a shared name. ``holders``: every holder right after this grant, in token
    order (as remembered by the window: a replay answers the grant's own list)."""

    kind: SharedKind
    name: str
    holder: str
    token: int
    revision: int
    mode: SharedMode
    limit: int
    ttl_s: float
    session: str | None
    lock_delay_s: float
    owner: str = ""
    holders: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        widen(self, "ttl_s", "lock_delay_s")


class SharedReleased(msgspec.Struct, frozen=True, tag="shared_released"):
    kind: SharedKind
    name: str
    holder: str
    token: int
    revision: int


class SharedExpired(msgspec.Struct, frozen=True, tag="shared_expired"):
    kind: SharedKind
    name: str
    holder: str
    token: int
    revision: int
    blocked: bool


class SharedUnblocked(msgspec.Struct, frozen=True, tag="shared_unblocked"):
    kind: SharedKind
    name: str
    token: int
    revision: int
    """The cluster revision, unchanged (like ``Unblocked``)."""


class SharedName(msgspec.Struct, frozen=True):
    """A query's view of one shared name: its fixed ``limit`` (0 for an rwlock), its holds
    in token order (``Permit.holders`` is () here) and its lock-delay blocks."""

    kind: SharedKind
    name: str
    limit: int
    holds: tuple[Permit, ...]
    blocked: tuple[Block, ...]


# --- groups --------------------------------------------------------------------------------


class CreateGroup(msgspec.Struct, frozen=True, tag="create_group"):
    group: str
    holder: str
    request_id: str | None = None
    principal: str = ""


class DeleteGroup(msgspec.Struct, frozen=True, tag="delete_group"):
    group: str
    holder: str
    request_id: str | None = None
    principal: str = ""


class JoinGroup(msgspec.Struct, frozen=True, tag="join_group"):
    group: str
    member: str
    holder: str
    capabilities: bytes
    session: str
    request_id: str | None = None
    principal: str = ""


class LeaveGroup(msgspec.Struct, frozen=True, tag="leave_group"):
    group: str
    member: str
    holder: str
    request_id: str | None = None
    principal: str = ""


class UpdateCapabilities(msgspec.Struct, frozen=True, tag="update_capabilities"):
    group: str
    member: str
    holder: str
    capabilities: bytes
    request_id: str | None = None
    principal: str = ""


class Member(msgspec.Struct, frozen=True, tag="member"):
    """A member of a group; ``token`` is its join's revision, ``revision`` its last change."""

    group: str
    member: str
    capabilities: bytes
    session: str
    token: int
    revision: int
    owner: str = ""


class Group(msgspec.Struct, frozen=True, tag="group"):
    """A group; ``revision`` is the revision of its last change (create, join, leave, update),
    ``members`` sorted by member name."""

    name: str
    revision: int
    members: tuple[Member, ...] = ()


class GroupDeleted(msgspec.Struct, frozen=True, tag="group_deleted"):
    name: str
    revision: int


class Left(msgspec.Struct, frozen=True, tag="left"):
    group: str
    member: str
    token: int
    revision: int


# --- unions --------------------------------------------------------------------------------

SessionCommand: TypeAlias = OpenSession | CloseSession
SharedCommand: TypeAlias = AcquireShared | ReleaseShared
GroupCommand: TypeAlias = CreateGroup | DeleteGroup | JoinGroup | LeaveGroup | UpdateCapabilities
CoordClientCommand: TypeAlias = SessionCommand | SharedCommand | GroupCommand
"""Every new command a client sends (each has holder, request_id and principal)."""
CoordDecision: TypeAlias = ExpireSession | ExpireShared | UnblockShared
"""The new primary decisions (each carries its ballot)."""
CoordCommand: TypeAlias = CoordClientCommand | CoordDecision
CoordResult: TypeAlias = (
    Session | SessionEnded | Permit | SharedReleased | SharedExpired | SharedUnblocked
    | Group | GroupDeleted | Member | Left
)


def subject(command: CoordCommand) -> str:
    """What a ``Refused`` or ``Ignored`` answering ``command`` names."""
    match command:
        case OpenSession():
            return ""
        case CloseSession() | ExpireSession():
            return command.id
        case AcquireShared() | ReleaseShared() | ExpireShared() | UnblockShared():
            return command.name
        case CreateGroup() | DeleteGroup() | JoinGroup() | LeaveGroup() | UpdateCapabilities():
            return command.group
        case _:
            assert_never(command)


# --- validation ----------------------------------------------------------------------------


def _client_reason(command: CoordClientCommand) -> str | None:
    if len(command.principal) > HOLDER_CHARS_MAX:
        return f"principal must have at most {HOLDER_CHARS_MAX} characters"
    if not 0 < len(command.holder) <= HOLDER_CHARS_MAX:
        return f"holder must have 1 to {HOLDER_CHARS_MAX} characters"
    if command.request_id is not None and not (
        0 < len(command.request_id) <= REQUEST_ID_CHARS_MAX
    ):
        return f"request_id must have 1 to {REQUEST_ID_CHARS_MAX} characters"
    return None


def _shared_reason(command: AcquireShared) -> str | None:
    if command.kind == "semaphore":
        if command.mode != "permit":
            return "a semaphore is acquired in mode permit"
        if not 1 <= command.limit <= SEMAPHORE_LIMIT_MAX:
            return f"limit must be 1 to {SEMAPHORE_LIMIT_MAX}"
    elif command.mode not in ("read", "write") or command.limit != 0:
        return "a read/write lock is acquired in mode read or write, without a limit"
    if command.session is None:
        if not duration_ok(command.ttl_s, positive=True):
            return "ttl must be a positive finite number of seconds"
    elif not duration_ok(command.ttl_s, positive=False) or not command.session:
        return "a hold bound to a session carries no ttl of its own"
    if not duration_ok(command.lock_delay_s, positive=False):
        return "lock_delay must be a non-negative finite number of seconds"
    return None


def coord_invalid_reason(command: CoordCommand) -> str | None:
    """Why ``command`` is malformed, or None (``lease_commands.invalid_reason`` for these)."""
    if isinstance(command, AcquireShared | ReleaseShared | ExpireShared | UnblockShared):
        if command.kind not in ("semaphore", "rwlock"):
            return "kind must be semaphore or rwlock"
        if NAME_RE.fullmatch(command.name) is None:
            return "name must match [A-Za-z0-9._/-]{1,256}"
    if isinstance(command, CreateGroup | DeleteGroup | JoinGroup | LeaveGroup
                  | UpdateCapabilities) and NAME_RE.fullmatch(command.group) is None:  # fmt: skip
        return "group must match [A-Za-z0-9._/-]{1,256}"
    if isinstance(command, JoinGroup | LeaveGroup | UpdateCapabilities) \
            and NAME_RE.fullmatch(command.member) is None:  # fmt: skip
        return "member must match [A-Za-z0-9._/-]{1,256}"
    if isinstance(command, ExpireSession | ExpireShared | UnblockShared):
        return None
    reason = _client_reason(command)
    if reason is not None:
        return reason
    if isinstance(command, OpenSession) and not duration_ok(command.ttl_s, positive=True):
        return "ttl must be a positive finite number of seconds"
    if isinstance(command, AcquireShared):
        return _shared_reason(command)
    if isinstance(command, JoinGroup | UpdateCapabilities):
        if len(command.capabilities) > CAPABILITIES_BYTES_MAX:
            return f"capabilities must be at most {CAPABILITIES_BYTES_MAX} bytes"
        if isinstance(command, JoinGroup) and not command.session:
            return "a member is bound to a session"
    return None
