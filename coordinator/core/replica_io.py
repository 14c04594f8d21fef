"""What a ``LeaseReplica`` is asked (requests) and what one of its steps returns.

Frozen dataclasses, not msgspec structs: none of these crosses the wire or enters the log;
they pass between the pure replica and whatever drives it (the asyncio runtime and service,
or the simulator).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from paxlock.coordinator.core.ballot import Ballot
from paxlock.coordinator.core.coord_commands import CoordClientCommand, SharedKind
from paxlock.coordinator.core.heard import Contact
from paxlock.coordinator.core.keeper_effects import (
    MembershipRefused,
    NotPrimary,
    ReadConfirmed,
    Reconfigured,
    Recovering,
    Reply,
    RequestKey,
    TooMany,
    Unavailable,
)
from paxlock.coordinator.core.lease_commands import (
    Acquire,
    LeaseCommand,
    Proclaim,
    Release,
    Result,
)
from paxlock.coordinator.core.messages import (
    ChosenEntry,
    Envelope,
    Reconfigure,
    Record,
)
from paxlock.coordinator.core.proposer import Role
from paxlock.coordinator.core.ready import CoreEvent

__all__ = [
    "AcquireOp", "Applied", "CommandOp", "Contact", "LeftOffice", "MembershipRefused", "NotPrimary",
    "ProclaimOp", "ReadOp", "ReadConfirmed", "Reconfigured", "ReconfigureOp", "Recovering",
    "ReleaseOp", "Renewed", "RenewOp", "RenewSessionOp", "RenewSharedOp", "ReplicaEvent", "ReplicaReady", "Reply", "RequestKey",
    "ReplicaStatus", "RequestOp", "TookOffice", "TooMany", "Unavailable", "UnreadableEntry",
]


# --- requests ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AcquireOp:
    command: Acquire
    wait_s: float = 0.0
    """How long the request may be parked while the name is taken (0: answer at once)."""


@dataclass(frozen=True, slots=True)
class RenewOp:
    name: str
    holder: str
    token: int
    principal: str = ""
    """Who asks: only the lease's owner may renew it (renewals write no log entry, so the
    keeper checks it)."""


@dataclass(frozen=True, slots=True)
class ReleaseOp:
    command: Release


@dataclass(frozen=True, slots=True)
class ProclaimOp:
    command: Proclaim


@dataclass(frozen=True, slots=True)
class CommandOp:
    """Any new client command (sessions, semaphores, read/write locks, groups): answered with
    its applied result, from the idempotency window for a retry, or refused by the limits
    before anything is proposed. ``wait_s`` is for an ``AcquireShared`` only: how long it may
    wait in its name's FIFO queue (0: answer at once)."""

    command: CoordClientCommand
    wait_s: float = 0.0


@dataclass(frozen=True, slots=True)
class RenewSessionOp:
    """Renew session ``id`` (one confirmation round, no log write): keeps every hold bound
    to it alive; answered with the ``Session``."""

    id: str
    holder: str
    principal: str = ""


@dataclass(frozen=True, slots=True)
class RenewSharedOp:
    """Renew the permit (or read/write hold) ``token``, like a lease; a bound one renews its
    session. Answered with the ``Permit``."""

    kind: SharedKind
    name: str
    holder: str
    token: int
    principal: str = ""


@dataclass(frozen=True, slots=True)
class ReadOp:
    """A linearizable read barrier: answered ``ReadConfirmed`` once a quorum round sent after
    the request confirmed this node still primary (its keeper in office, so the log before
    its ballot is applied)."""




class UnreadableEntry(Exception):
    """A chosen entry (or an installed snapshot) holds what this version cannot decode: it
    was written by a newer paxlock, whose new commands this member would not apply as the
    others do. Raised before anything of the entry is applied; the runtime stops the node
    (fail-stop, like a store failure) rather than run on a state that diverges."""

    def __init__(self, slot: int, error: Exception) -> None:
        super().__init__(f"slot {slot} holds an entry this version of paxlock cannot read "
                         f"({error}): it was written by a newer version; upgrade this "
                         "member (README: Upgrades)")  # fmt: skip
        self.slot = slot


# --- events --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TookOffice:
    """The keeper took office: this node's ``Office`` entry of ``ballot`` applied in ``slot``."""

    ballot: Ballot
    slot: int


@dataclass(frozen=True, slots=True)
class LeftOffice:
    ballot: Ballot


@dataclass(frozen=True, slots=True)
class Renewed:
    """A confirmation round renewed ``count`` leases, sessions and permits (renewals write
    nothing to the log, so no ``Applied`` reports them)."""

    count: int


ReplicaEvent = CoreEvent | TookOffice | LeftOffice | Renewed


@dataclass(frozen=True, slots=True)
class Applied:
    """One lease command applied to the machine, in log order (observers: metrics, observe)."""

    slot: int
    command: LeaseCommand
    result: Result
    changed: bool
    """The command changed the machine (its revision moved): a ``Lease`` result that did
    not is a replay from the idempotency window, not a grant."""
    in_office: bool = False
    """Applied while this node's keeper was in office: each command is applied in office
    by one member at most, and never by a restarted one re-applying its log."""


@dataclass(frozen=True, slots=True)
class ReconfigureOp:
    """A configuration change (``core.membership``): answered ``Reconfigured`` once it is
    applied and made a configuration, ``MembershipRefused`` when it cannot be proposed or
    changed nothing, 503 when the primary stepped down before it was applied."""

    change: Reconfigure


RequestOp = (AcquireOp | RenewOp | ReleaseOp | ProclaimOp | ReadOp | ReconfigureOp | CommandOp
             | RenewSessionOp | RenewSharedOp)


# --- one step's effects --------------------------------------------------------------------


@dataclass(slots=True)
class ReplicaReady:
    """The effects of one step, with the core's obligations: make ``records`` durable
    (fsync) before any of ``messages`` leaves the node. ``replies`` answer requests (they
    report chosen results or confirmed rounds, which need no local fsync). ``learned``,
    ``installed`` and ``applied`` have already been carried out on the replica's machine;
    they are reported for observers and checkers."""

    records: list[Record] = field(default_factory=list)
    messages: list[Envelope] = field(default_factory=list)
    replies: list[Reply] = field(default_factory=list)
    events: list[ReplicaEvent] = field(default_factory=list)
    learned: list[ChosenEntry] = field(default_factory=list)
    installed: tuple[int, bytes] | None = None
    applied: list[Applied] = field(default_factory=list)
    deadline: float = float("inf")
    """Call ``tick()`` no later than this."""
    membership_changed: bool = False
    """The configurations in effect or pending changed (``LeaseReplica.schedule``): the
    peers to talk to may have."""


@dataclass(frozen=True, slots=True)
class ReplicaStatus:
    """What outsiders (metrics, readiness, ``/v1/cluster``) read, instead of internals."""

    node: str
    role: Role
    ballot: Ballot
    highest_round: int
    primary_hint: str | None
    in_office: bool
    chosen_index: int
    applied_index: int
    snapshot_index: int
    catchup_target: tuple[str, int] | None
    leases: int
    waiters: int
    contacts: tuple[Contact, ...] = ()
    """Every other member heard from so far: when (this node's clock) and the chosen index
    it last reported, directly or relayed by the primary (``core.heard``)."""
    voter: bool = True
    """This member incarnation votes in a configuration in effect or pending."""
    member: bool = True
    """Some configuration in effect or pending lists this member incarnation (False: a
    store that was lost or a member not yet added; it only waits to be admitted)."""
