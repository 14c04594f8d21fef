"""What the primary's ``LeaseKeeper`` is asked to do and what it answers with.

Frozen dataclasses, not msgspec structs: these never cross the wire or reach the log; they
pass between the pure keeper and the runtime of the same node.

The runtime's side of the contract:

- it proposes every ``Propose.command``; it calls ``on_applied`` for *every* applied lease
  command (whoever proposed it), then answers that proposal's ``reply_to``, if any, with the
  applied result and ``expires_in()``; it calls ``on_rejected`` for a proposal that could
  not enter the log (and answers its ``reply_to`` 503 itself);
- confirmation rounds: when ``needs_confirmation()`` it calls ``start_round(now)``, which
  returns an opaque round id, runs one quorum round (acceptors ack only if they have
  promised no higher ballot) and reports ``on_confirmed(round_id, now)`` or
  ``on_round_failed(round_id)``. The id is a sequence number: the round serves every
  renewal that arrived before it started (arrival numbers up to the id), which is exact even
  when the clock does not move between calls. One round is in flight at a time; renewals
  arriving meanwhile wait for the next one (batching, as Raft's ReadIndex). A round not
  confirmed within ``confirm_timeout_s`` is given up so that a new one can start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NewType

from paxlock.coordinator.core.coord_commands import AcquireShared
from paxlock.coordinator.core.lease_commands import Acquire, LeaseCommand, Result
from paxlock.coordinator.core.messages import Configuration

RequestKey = NewType("RequestKey", int)
"""The runtime's handle of a client request waiting for its reply."""
QueueKey = str | tuple[str, str]
"""Whose waiters a queue holds: a lease name, or (kind, name) of a shared name."""


@dataclass(frozen=True, slots=True)
class KeeperConfig:
    waiters_per_name_max: int = 1024
    waiters_max: int = 65_536
    renewals_max: int = 65_536
    retry_s: float = 1.0
    """An ``Expire``/``Unblock`` not applied this long after it was proposed is proposed
    again (a duplicate is a harmless stale no-op in the state machine)."""
    confirm_timeout_s: float = 1.0
    holds_per_principal_max: int = 10_000
    holds_max: int = 100_000
    value_bytes_max: int = 64 * 1024 * 1024
    """Admission limits (``core.quotas``): checked by the primary before it proposes,
    never when a command is applied, so members started with different limits cannot
    diverge."""


@dataclass(frozen=True, slots=True)
class AcquireRequest:
    key: RequestKey
    command: Acquire | AcquireShared
    wait_s: float = 0.0
    """How long the request may be parked while the name is taken (0: answer at once)."""

    @property
    def queue(self) -> QueueKey:
        return queue_of(self.command)


def queue_of(command: Acquire | AcquireShared) -> QueueKey:
    """The queue an acquire waits in (the two shared kinds are separate namespaces, and
    separate from leases)."""
    return command.name if isinstance(command, Acquire) else (command.kind, command.name)


@dataclass(frozen=True, slots=True)
class Unavailable:
    """Answered 503: no longer primary, or a bound was hit; the client retries."""

    reason: str


@dataclass(frozen=True, slots=True)
class TooMany:
    """Answered 429: admitting the request would pass ``limit`` (``holds_per_principal``,
    ``holds``, ``value_bytes``). Decided before proposing: nothing enters the log."""

    limit: str
    reason: str


@dataclass(frozen=True, slots=True)
class NotPrimary:
    """This node is not the primary: the edge forwards to ``primary_hint`` (None: unknown).
    (Answered by the ``LeaseReplica``, never by the keeper.)"""

    primary_hint: str | None


@dataclass(frozen=True, slots=True)
class Recovering:
    """This node is the primary, but its keeper is not in office yet (its ``Office`` entry is
    not applied): the edge waits for ``TookOffice`` and asks again, or answers 503."""


@dataclass(frozen=True, slots=True)
class ReadConfirmed:
    """A read barrier passed: reading the local machine now is linearizable."""


@dataclass(frozen=True, slots=True)
class Propose:
    command: LeaseCommand
    reply_to: RequestKey | None
    """The request the runtime answers with this command's applied result."""


@dataclass(frozen=True, slots=True)
class Reconfigured:
    """The change applied: ``configuration`` governs from ``first_slot`` on."""

    configuration: Configuration
    first_slot: int


@dataclass(frozen=True, slots=True)
class MembershipRefused:
    """``code``: ``change_in_progress`` (another change is not in effect yet) or
    ``conflict`` (the configuration changed since the request was built)."""

    code: str
    reason: str


@dataclass(frozen=True, slots=True)
class Reply:
    to: RequestKey
    outcome: (Result | Unavailable | TooMany | NotPrimary | Recovering | ReadConfirmed
              | Reconfigured | MembershipRefused)
    expires_in_s: float | None = None


@dataclass(slots=True)
class KeeperReady:
    proposals: list[Propose] = field(default_factory=list)
    replies: list[Reply] = field(default_factory=list)
    deadline: float | None = None
    """Call ``tick()`` no later than this."""
