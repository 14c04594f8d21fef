"""The commands of the lease state machine and the results it answers with (DESIGN.md §3).

Commands travel inside ``Batch.commands`` of the replicated log, so they are frozen, tagged
msgspec structs: hashable, comparable by value (a retry *is* an equal command) and decodable
from one union type. Results are typed too; the HTTP layer maps them to status codes
(``Lease`` → 200, ``Refused`` → 409 or 400).

Client commands carry the ``principal`` that sent them (the name its bearer token maps to
under ``--auth``, DESIGN.md §8; ``""`` without it, and in entries written before principals
existed, which therefore decode unchanged). A grant records it as the lease's ``owner``.

Durations are seconds as floats. Integer durations are widened to ``float`` on construction
so that two equal commands always encode to the same bytes (snapshots must be byte-exact).
"""

from __future__ import annotations

from typing import Literal, TypeAlias

import msgspec

from paxlock.coordinator.core.ballot import ZERO_BALLOT, Ballot
from paxlock.coordinator.core.command_parts import HOLDER_CHARS_MAX as HOLDER_CHARS_MAX
from paxlock.coordinator.core.command_parts import NAME_RE as NAME_RE
from paxlock.coordinator.core.command_parts import REQUEST_ID_CHARS_MAX as REQUEST_ID_CHARS_MAX
from paxlock.coordinator.core.command_parts import VALUE_BYTES_MAX as VALUE_BYTES_MAX
from paxlock.coordinator.core.command_parts import Block as Block
from paxlock.coordinator.core.command_parts import Verification as Verification
from paxlock.coordinator.core.command_parts import duration_ok, lease_name_ok
from paxlock.coordinator.core.command_parts import widen as _widen
from paxlock.coordinator.core.coord_commands import (
    CoordClientCommand,
    CoordCommand,
    CoordDecision,
    CoordResult,
    coord_invalid_reason,
    subject,
)


# --- commands ------------------------------------------------------------------------------


class Acquire(msgspec.Struct, frozen=True, tag="acquire"):
    """Grant ``name`` to ``holder`` if it is free and not in lock-delay."""

    name: str
    holder: str
    ttl_s: float
    value: str | None = None
    lock_delay_s: float = 0.0
    request_id: str | None = None
    principal: str = ""
    session: str | None = None
    """Bound to this session: ``ttl_s`` (>= 0) is ignored, the lease lives as long as it."""

    def __post_init__(self) -> None:
        _widen(self, "ttl_s", "lock_delay_s")


class Release(msgspec.Struct, frozen=True, tag="release"):
    """End the grant ``token`` of ``holder`` early; never blocks the name (no lock-delay)."""

    name: str
    holder: str
    token: int
    request_id: str | None = None
    principal: str = ""


class Proclaim(msgspec.Struct, frozen=True, tag="proclaim"):
    """Change the value of a held lease (an election's leader announcing a new value)."""

    name: str
    holder: str
    token: int
    value: str | None
    request_id: str | None = None
    principal: str = ""


class Expire(msgspec.Struct, frozen=True, tag="expire"):
    """Proposed by the primary when its timer for grant ``token`` ran out. Only the grant it
    names is ended: a stale Expire (the lease was since released or re-granted) is a no-op.

    ``ballot`` is the ballot the proposing primary was in office under (DESIGN.md §2). P2c(b)
    can bring a deposed primary's Expire into the log long after a successor took office and
    renewed the lease; the machine ignores it once a higher ``Office`` is applied. (Entries
    written before ballots were stamped decode with the zero ballot: ignored once any office
    is applied, and the current primary's timer proposes them again.)"""

    name: str
    token: int
    ballot: Ballot = ZERO_BALLOT


class Unblock(msgspec.Struct, frozen=True, tag="unblock"):
    """Proposed by the primary when the lock-delay after the expiry of ``token`` ran out;
    stamped with its office ballot like ``Expire``, so a ghost cannot end a lock-delay early."""

    name: str
    token: int
    ballot: Ballot = ZERO_BALLOT


class Office(msgspec.Struct, frozen=True, tag="office"):
    """A new primary's first proposal after phase 1 (DESIGN.md §2, like Raft's no-op at the
    start of a term). Its keeper takes office only once this entry is applied, so it has
    applied everything chosen before its ballot — by entries or by a snapshot — and the
    machine learns from it which ballot governs: primary decisions stamped with a lower one
    are no-ops from here on."""

    ballot: Ballot


PrimaryDecision: TypeAlias = Expire | Unblock | CoordDecision
"""Commands a primary proposes from its own timers or memory: each carries its ballot."""
LeaseCommand: TypeAlias = Acquire | Release | Proclaim | Expire | Unblock | Office | CoordCommand
"""Every command of the log (the lease's and those of ``coord_commands``)."""
ClientCommand: TypeAlias = Acquire | Release | Proclaim
"""The lease commands a client sends (each names a lease)."""
AnyClientCommand: TypeAlias = ClientCommand | CoordClientCommand
"""Every command a client sends, and so the ones that may carry a ``request_id``."""


# --- results -------------------------------------------------------------------------------


class Lease(msgspec.Struct, frozen=True, tag="lease"):
    """A current (or, replayed from the idempotency window, a once current) grant.

    ``token`` is the cluster revision at the grant (the fencing token); ``revision`` is the
    revision of the last change to this lease (its grant or its last proclaim).
    """

    name: str
    holder: str
    token: int
    revision: int
    ttl_s: float
    value: str | None
    lock_delay_s: float
    owner: str = ""
    """The principal that took the grant: only it may renew, release or proclaim it."""
    session: str | None = None
    """The session it is bound to (then ``ttl_s`` is the session's and it has no timer)."""

    def __post_init__(self) -> None:
        _widen(self, "ttl_s", "lock_delay_s")


class Released(msgspec.Struct, frozen=True, tag="released"):
    name: str
    token: int
    revision: int


class Expired(msgspec.Struct, frozen=True, tag="expired"):
    """The grant ``token`` ended by expiry; ``blocked`` when lock-delay now holds the name."""

    name: str
    holder: str
    token: int
    revision: int
    blocked: bool


class Unblocked(msgspec.Struct, frozen=True, tag="unblocked"):
    name: str
    token: int
    revision: int
    """The cluster revision, unchanged: an unblock changes no lease object (see ``leases``)."""


ErrorCode: TypeAlias = Literal[
    "held", "not_holder", "bad_request", "request_expired", "forbidden",
    "not_found", "not_member", "exists", "not_empty", "limit_mismatch",
]


class Refused(msgspec.Struct, frozen=True, tag="refused"):
    """The command changed nothing.

    ``held``: the name is taken; ``holder``/``token`` describe the current grant, or, when
    ``blocked`` (lock-delay after an expiry), ``holder`` is None and ``token`` is the expired
    grant's. ``not_holder``: holder or token did not match the current grant (``holder`` and
    ``token`` are the current grant's, None when the name is free). ``bad_request``: the
    command is malformed, or reuses a request id of a *different* command.
    ``request_expired``: a retry whose first result is no longer remembered.
    ``forbidden``: holder and token name the current grant, but another principal owns it.
    ``not_found``: no such session or group (404); ``not_member``: not a member of the group
    (404); ``exists``: the group exists or the member already joined (409); ``not_empty``: a
    group with members (409); ``limit_mismatch``: another limit than the semaphore's (409).
    """

    code: ErrorCode
    name: str
    holder: str | None = None
    token: int | None = None
    blocked: bool = False
    message: str = ""


class Ignored(msgspec.Struct, frozen=True, tag="ignored"):
    """A stale ``Expire`` or ``Unblock``: the grant it names is no longer the current one, or
    it was decided under a ballot below the latest applied ``Office`` (a deposed primary's
    ghost, ``deposed`` true)."""

    name: str
    token: int
    deposed: bool = False


class InOffice(msgspec.Struct, frozen=True, tag="in_office"):
    """An applied ``Office``: ``ballot`` governs from this slot on (``current`` false when a
    higher office was applied before it: a ghost office entry, a no-op)."""

    ballot: Ballot
    current: bool


Result: TypeAlias = (
    Lease | Released | Expired | Unblocked | Refused | Ignored | InOffice | CoordResult
)


# --- validation ----------------------------------------------------------------------------


def invalid_reason(command: LeaseCommand) -> str | None:
    """Why ``command`` is malformed, or None.

    The API validates requests first; this check is the state machine's own, because a
    command in the log is applied on every node and must never crash them all (a malformed
    command is answered ``bad_request``, deterministically, instead of tripping an assert).
    """
    if isinstance(command, Office):
        return None
    if not isinstance(command, Acquire | Release | Proclaim | Expire | Unblock):
        return coord_invalid_reason(command)
    if not lease_name_ok(command.name):
        return "name must match [A-Za-z0-9._/-]{1,256}"
    if isinstance(command, Expire | Unblock):
        return None
    if len(command.principal) > HOLDER_CHARS_MAX:
        return f"principal must have at most {HOLDER_CHARS_MAX} characters"
    if not 0 < len(command.holder) <= HOLDER_CHARS_MAX:
        return f"holder must have 1 to {HOLDER_CHARS_MAX} characters"
    if command.request_id is not None and not (
        0 < len(command.request_id) <= REQUEST_ID_CHARS_MAX
    ):
        return f"request_id must have 1 to {REQUEST_ID_CHARS_MAX} characters"
    if isinstance(command, Acquire):
        if not duration_ok(command.ttl_s, positive=command.session is None):
            return "ttl must be a positive finite number of seconds"
        if command.session == "":
            return "session must name a session"
        if not duration_ok(command.lock_delay_s, positive=False):
            return "lock_delay must be a non-negative finite number of seconds"
    if isinstance(command, Acquire | Proclaim) and value_bytes(command.value) > VALUE_BYTES_MAX:
        return f"value must be at most {VALUE_BYTES_MAX} bytes"
    return None


def value_bytes(value: str | None) -> int:
    """The size a value counts for, against ``VALUE_BYTES_MAX`` and the total-bytes limit."""
    return 0 if value is None else len(value.encode("utf-8", "surrogatepass"))


def subject_of(command: LeaseCommand) -> str:
    """The name a ``Refused`` or ``Ignored`` answering ``command`` carries."""
    if isinstance(command, Office):
        return ""
    if isinstance(command, Acquire | Release | Proclaim | Expire | Unblock):
        return command.name
    return subject(command)
