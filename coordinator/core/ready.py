"""What one step of the core returns, and the durable state it is rebuilt from.

Like etcd-raft's ``Ready``: the runtime must make ``records`` durable (fsync) *before* any of
``messages`` leaves the node — save those ``leaves_before_durable`` allows —, then replace its
state machine with ``installed`` (if set), then apply ``learned`` in order. The core itself
does no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from paxlock.coordinator.core.ballot import ZERO_BALLOT, Ballot
from paxlock.coordinator.core.messages import (
    Accept,
    AcceptedEntry,
    Chosen,
    Heartbeat,
    Message,
    Configuration,
    Reconfigure,
    AcceptRecord,
    ChosenEntry,
    ChosenRecord,
    Envelope,
    PromiseRecord,
    Record,
    SnapshotRecord,
    Value,
)


def leaves_before_durable(message: Message, durable_promise: Ballot) -> bool:
    """Whether ``message`` may leave before the records of its step (and of earlier steps)
    are durable: the primary's own disk write then runs beside its followers' instead of
    before them (Raft's leader does the same with its log append, thesis §10.2.1).

    Persist-then-send guards what a message *reports* about its sender's acceptor: a
    ``Promise``, an ``Accepted``, a ``Nack``, a heartbeat ack. Those always wait. A proposer's
    ``Accept`` reports nothing of the kind — the receiving acceptors judge it — and the
    primary counts its own vote only when its own acceptor's ``Accepted`` comes back through
    the loopback, after the flush. What an ``Accept`` does need is that its ballot can never
    be used again for another value: so it goes early only once this node's promise of that
    ballot is durable (``durable_promise``); a primary that crashed before that could pick
    the same round again after restart. ``Chosen`` and ``Heartbeat`` report chosen slots,
    durable on a majority of other disks already, and the primary's liveness."""
    if isinstance(message, Accept):
        return message.ballot <= durable_promise
    return isinstance(message, Chosen | Heartbeat)


def commit_may_wait(record: Record) -> bool:
    """Whether ``record`` may wait for a later commit instead of one of its own: a
    ``ChosenRecord``. It reports nothing any other member relies on (the value is durable
    on a majority of acceptors already), and every message that reports this node's chosen
    log — a promise's chosen index, a catch-up reply — still leaves only after it, like every
    other record before it. It rides with the next acceptance, which halves the commits of a
    follower that accepts slot s+1 right after learning slot s; a crash before that loses
    only what catch-up relearns. The runtime still commits it within ``LAZY_COMMIT_S``."""
    return isinstance(record, ChosenRecord)


@dataclass(frozen=True, slots=True)
class Rejection:
    """A submitted command this node will not (or can no longer) see through.

    ``maybe_chosen`` is true when the command was already sent in an Accept: it may still be
    chosen, so a client must retry it with the same request id rather than assume failure.
    """

    command: Any
    primary_hint: str | None
    maybe_chosen: bool


@dataclass(frozen=True, slots=True)
class BecamePrimary:
    ballot: Ballot
    reproposed: int
    """Slots re-proposed after phase 1 (P2c(b) values and no-ops)."""


@dataclass(frozen=True, slots=True)
class SteppedDown:
    ballot: Ballot
    higher: Ballot | None
    """The ballot that deposed it, or None when it lost touch with a majority."""


@dataclass(frozen=True, slots=True)
class HandedOver:
    """This primary stepped down on purpose, asking ``target`` to take office at once."""

    ballot: Ballot
    target: str


@dataclass(frozen=True, slots=True)
class Phase1Started:
    ballot: Ballot
    from_slot: int


@dataclass(frozen=True, slots=True)
class Confirmed:
    """A majority acked confirmation round ``seq``, which left this node at ``sent_at``: the
    node was still primary at some instant after ``sent_at``."""

    seq: int
    sent_at: float


@dataclass(frozen=True, slots=True)
class MembershipChanged:
    """The configurations in effect or pending changed (``Node.schedule``): ``change`` is
    the ``Reconfigure`` applied in ``slot`` and ``made`` the configuration it made (None: it
    changed nothing, being stale or too soon), or both are None when a pending configuration
    took effect or a snapshot brought others."""

    slot: int
    change: Reconfigure | None
    made: Configuration | None


CoreEvent = (
    BecamePrimary | SteppedDown | HandedOver | Phase1Started | Confirmed | MembershipChanged
)


@dataclass(slots=True)
class Ready:
    """The effects of one step. Order of obligations: persist, send, install, apply."""

    records: list[Record] = field(default_factory=list)
    messages: list[Envelope] = field(default_factory=list)
    installed: tuple[int, bytes] | None = None
    """``(slot, data)``: replace the state machine with this snapshot *before* applying
    ``learned`` (which then starts at ``slot + 1``). Set when catch-up installed a peer's
    snapshot, and by ``start()`` of a node restarted from a snapshot."""
    learned: list[ChosenEntry] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    events: list[CoreEvent] = field(default_factory=list)
    deadline: float | None = None
    """Call ``tick()`` no later than this (the core's only timer)."""


@dataclass(slots=True)
class DurableState:
    """Everything a node keeps across a crash: its acceptor state, its chosen log and the
    latest snapshot of its state machine, which stands for every slot up to ``snapshot_slot``
    (no accepted or chosen entry at or below it is kept).

    ``apply()`` is the one definition of what a record means; the in-memory store of the
    simulator and the SQLite store must agree with it.
    """

    promised: Ballot = ZERO_BALLOT
    accepted: dict[int, AcceptedEntry] = field(default_factory=dict)
    chosen: dict[int, Value] = field(default_factory=dict)
    snapshot_slot: int = 0
    snapshot: bytes | None = None
    genesis: Configuration | None = None
    """The configuration the cluster bootstrapped with (``core.membership``), stored once at
    bootstrap or join; None in tests that build the genesis from ``CoreConfig.members``."""

    def apply(self, record: Record) -> None:
        match record:
            case PromiseRecord(ballot=ballot):
                assert ballot >= self.promised, "a promise never goes down"
                self.promised = ballot
            case AcceptRecord(slot=slot, ballot=ballot, value=value):
                assert ballot <= self.promised, "accepted ballot never exceeds the promise"
                assert slot > self.snapshot_slot, "nothing is accepted in a compacted slot"
                self.accepted[slot] = AcceptedEntry(slot, ballot, value)
            case ChosenRecord(slot=slot, value=value):
                assert slot > self.snapshot_slot, "a compacted slot is never learned again"
                previous = self.chosen.setdefault(slot, value)
                assert previous == value, "a chosen slot's value never changes"
            case SnapshotRecord(slot=slot, data=data):
                assert slot >= self.snapshot_slot, "the snapshot slot never goes down"
                self.snapshot_slot = slot
                self.snapshot = data
                self.accepted = {s: e for s, e in self.accepted.items() if s > slot}
                self.chosen = {s: v for s, v in self.chosen.items() if s > slot}

    def copy(self) -> DurableState:
        return DurableState(self.promised, dict(self.accepted), dict(self.chosen),
                            self.snapshot_slot, self.snapshot, self.genesis)  # fmt: skip
