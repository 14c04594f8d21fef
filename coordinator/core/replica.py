"""``LeaseReplica``: one member of the lease service, pure — the one composition of the
consensus ``Node``, the ``LeaseMachine`` and the primary's ``LeaseKeeper``.

The asyncio runtime and the simulator both drive *this object* (etcd-io/raft's ``RawNode``,
TigerBeetle's ``Replica``): whatever glue joins the three parts lives here once, so the
simulator certifies what ships. Every entry point — ``start``, ``receive``, ``tick``,
``request``, ``cancel`` — takes the current time and returns a ``ReplicaReady`` with one
deadline. The glue, in DESIGN.md terms:

- **Office** (§2). After phase 1 the new primary proposes an ``Office`` entry carrying its
  ballot, ahead of anything else of its own. Its keeper takes office when that entry is
  applied here — never earlier, so the machine holds everything chosen before the ballot,
  whether it got there by applying entries or by installing a snapshot, and the machine
  knows the ballot that governs (so a deposed primary's ghost decision is a no-op).
- **Decisions** from the keeper's timers carry its office ballot (``Expire``, ``Unblock``).
- **Renewal rounds and read barriers** share confirmation rounds: one in flight at a time;
  renewals and reads that arrive meanwhile wait for the next one (Raft's ReadIndex batching).
- **Reply routing**: a command enters the log as a ``Proposal`` naming this incarnation
  (``origin``) and a sequence number; only the incarnation that proposed it answers the
  request waiting for its applied result.
- **Compaction** every ``snapshot_every`` applied slots, at the end of a step; a snapshot
  installed by catch-up replaces the machine (and rebuilds an in-office keeper's timers).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import assert_never

import msgspec

from paxlock.coordinator.core.ballot import Ballot
from paxlock.coordinator.core.config import CoreConfig, Rng
from paxlock.coordinator.core.keeper import AcquireRequest, KeeperReady, LeaseKeeper
from paxlock.coordinator.core.keeper_effects import (
    MembershipRefused,
    NotPrimary,
    ReadConfirmed,
    Reconfigured,
    Recovering,
    Reply,
    RequestKey,
    Unavailable,
)
from paxlock.coordinator.core.coord_commands import AcquireShared, Permit, Session, SharedKind
from paxlock.coordinator.core.lease_commands import (
    AnyClientCommand,
    InOffice,
    Lease,
    LeaseCommand,
    Office,
)
from paxlock.coordinator.core.leases import LeaseMachine
from paxlock.coordinator.core.membership import Schedule
from paxlock.coordinator.core.messages import Batch, ChosenEntry, Message, Reconfigure
from paxlock.coordinator.core.node import Node
from paxlock.coordinator.core.proposal import Proposal, decode_proposal, encode_proposal
from paxlock.coordinator.core.proposer import Role
from paxlock.coordinator.core.ready import (
    BecamePrimary,
    Confirmed,
    DurableState,
    HandedOver,
    MembershipChanged,
    Phase1Started,
    Ready,
    Rejection,
    SteppedDown,
)
from paxlock.coordinator.core.replica_io import (
    AcquireOp,
    Applied,
    CommandOp,
    LeftOffice,
    ProclaimOp,
    ReadOp,
    ReconfigureOp,
    ReleaseOp,
    Renewed,
    RenewOp,
    RenewSessionOp,
    RenewSharedOp,
    ReplicaReady,
    ReplicaStatus,
    RequestOp,
    TookOffice,
    UnreadableEntry,
)

__all__ = ["LeaseReplica", "ReplicaStatus", "UnreadableEntry"]

READS_WAITING_MAX = 65_536
"""Linearizable reads waiting for the next confirmation round (a bound on every queue)."""


@dataclass(slots=True)
class _Round:
    """The confirmation round in flight: core round ``seq``, sent at ``sent_at``."""

    seq: int
    sent_at: float
    keeper_round: int | None
    reads: list[RequestKey]


@dataclass(slots=True)
class _Mine:
    """A proposal of this incarnation not yet applied or rejected."""

    command: LeaseCommand
    reply_to: RequestKey | None


@dataclass(slots=True)
class _Pending:
    """What waits for a later step: the parts' deadlines, and reads for the next round."""

    keeper_deadline: float | None = None
    node_deadline: float = float("inf")
    reads: list[RequestKey] = field(default_factory=list)


class LeaseReplica:
    def __init__(
        self,
        config: CoreConfig,
        durable: DurableState,
        rng: Rng,
        *,
        origin: str,
        snapshot_every: int = 5000,
        node: Node | None = None,
        keeper: LeaseKeeper | None = None,
        machine_factory: Callable[[], LeaseMachine] = LeaseMachine,
    ) -> None:
        """``origin`` names this incarnation (unique across restarts); ``node``, ``keeper``
        and ``machine_factory`` let tests substitute deliberately broken parts."""
        assert snapshot_every >= 1
        self.id = config.node_id
        self.origin = origin
        self.snapshot_every = snapshot_every
        self.node = node or Node(config, durable, rng)
        self.keeper = keeper or LeaseKeeper()
        self.machine = machine_factory()
        self.applied_slot = 0
        self._seq = 0
        self._mine: dict[int, _Mine] = {}
        self._round: _Round | None = None
        self._pending = _Pending()
        self._change: tuple[RequestKey, Reconfigure] | None = None
        """The configuration change this primary proposed and waits to see applied."""

    # -- entry points --------------------------------------------------------------------

    def start(self, now: float) -> ReplicaReady:
        """First step of an incarnation: restore the durable snapshot, apply the durable
        chosen log after it."""
        out = ReplicaReady()
        self._absorb(self.node.start(now), now, out)
        return self._finish(out, now)

    def receive(self, src: str, msg: Message, now: float) -> ReplicaReady:
        out = ReplicaReady()
        self._absorb(self.node.receive(src, msg, now), now, out)
        return self._finish(out, now)

    def tick(self, now: float) -> ReplicaReady:
        out = ReplicaReady()
        self._absorb(self.node.tick(now), now, out)
        keeper_due = self._pending.keeper_deadline
        if self.keeper.in_office and keeper_due is not None and now >= keeper_due:
            self._run(self.keeper.tick(now), now, out)
        round_ = self._round
        if round_ is not None and now >= round_.sent_at + self.keeper.config.confirm_timeout_s:
            self._round = None  # given up: what it would have served waits for the next one
            if round_.keeper_round is not None:
                self.keeper.on_round_failed(round_.keeper_round)
            self._pending.reads[:0] = round_.reads
            self._maybe_start_round(now, out)
        return self._finish(out, now)

    def hand_over(self, now: float) -> ReplicaReady:
        """Step down in favour of an up-to-date member that takes office at once (a member
        asked to stop does this first). Requests in flight are answered 503 (retried by
        clients); nothing is lost: whatever was proposed is recovered by phase 1."""
        out = ReplicaReady()
        self._absorb(self.node.hand_over(now), now, out)
        return self._finish(out, now)

    def run_phase1(self, now: float) -> ReplicaReady:
        """Start phase 1 now (deployments and scripted tests that run without the election)."""
        out = ReplicaReady()
        self._absorb(self.node.run_phase1(now), now, out)
        return self._finish(out, now)

    def request(self, key: RequestKey, op: RequestOp, now: float) -> ReplicaReady:
        """A client request; its ``Reply`` to ``key`` comes in this or a later step."""
        out = ReplicaReady()
        refusal = self._not_serving()
        if refusal is not None:
            out.replies.append(Reply(key, refusal))
            return self._finish(out, now)
        keeper = self.keeper
        match op:
            case AcquireOp(command=command, wait_s=wait_s):
                self._run(keeper.acquire(AcquireRequest(key, command, wait_s), now), now, out)
            case RenewOp(name=name, holder=holder, token=token, principal=principal):
                self._run(keeper.renew(name, holder, token, key, now, principal), now, out)
            case CommandOp(command=AcquireShared() as command, wait_s=wait_s):
                self._run(keeper.acquire(AcquireRequest(key, command, wait_s), now), now, out)
            case RenewSessionOp(id=ident, holder=holder, principal=principal):
                self._run(keeper.renew_session(ident, holder, key, now, principal), now, out)
            case RenewSharedOp(kind=kind, name=name, holder=holder, token=token,
                               principal=principal):  # fmt: skip
                self._run(keeper.renew_shared(kind, name, holder, token, key, now, principal),
                          now, out)  # fmt: skip
            case ReleaseOp(command=command) | ProclaimOp(command=command) \
                    | CommandOp(command=command):  # fmt: skip
                replayed = self.machine.replay(command)
                too_many = keeper.admit(command) if replayed is None else None
                if replayed is not None:  # a retry of an applied command: its first answer
                    expires_in = (keeper.reply_expires_in(command, replayed, now)
                                  if isinstance(op, CommandOp) else None)  # fmt: skip
                    out.replies.append(Reply(key, replayed, expires_in))
                elif too_many is not None:
                    out.replies.append(Reply(key, too_many))
                else:
                    self._propose(command, key, now, out)
                    if isinstance(op, ReleaseOp):  # the direct handoff, one log round
                        self._run(keeper.release_requested(op.command, now), now, out)
            case ReadOp() if len(self._pending.reads) >= READS_WAITING_MAX:
                out.replies.append(Reply(key, Unavailable("too many reads waiting")))
            case ReadOp():
                self._pending.reads.append(key)
                self._maybe_start_round(now, out)
            case ReconfigureOp(change=change):
                self._reconfigure(key, change, now, out)
            case _:
                assert_never(op)
        return self._finish(out, now)

    def cancel(self, key: RequestKey, now: float) -> ReplicaReady:
        """The request ``key`` went away (its client disconnected): a parked waiter leaves
        its queue, so the name is never granted to nobody."""
        out = ReplicaReady()
        if self.keeper.in_office:
            self._run(self.keeper.cancel(key, now), now, out)
        if key in self._pending.reads:
            self._pending.reads.remove(key)
        return self._finish(out, now)

    # -- reading -------------------------------------------------------------------------

    @property
    def schedule(self) -> Schedule:
        """Which configuration governs which slot (``core.membership``)."""
        return self.node.schedule

    def hears(self, member_id: str, incarnation: str) -> bool:
        """Whether a peer connection from this member incarnation is accepted
        (``Node.hears``)."""
        return self.node.hears(member_id, incarnation)

    def expires_in(self, name: str, now: float) -> float | None:
        """Seconds left of the lease on ``name`` by the keeper's timer (None off office)."""
        return self.keeper.expires_in(name, now) if self.keeper.in_office else None

    def session_expires_in(self, id: str, now: float) -> float | None:
        """Seconds left of session ``id`` by the keeper's timer (None off office)."""
        return self.keeper.session_expires_in(id, now) if self.keeper.in_office else None

    def shared_expires_in(self, kind: SharedKind, name: str, holder: str, now: float
                          ) -> float | None:  # fmt: skip
        """Seconds left of ``holder``'s hold on a shared name (None off office, or if it
        holds none)."""
        if not self.keeper.in_office:
            return None
        return self.keeper.shared_expires_in(kind, name, holder, now)

    def status(self) -> ReplicaStatus:
        node = self.node
        return ReplicaStatus(
            self.id, node.role, node.ballot, node.highest_seen.round, node.primary_hint,
            self.keeper.in_office, node.chosen_index, self.applied_slot,
            node.snapshot.slot if node.snapshot is not None else 0, node.catchup_target,
            self.machine.holds(), self.keeper.waiters if self.keeper.in_office else 0,
            node.heard.contacts(), node.votes,
            node.schedule.knows(self.id, node.config.incarnation),
        )  # fmt: skip

    # -- the core's effects --------------------------------------------------------------

    def _absorb(self, ready: Ready, now: float, out: ReplicaReady) -> None:
        """Take one core step's effects: its records and messages go out with this step;
        then, as the runtime contract says, events, the snapshot install, the learned
        entries in order, and the rejections."""
        out.records += ready.records
        out.messages += ready.messages
        if ready.deadline is not None:
            self._pending.node_deadline = ready.deadline
        out.events += ready.events
        for event in ready.events:
            match event:
                case BecamePrimary():
                    self._became_primary(event, now, out)
                case SteppedDown() | HandedOver() | Phase1Started():
                    self._leave_office(out)
                case Confirmed():
                    self._confirmed(event, now, out)
                case MembershipChanged():
                    out.membership_changed = True
                    self._changed(event, out)
        if ready.installed is not None:
            self._install(*ready.installed, now, out)
        for entry in ready.learned:
            self._apply(entry, now, out)
        for rejection in ready.rejected:
            self._rejected(rejection, now, out)

    def _became_primary(self, event: BecamePrimary, now: float, out: ReplicaReady) -> None:
        """Phase 1 is complete: the first proposal of this ballot is its office entry."""
        self._fail_reads(out, "a new primary took over")
        self._propose(Office(event.ballot), None, now, out)

    def _apply(self, entry: ChosenEntry, now: float, out: ReplicaReady) -> None:
        assert entry.slot == self.applied_slot + 1, "entries apply in slot order, once"
        proposals = _readable(entry)  # all of it, before any of it is applied
        out.learned.append(entry)
        self.applied_slot = entry.slot
        for proposal in proposals:
            command = proposal.command
            revision = self.machine.revision
            result = self.machine.apply(command)
            out.applied.append(Applied(entry.slot, command, result,
                                       self.machine.revision != revision,
                                       self.keeper.in_office))  # fmt: skip
            if self.keeper.in_office and self.machine.office > self.keeper.ballot:
                self._leave_office(out)  # a successor's office entry: deposed, unaware yet
            elif self.keeper.in_office:
                self._run(self.keeper.on_applied(command, result, now), now, out)
            elif isinstance(result, InOffice):
                self._maybe_take_office(result, entry.slot, now, out)
            mine = self._mine.pop(proposal.seq, None) if proposal.origin == self.origin else None
            if mine is not None and mine.reply_to is not None:
                assert isinstance(command, AnyClientCommand), "only a client's command is answered"
                expires_in = (self.keeper.reply_expires_in(command, result, now)
                              if self.keeper.in_office else None)  # fmt: skip
                out.replies.append(Reply(mine.reply_to, result, expires_in))

    def _maybe_take_office(self, office: InOffice, slot: int, now: float,
                           out: ReplicaReady) -> None:  # fmt: skip
        node = self.node
        if not office.current or node.role is not Role.PRIMARY or office.ballot != node.ballot:
            return  # someone else's office entry, or one this node no longer stands behind
        self._take_office(office.ballot, slot, now, out)

    def _take_office(self, ballot: Ballot, slot: int, now: float, out: ReplicaReady) -> None:
        self._run(self.keeper.take_office(self.machine, now, ballot), now, out)
        out.events.append(TookOffice(ballot, slot))
        self._check_office()

    def _leave_office(self, out: ReplicaReady) -> None:
        self._fail_reads(out, "no longer primary")
        if self._change is not None:
            key, self._change = self._change[0], None
            out.replies.append(Reply(key, Unavailable(
                "no longer primary: the membership change may still take effect; "
                "read GET /v1/members before retrying")))  # fmt: skip
        if self.keeper.in_office:
            ballot = self.keeper.ballot
            out.replies += self.keeper.step_down()
            out.events.append(LeftOffice(ballot))
        self._pending.keeper_deadline = None
        self._check_office()

    def _install(self, slot: int, data: bytes, now: float, out: ReplicaReady) -> None:
        """A snapshot replaces the machine (restart, or catch-up from a peer)."""
        assert out.installed is None, "one snapshot install per step"
        try:
            machine = type(self.machine).restore(data)
        except (ValueError, msgspec.DecodeError) as error:  # a newer snapshot version
            raise UnreadableEntry(slot, error) from error
        self.machine = machine
        self.applied_slot = slot
        out.installed = (slot, data)
        if self.keeper.in_office and self.machine.office == self.keeper.ballot:
            ballot = self.keeper.ballot  # rebuild the keeper's timers on the new machine
            out.replies += self.keeper.step_down()
            self._run(self.keeper.take_office(self.machine, now, ballot), now, out)
        elif self.keeper.in_office:  # a higher office is in the snapshot: deposed
            self._leave_office(out)
        elif self.node.role is Role.PRIMARY and self.machine.office == self.node.ballot:
            # This primary's own Office entry is inside the snapshot (a peer applied it and
            # compacted before this node could): it is applied, so take office now.
            self._take_office(self.node.ballot, slot, now, out)

    def _rejected(self, rejection: Rejection, now: float, out: ReplicaReady) -> None:
        proposal = decode_proposal(rejection.command)
        mine = self._mine.pop(proposal.seq, None) if proposal.origin == self.origin else None
        if mine is None:
            return
        if self.keeper.in_office:
            self._run(self.keeper.on_rejected(proposal.command, now), now, out)
        if mine.reply_to is None:
            return
        command = proposal.command
        assert isinstance(command, AnyClientCommand), "only a client's command is answered"
        if not rejection.maybe_chosen:
            why = "not accepted by the primary"
        elif command.request_id is not None:
            why = "outcome unknown: retry with the same request_id"
        else:
            why = "outcome unknown: the request may still take effect; read before retrying"
        out.replies.append(Reply(mine.reply_to, Unavailable(why)))

    # -- membership ------------------------------------------------------------------------

    def _reconfigure(self, key: RequestKey, change: Reconfigure, now: float,
                     out: ReplicaReady) -> None:  # fmt: skip
        """Propose ``change`` unless another change is under way (one at a time, and each
        only once the previous one governs: ``core.membership``)."""
        schedule = self.node.schedule
        if self._change is not None or schedule.pending is not None:
            out.replies.append(Reply(key, MembershipRefused(
                "change_in_progress", "another membership change is not in effect yet")))
            return
        if change.base != schedule.latest.epoch:
            out.replies.append(Reply(key, MembershipRefused(
                "conflict", "the configuration changed meanwhile; read it and retry")))
            return
        self._change = (key, change)
        self._absorb(self.node.reconfigure(change, now), now, out)

    def _changed(self, event: MembershipChanged, out: ReplicaReady) -> None:
        """A ``Reconfigure`` applied: answer the request that proposed it, if here."""
        if self._change is None or event.change != self._change[1]:
            return
        key, self._change = self._change[0], None
        if event.made is None:
            out.replies.append(Reply(key, MembershipRefused(
                "conflict", "another membership change came first; read it and retry")))
        else:
            first_slot = event.slot + event.made.alpha
            out.replies.append(Reply(key, Reconfigured(event.made, first_slot)))

    # -- the keeper's effects ------------------------------------------------------------

    def _run(self, ready: KeeperReady, now: float, out: ReplicaReady) -> None:
        for proposal in ready.proposals:
            self._propose(proposal.command, proposal.reply_to, now, out)
        out.replies += ready.replies
        if self.keeper.in_office:
            self._pending.keeper_deadline = ready.deadline
            self._maybe_start_round(now, out)

    def _propose(self, command: LeaseCommand, reply_to: RequestKey | None, now: float,
                 out: ReplicaReady) -> None:  # fmt: skip
        self._seq += 1
        self._mine[self._seq] = _Mine(command, reply_to)
        raw = encode_proposal(Proposal(self.origin, self._seq, command))
        self._absorb(self.node.submit(raw, now), now, out)

    # -- confirmation rounds ---------------------------------------------------------------

    def _maybe_start_round(self, now: float, out: ReplicaReady) -> None:
        if self._round is not None or self.node.role is not Role.PRIMARY:
            return
        renewals = self.keeper.in_office and self.keeper.needs_confirmation()
        if not renewals and not self._pending.reads:
            return
        seq, ready = self.node.request_confirmation(now)
        assert seq is not None, "a primary can always start a round"
        keeper_round = self.keeper.start_round(now) if renewals else None
        self._round = _Round(seq, now, keeper_round, self._pending.reads)
        self._pending.reads = []
        self._absorb(ready, now, out)  # a cluster of one confirms within this step

    def _confirmed(self, event: Confirmed, now: float, out: ReplicaReady) -> None:
        round_ = self._round
        if round_ is None or event.seq < round_.seq:
            return
        self._round = None
        out.replies += [Reply(key, ReadConfirmed()) for key in round_.reads]
        if round_.keeper_round is not None and self.keeper.in_office:
            ready = self.keeper.on_confirmed(round_.keeper_round, now)
            renewed = sum(isinstance(reply.outcome, Lease | Session | Permit)
                          for reply in ready.replies)  # fmt: skip
            if renewed:
                out.events.append(Renewed(renewed))
            self._run(ready, now, out)
        self._maybe_start_round(now, out)

    def _fail_reads(self, out: ReplicaReady, why: str) -> None:
        reads = self._pending.reads + (self._round.reads if self._round is not None else [])
        out.replies += [Reply(key, Unavailable(why)) for key in reads]
        self._pending.reads = []
        self._round = None

    # -- helpers ---------------------------------------------------------------------------

    def _not_serving(self) -> NotPrimary | Recovering | None:
        if self.node.role is not Role.PRIMARY:
            return NotPrimary(self.node.primary_hint)
        if not self.keeper.in_office:
            return Recovering()
        return None

    def _check_office(self) -> None:
        """Office invariants: a keeper is in office only on the primary, under its ballot,
        which is the ballot the machine names as governing."""
        if self.keeper.in_office:
            assert self.node.role is Role.PRIMARY, "a keeper in office off the primary"
            assert self.keeper.ballot == self.node.ballot, "a keeper under a stale ballot"
            assert self.machine.office == self.keeper.ballot, "office not applied"

    def _finish(self, out: ReplicaReady, now: float) -> ReplicaReady:
        self._compact_if_due(now, out)
        self._check_office()
        assert self._round is None or self.node.role is Role.PRIMARY, "a round off office"
        deadline = self._pending.node_deadline
        if self.keeper.in_office and self._pending.keeper_deadline is not None:
            deadline = min(deadline, self._pending.keeper_deadline)
        if self._round is not None:
            deadline = min(deadline, self._round.sent_at + self.keeper.config.confirm_timeout_s)
        out.deadline = deadline
        return out

    def _compact_if_due(self, now: float, out: ReplicaReady) -> None:
        """Snapshot the machine at the applied slot once it crossed a multiple of
        ``snapshot_every`` since the last snapshot, and let the log below it go."""
        snapshot = self.node.snapshot
        last = snapshot.slot if snapshot is not None else 0
        every = self.snapshot_every
        if self.applied_slot // every > last // every and self.applied_slot > last:
            self._absorb(self.node.compact(self.applied_slot, self.machine.snapshot(), now),
                         now, out)  # fmt: skip


def _readable(entry: ChosenEntry) -> list[Proposal]:
    """The proposals of a chosen batch, or ``UnreadableEntry`` if any is not decodable."""
    if not isinstance(entry.value, Batch):
        return []
    try:
        return [decode_proposal(raw) for raw in entry.value.commands]
    except msgspec.DecodeError as error:  # ValidationError included: an unknown command tag
        raise UnreadableEntry(entry.slot, error) from error
