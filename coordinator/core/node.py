"""One paxlock node's consensus logic: acceptor, learner and proposer composed with the
election of the primary (``election.Election``), plus catch-up and snapshots (``compact()``,
``Ready.installed``). Pure and synchronous: every entry point takes the current time and
returns a ``Ready``; randomness comes from the injected ``Rng`` (a seeded ``random.Random`` in
practice), drawn only by the election.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import msgspec

from paxlock.coordinator.core.acceptor import Acceptor
from paxlock.coordinator.core.ballot import Ballot, NodeId
from paxlock.coordinator.core.admission import (
    IMPLAUSIBLE_ROUND,
    IMPLAUSIBLE_SLOT,
    NON_MEMBER,
    ROUNDS_AHEAD_MAX,
    UNFOLLOWED_CHOSEN,
    chosen_believed,
    message_round,
    slots_ahead_max,
)
from paxlock.coordinator.core.catchup import CORRUPT, CatchUp, Served, serve
from paxlock.coordinator.core.config import CoreConfig, Rng
from paxlock.coordinator.core.confirm import Rounds
from paxlock.coordinator.core.election import Election
from paxlock.coordinator.core.heard import Heard
from paxlock.coordinator.core.learner import Learner
from paxlock.coordinator.core.membership import (
    Schedule,
    decode_snapshot,
    encode_snapshot,
    genesis,
    phase1_complete,
)
from paxlock.coordinator.core.messages import (
    Accept,
    Accepted,
    AcceptedEntry,
    CatchupReply,
    CatchupRequest,
    Chosen,
    Configuration,
    Envelope,
    Handover,
    Heartbeat,
    HeartbeatAck,
    Member,
    Message,
    Nack,
    Prepare,
    PreVote,
    PreVoteReply,
    Promise,
    Reconfigure,
    Snapshot,
    SnapshotRecord,
    Value,
)
from paxlock.coordinator.core.proposer import Proposer, Role
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

__all__ = ["CoreConfig", "Node"]


class Node:
    def __init__(
        self,
        config: CoreConfig,
        durable: DurableState,
        rng: Rng,
        *,
        acceptor: Acceptor | None = None,
        proposer: Proposer | None = None,
        learner: Learner | None = None,
    ) -> None:
        """``durable`` is what the store holds after a restart; the optional components let
        tests substitute deliberately broken roles to prove the checkers catch them."""
        self.config = config
        self.id = config.node_id
        first = durable.genesis or genesis(Member(m, "") for m in config.members)
        self.schedule = Schedule.starting(first)
        """Which configuration governs which slot (``core.membership``)."""
        self.snapshot: Snapshot | None = None
        """The latest snapshot (taken or installed): restored first, and served to nodes
        behind it. None before the first one. Its data holds the schedule at its slot and
        the state machine's own snapshot (``membership.encode_snapshot``)."""
        self._machine_snapshot = b""
        """The state machine's part of the durable snapshot, until ``start`` hands it over
        (then dropped: the wrapped snapshot is kept, and a second copy would double what a
        large state costs in memory)."""
        if durable.snapshot is not None:
            self.snapshot = Snapshot(durable.snapshot_slot, durable.snapshot)
            self.schedule, self._machine_snapshot = decode_snapshot(durable.snapshot)
            assert self.schedule.applied == durable.snapshot_slot, "a snapshot's own schedule"
        assert self.snapshot is not None or durable.snapshot_slot == 0, "snapshot data missing"
        self.members = self.schedule.member_ids()
        """Every member of a configuration in effect or pending: whom this node talks to."""
        self.acceptor = acceptor or Acceptor(durable.promised, dict(durable.accepted))
        self.learner = learner or Learner(self._slot_quorum, dict(durable.chosen), 0)
        self.proposer = proposer or Proposer(
            self.id, self._phase1_quorum, config.in_flight_slots_max, config.batch_commands_max,
            config.pending_max)  # fmt: skip
        if self.snapshot is not None:
            self._forget_through(self.snapshot.slot)
        self.highest_seen: Ballot = self.acceptor.promised
        self.rounds = Rounds(lambda ids: self.schedule.is_quorum(ids), self.id)  # (the
        # schedule is replaced by a snapshot's: rounds ask the node's current one)
        self.election = Election(config, rng, self.rounds)
        self.catchup = CatchUp(self.id, self.members, config.retry_s)
        self.heard = Heard(self.id, self.members)
        """When each member was last heard from, and its chosen index (``core.heard``)."""
        self.dropped: dict[str, int] = {}
        """Peer messages dropped unused, by reason (``admission.DROP_REASONS``): for the
        runtime to count and export."""
        self.served = Served()
        self._probes = 0
        """Catch-up probes of a learner that hears no primary (``_probe``)."""

    # -- public entry points -----------------------------------------------------------------

    @property
    def role(self) -> Role:
        return self.proposer.role

    @property
    def ballot(self) -> Ballot:
        return self.proposer.ballot

    @property
    def chosen_index(self) -> int:
        return self.learner.chosen_index

    @property
    def primary_hint(self) -> str | None:
        """The member believed to be primary (this node while it is one), else None."""
        return self.election.primary_hint

    @property
    def catchup_target(self) -> tuple[str, int] | None:
        """(a member known to be ahead, its chosen index) while this node is behind."""
        return self.catchup.target

    def start(self, now: float) -> Ready:
        """First step of an incarnation: restore the durable snapshot (``installed``), then
        deliver the durable chosen log after it; arm the timer."""
        out = Ready()
        if self.snapshot is not None:
            out.installed = (self.snapshot.slot, self._machine_snapshot)
            self._machine_snapshot = b""
        self.election.heard_primary(None, self.role, now)
        return self._finish(out, now)

    def compact(self, slot: int, data: bytes, now: float) -> Ready:
        """The state machine applied every slot up to ``slot`` and its snapshot is ``data``:
        persist it and drop the chosen and accepted entries it covers (compaction). A slot
        is compacted only once applied here, so it is chosen and within this node's chosen
        index, which every Promise reports: no primary proposes into it again."""
        assert slot <= self.learner.chosen_index, "a snapshot covers applied slots only"
        assert slot >= self.acceptor.snapshot_slot, "the snapshot slot never goes down"
        out = Ready()
        wrapped = encode_snapshot(self.schedule.at(slot), data)
        self.snapshot = Snapshot(slot, wrapped)
        out.records.append(SnapshotRecord(slot, wrapped))
        self._forget_through(slot)
        return self._finish(out, now)

    def receive(self, src: str, msg: Message, now: float) -> Ready:
        """One peer message, unless it is dropped (and counted in ``dropped``) by a rule of
        ``core.admission`` before it changes anything."""
        out = Ready()
        if src not in self.members and self.schedule.knows(self.id, self.config.incarnation):
            self._drop(NON_MEMBER)  # (a node no configuration lists hears the whole cluster)
            return self._finish(out, now)
        if message_round(msg) > self._round_known() + ROUNDS_AHEAD_MAX:
            self._drop(IMPLAUSIBLE_ROUND)
            return self._finish(out, now)
        self.heard.on_message(src, msg, now)
        match msg:
            case Prepare():
                self._on_prepare(src, msg, now, out)
            case Promise():
                self._on_promise(src, msg, now, out)
            case Accept() | Accepted() | Chosen() if not self._plausible(msg.slot):
                self._drop(IMPLAUSIBLE_SLOT)
            case Accept():
                self._on_accept(src, msg, now, out)
            case Accepted():
                self._on_accepted(src, msg, out)
            case Nack() if msg.ballot == self.proposer.ballot:  # a reply to our own ballot
                self._saw(msg.promised, now, out)
            case Chosen():
                self._on_chosen(src, msg, out)
            case Heartbeat():
                self._on_heartbeat(src, msg, now, out)
            case PreVote():
                self._send(src, self.election.on_prevote(src, msg, self.role, now), out)
            case PreVoteReply():
                if self.election.on_prevote_reply(src, msg, self.role):
                    self._run_phase1(now, out)
            case HeartbeatAck():
                self._on_heartbeat_ack(src, msg, now, out)
            case Handover():
                self._on_handover(src, msg, now, out)
            case CatchupRequest():
                self._on_catchup_request(src, msg, out)
            case CatchupReply():
                self._on_catchup_reply(src, msg, now, out)
        return self._finish(out, now)

    def submit(self, command: Any, now: float) -> Ready:
        """A client command. Only the primary proposes; others reject with a hint."""
        out = Ready()
        if self.role is not Role.PRIMARY:
            out.rejected.append(Rejection(command, self.primary_hint, False))
        elif not self.proposer.enqueue(command):
            out.rejected.append(Rejection(command, self.id, False))
        return self._finish(out, now)

    def reconfigure(self, change: Reconfigure, now: float) -> Ready:
        """Propose a configuration change in a slot of its own. Only the primary proposes;
        whether it takes effect is decided when it is applied (``membership``: a change not
        based on the newest configuration, or too soon after the last, changes nothing);
        ``MembershipChanged`` reports the outcome."""
        out = Ready()
        if self.role is Role.PRIMARY:
            self.proposer.singles.append(change)
        return self._finish(out, now)

    @property
    def votes(self) -> bool:
        """Whether this member incarnation votes in a configuration in effect or pending:
        a member outside every configuration (a store that was lost, a member not yet
        added) neither promises, nor accepts, nor stands for election."""
        return any(self._votes_in(c) for c in self.schedule.configurations())

    def _votes_in(self, configuration: Configuration) -> bool:
        return configuration.votes(self.id, self.config.incarnation)

    def hears(self, member_id: str, incarnation: str) -> bool:
        """Whether to take messages from this member incarnation (the edge asks on every
        peer connection): one that a configuration in effect or pending lists — or any of
        the cluster's, while this node lists itself in none (a member not yet admitted, or
        too far behind to know the members that admitted it: it votes for nothing, and it
        must hear the primary to catch up)."""
        schedule = self.schedule
        return schedule.knows(member_id, incarnation) or not schedule.knows(
            self.id, self.config.incarnation)

    def tick(self, now: float) -> Ready:
        out = Ready()
        if self.role is Role.PRIMARY and not self._votes_in(self.schedule.current):
            self._hand_over(now, out, or_step_down=True)
        match self.role:
            case Role.PRIMARY if self.election.quorum_lost(now):  # check quorum
                out.events.append(SteppedDown(self.ballot, None))
                out.rejected += self.proposer.step_down(None)
                self.election.forget_primary(now)
            case Role.PRIMARY:
                if now >= self.election.next_heartbeat:
                    self._send_heartbeats(now, out)
                for slot, value in self.proposer.due_retransmits(now, self.config.retry_s):
                    self._broadcast_accept(slot, value, out)
            case Role.CANDIDATE if not self.votes:  # removed while it stood: it stops
                out.rejected += self.proposer.step_down(None)
                self.election.forget_primary(now)
            case Role.CANDIDATE:
                if self.election.due(now):
                    self._elect(now, out)
                elif now >= self.proposer.phase1_sent_at + self.config.retry_s:
                    self.proposer.phase1_sent_at = now
                    prepare = Prepare(self.ballot, self.proposer.from_slot)
                    for member in self.members:
                        if member not in self.proposer.promises:
                            self._send(member, prepare, out)
            case Role.FOLLOWER if self.election.due(now):
                self._probe(now)
                if self.votes:
                    self._elect(now, out)
                else:  # a learner never stands: its next probe is a timeout away
                    self.election.heard_primary(None, self.role, now)
        self._ask_if_due(now, out)
        return self._finish(out, now)

    def request_confirmation(self, now: float) -> tuple[int | None, Ready]:
        """Start a confirmation round now; its ``Confirmed`` event carries the returned seq.
        None when this node is not primary."""
        out = Ready()
        seq = None
        if self.role is Role.PRIMARY:
            self._send_heartbeats(now, out)
            seq = self.rounds.seq
        return seq, self._finish(out, now)

    def hand_over(self, now: float) -> Ready:
        """A primary asked to stop steps down in favour of the member that acked its latest
        round, which runs phase 1 at once (no election timeout, no pre-vote): the office is
        vacant for about two round trips instead of an election timeout."""
        out = Ready()
        if self.role is Role.PRIMARY:
            self._hand_over(now, out, or_step_down=False)
        return self._finish(out, now)

    def run_phase1(self, now: float) -> Ready:
        """Start phase 1 with a fresh ballot now (used directly when the election is off)."""
        out = Ready()
        self._run_phase1(now, out)
        return self._finish(out, now)

    # -- phase 1 ---------------------------------------------------------------------------

    def _run_phase1(self, now: float, out: Ready) -> None:
        if self.role is Role.PRIMARY:
            out.rejected += self.proposer.step_down(None)
        ballot = self._highest_ballot().successor(NodeId(self.id))
        self.highest_seen = ballot
        self.acceptor.promise_own(ballot, out.records)
        from_slot = self.learner.chosen_index + 1
        self.proposer.begin_phase1(ballot, from_slot, now)
        self.election.forget_primary(now)  # none known unless this phase 1 succeeds
        out.events.append(Phase1Started(ballot, from_slot))
        prepare = Prepare(ballot, from_slot)
        for member in self.members:
            self._send(member, prepare, out)

    def _on_prepare(self, src: str, msg: Prepare, now: float, out: Ready) -> None:
        # A candidate knows the log chosen up to ``from_slot - 1``: a member behind it
        # catches up, which may show it that it votes now (a learner promoted meanwhile).
        self.catchup.note(src, msg.from_slot - 1, self.learner.chosen_index, now)
        if not self.schedule.knows(self.id, self.config.incarnation):
            return  # a member no configuration lists promises nothing (it may have forgotten)
        # A learner that a configuration lists promises too: its promise counts only where
        # a configuration lists it as a voter, and a new primary may need it there before
        # this learner has learned the change that promoted it.
        higher = msg.ballot > self.acceptor.promised
        if higher and self.election.has_live_primary(src, self.role, now):
            return
        self._saw(msg.ballot, now, out)
        reply = self.acceptor.on_prepare(msg, out.records)
        if isinstance(reply, Promise):
            assert self.chosen_index >= self.acceptor.snapshot_slot, "compacted slots are chosen"
            reply = Promise(reply.ballot, reply.from_slot, reply.accepted, self.chosen_index,
                            self.schedule.to_state())  # fmt: skip
        self._send(src, reply, out)

    def _on_promise(self, src: str, msg: Promise, now: float, out: Ready) -> None:
        if not self.proposer.on_promise(src, msg):
            return
        best = max(self.proposer.promises.items(), key=lambda item: item[1].chosen_index)
        reproposed = self.proposer.take_office(
            self.learner.chosen, now, chosen_index=self.learner.chosen_index
        )
        self.election.took_office(now)
        out.events.append(BecamePrimary(self.ballot, reproposed))
        self.catchup.note(best[0], best[1].chosen_index, self.learner.chosen_index, now)
        self._send_heartbeats(now, out)

    # -- phase 2 ---------------------------------------------------------------------------

    def _broadcast_accept(self, slot: int, value: Value, out: Ready) -> None:
        """To the voters of the configuration that governs ``slot`` (known: a primary
        proposes no slot past ``alpha`` after its applied prefix)."""
        governing = self.schedule.governing(slot)
        if governing is None:  # chosen here since it was proposed: acceptors tell us so
            assert slot <= self.learner.chosen_index, "proposed before its configuration known"
            governing = self.schedule.current
        accept = Accept(self.ballot, slot, value, self.learner.chosen_index)
        for member in governing.voter_ids:
            self._send(member, accept, out)

    def _on_accept(self, src: str, msg: Accept, now: float, out: Ready) -> None:
        """P1a, by a voter of the configuration that governs the slot (``membership``). A
        slot already chosen here (or compacted) is not accepted again: the proposer is
        shown how far the log is chosen instead, and catches up."""
        if not self.votes:
            return
        self._saw(msg.ballot, now, out)
        governing = self.schedule.governing(msg.slot)
        chosen_here = msg.slot <= self.learner.chosen_index
        if chosen_here or governing is None or not self._votes_in(governing):
            if msg.ballot < self.acceptor.promised:  # a deposed proposer learns it is
                self._send(src, Nack(msg.ballot, self.acceptor.promised), out)
            elif chosen_here and msg.chosen_index < self.chosen_index and src != self.id:
                self._send(src, CatchupReply((), self.chosen_index), out)
            else:  # not a voter in that slot's configuration, or too far behind to know
                self.catchup.note(src, msg.chosen_index, self.learner.chosen_index, now)
            return
        result = self.acceptor.on_accept(msg, out.records)
        if isinstance(result, Nack):
            self._send(src, result, out)
            return
        self.election.heard_primary(msg.ballot.node, self.role, now)
        self.catchup.note(src, msg.chosen_index, self.learner.chosen_index, now)
        if result is None:  # a compacted slot (chosen here, so only a broken acceptor's)
            return
        accepted = Accepted(result.ballot, result.slot, result.value)
        for learner in self.config.learn_mode.accepted_targets(msg.ballot.node, self.members):
            self._send(learner, accepted, out)

    def _on_accepted(self, src: str, msg: Accepted, out: Ready) -> None:
        if self.learner.on_accepted(src, msg.slot, msg.ballot, msg.value, out.records):
            self._after_learning(msg.slot, msg.value, out, ballot=msg.ballot)

    def _on_chosen(self, src: str, msg: Chosen, out: Ready) -> None:
        accepted = self.acceptor.accepted.get(msg.slot)
        if not chosen_believed(self.config, self.members, src, msg,
                               primary_hint=self.primary_hint, promised=self.acceptor.promised,
                               accepted=accepted):  # fmt: skip
            self._drop(UNFOLLOWED_CHOSEN)
            return
        self._learned(msg.slot, msg.value, out)

    def _learned(self, slot: int, value: Value, out: Ready) -> None:
        """Learned from another learner (a Chosen) or by catch-up: nobody is told."""
        if self.learner.learn(slot, value, out.records):
            self._after_learning(slot, value, out, ballot=None)

    def _after_learning(self, slot: int, value: Value, out: Ready, *,
                        ballot: Ballot | None) -> None:  # fmt: skip
        """A learner that saw the quorum itself (at ``ballot``) tells the others (methods 2
        and 3)."""
        self.proposer.on_chosen(slot)
        if ballot is not None and self.config.learn_mode.tells_learners():
            chosen = Chosen(slot, value, ballot)
            for member in self.members:
                self._send(member, chosen, out)

    # -- ballots seen, stepping down, heartbeats, election -------------------------------------

    def _saw(self, ballot: Ballot, now: float, out: Ready) -> None:
        """Any higher ballot makes a proposer abandon its own (the notes' progress fix)."""
        if ballot > self.highest_seen:
            self.highest_seen = ballot
        if self.role is not Role.FOLLOWER and ballot > self.proposer.ballot:
            out.events.append(SteppedDown(self.proposer.ballot, ballot))
            out.rejected += self.proposer.step_down(ballot.node)  # a likely successor
            self.election.forget_primary(now)  # until the new primary is heard from

    def _on_heartbeat(self, src: str, msg: Heartbeat, now: float, out: Ready) -> None:
        self._saw(msg.ballot, now, out)
        if msg.ballot < self.acceptor.promised:
            self._send(src, Nack(msg.ballot, self.acceptor.promised), out)
            return
        self._send(src, HeartbeatAck(msg.ballot, msg.seq, self.chosen_index), out)
        if self.role is Role.FOLLOWER:
            self.election.heard_primary(msg.ballot.node, self.role, now)
        self.catchup.note(src, msg.chosen_index, self.learner.chosen_index, now)

    def _on_handover(self, src: str, msg: Handover, now: float, out: Ready) -> None:
        if msg.ballot < self.acceptor.promised or msg.ballot.node != src:
            return  # a stale hand-over, or not from the primary that held the ballot
        if msg.target == self.id and self.role is not Role.PRIMARY:
            self._run_phase1(now, out)
        elif self.role is Role.FOLLOWER:
            self.election.handed_over(msg.target, now)

    def _on_heartbeat_ack(self, src: str, msg: HeartbeatAck, now: float, out: Ready) -> None:
        if self.role is not Role.PRIMARY or msg.ballot != self.ballot:
            return
        self._confirmed(self.rounds.on_ack(src, msg.seq), out)
        if msg.chosen_index is not None:  # a primary behind a follower fetches from it
            self.catchup.note(src, msg.chosen_index, self.learner.chosen_index, now)

    def _confirmed(self, confirmed: Confirmed | None, out: Ready) -> None:
        if confirmed is not None:
            out.events.append(confirmed)

    def _highest_ballot(self) -> Ballot:
        return max(self.highest_seen, self.acceptor.promised, self.proposer.ballot)

    def _elect(self, now: float, out: Ready) -> None:
        """The election timer ran out: phase 1 now, or first a pre-vote (``Election.start``)."""
        prevote = self.election.start(self._highest_ballot(), now)
        if prevote is None:
            self._run_phase1(now, out)
            return
        for member in self.members:
            if member != self.id:
                self._send(member, prevote, out)

    def _send_heartbeats(self, now: float, out: Ready) -> None:
        beat = self.election.heartbeat(self.ballot, self.learner.chosen_index, now,
                                       self.heard.report(now))  # fmt: skip
        for member in self.members:
            if member != self.id:
                self._send(member, beat, out)
        self._confirmed(self.rounds.progress(), out)  # a cluster of one confirms itself

    # -- catch-up and snapshots ---------------------------------------------------------------

    def _on_catchup_request(self, src: str, msg: CatchupRequest, out: Ready) -> None:
        snapshot, digest = self.snapshot, None
        if snapshot is not None and msg.from_slot <= snapshot.slot:
            snapshot, digest = self.served.pick(snapshot, msg)
        reply = serve(msg, self.learner.chosen, self.learner.chosen_index, snapshot,
                      self.config.catchup_entries_max,
                      chunk_bytes=self.config.snapshot_chunk_bytes, digest=digest)  # fmt: skip
        self._send(src, reply, out)

    def _on_catchup_reply(self, src: str, msg: CatchupReply, now: float, out: Ready) -> None:
        """Used only as the answer to the request outstanding (``CatchUp.take``); a reply
        with no entries and no chunk carries nothing to learn, only the sender's chosen
        index — a hint, as on a Heartbeat or an Accept — and is noted whoever asked."""
        if msg.entries or msg.chunk is not None:
            taken = self.catchup.take(src, msg)
            if isinstance(taken, str):
                self._drop(taken)
                return
            if taken.snapshot is not None and taken.snapshot.slot > self.learner.chosen_index:
                try:
                    decoded = decode_snapshot(taken.snapshot.data)
                except msgspec.MsgspecError:
                    self._drop(CORRUPT)  # its digest matched, its contents are no snapshot
                    return
                self._install(taken.snapshot, decoded, out)
            for entry in taken.entries:
                self._learned(entry.slot, entry.value, out)
            self._deliver(out)
        self.catchup.on_reply(src, msg, self.learner.chosen_index, now)
        self._ask_if_due(now, out)  # the next chunk, or the slots after, at once

    def _ask_if_due(self, now: float, out: Ready) -> None:
        if self.catchup.target is not None and now >= self.catchup.due:
            asked = self.catchup.ask(self.learner.chosen_index, self.primary_hint, now)
            if asked is not None:
                self._send(*asked, out)

    def _install(self, snapshot: Snapshot, decoded: tuple[Schedule, bytes], out: Ready) -> None:
        """Jump to a peer's snapshot: it stands for every slot up to its own, all chosen,
        and brings the schedule at that slot."""
        assert not out.learned, "the state machine is replaced before anything after it"
        self.snapshot = snapshot
        self.schedule, machine = decoded
        out.records.append(SnapshotRecord(snapshot.slot, snapshot.data))
        out.installed = (snapshot.slot, machine)
        self._forget_through(snapshot.slot)
        self._members_changed(out)

    def _forget_through(self, slot: int) -> None:
        """Every slot up to ``slot`` is covered by the snapshot: no role keeps or wants it."""
        self.learner.forget_through(slot)
        self.acceptor.compact(slot)
        self.proposer.forget_through(slot)

    # -- membership (``core.membership``) ----------------------------------------------------

    def _deliver(self, out: Ready) -> None:
        """Hand the chosen prefix to the state machine, each slot through the schedule
        first; a configuration it makes known lets votes counted earlier decide."""
        while True:
            delivered = len(out.learned)
            self.learner.deliver(out.learned)
            if len(out.learned) == delivered:
                return
            before = self.schedule.configurations()
            for entry in out.learned[delivered:]:
                if entry.slot != self.schedule.applied + 1:
                    continue  # restored with the snapshot it came after (or a broken learner's)
                made = self.schedule.apply(entry.slot, entry.value)
                if isinstance(entry.value, Reconfigure):
                    out.events.append(MembershipChanged(entry.slot, entry.value, made))
            if self.schedule.configurations() != before:
                self._members_changed(out)
            for slot, ballot, value in self.learner.recount(out.records):
                self._after_learning(slot, value, out, ballot=ballot)

    def _members_changed(self, out: Ready) -> None:
        self.members = self.schedule.member_ids()
        self.heard.set_members(self.members)
        self.catchup.members = self.members
        if not any(isinstance(e, MembershipChanged) for e in out.events):
            out.events.append(MembershipChanged(self.schedule.applied, None, None))

    def _probe(self, now: float) -> None:
        """A follower that heard no primary for an election timeout also asks a voter it
        knows how far the log is chosen (by catch-up): its configurations may be too old to
        list the primary, whose messages it then refuses — and the others, who follow that
        primary, refuse its pre-votes."""
        voters = [m for m in self.schedule.current.voter_ids if m != self.id]
        if voters and self.catchup.target is None:
            self._probes += 1
            own = self.learner.chosen_index
            self.catchup.note(voters[self._probes % len(voters)], own + 1, own, now)

    def _slot_quorum(self, slot: int, ids: Collection[str]) -> bool | None:
        governing = self.schedule.governing(slot)
        return None if governing is None else governing.is_quorum(ids)

    def _phase1_quorum(self, promises: dict[str, Promise]) -> bool:
        return phase1_complete(self.schedule, promises)

    def _hand_over(self, now: float, out: Ready, *, or_step_down: bool) -> None:
        """Hand the office to the voter that acked the latest round; with none, step down
        only when ``or_step_down`` (a primary that no configuration in effect lists as a
        voter: ``tick``)."""
        voters = tuple(m for m in self.schedule.current.voter_ids if m != self.id)
        target = self.rounds.freshest(voters)
        if target is None:
            if or_step_down:
                out.rejected += self.proposer.step_down(None)
                out.events.append(SteppedDown(self.ballot, None))
                self.election.forget_primary(now)
            return
        out.rejected += self.proposer.step_down(target)
        out.events.append(HandedOver(self.ballot, target))
        self.election.handed_over(target, now)
        for member in self.members:
            if member != self.id:
                self._send(member, Handover(self.ballot, target), out)

    # -- admission (``core.admission``) --------------------------------------------------------

    def _plausible(self, slot: int) -> bool:
        """Whether ``slot`` lies within ``admission.slots_ahead_max`` of the log this node
        knows: its chosen prefix, or the slots it proposed itself as primary."""
        known = max(self.learner.chosen_index, self.proposer.next_slot - 1)
        return slot <= known + slots_ahead_max(self.config)

    def _round_known(self) -> int:
        """The highest round this node knows of its own: promised, or proposed under."""
        return max(self.acceptor.promised.round, self.proposer.ballot.round)

    def _drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    # -- output ------------------------------------------------------------------------------

    def _send(self, dst: str, msg: Message, out: Ready) -> None:
        out.messages.append(Envelope(self.id, dst, msg))

    def _finish(self, out: Ready, now: float) -> Ready:
        self._deliver(out)
        pending = self.schedule.pending
        fill_through = pending[0] - 1 if pending is not None else 0
        for slot, value in self.proposer.next_proposals(
                now, last_slot=self.learner.chosen_index + self.schedule.alpha,
                fill_through=fill_through):
            self._broadcast_accept(slot, value, out)
        out.deadline = self._deadline()
        return out

    def _deadline(self) -> float:
        deadlines = [self.election.timer(self.role)]
        if self.role is Role.PRIMARY:
            oldest = self.proposer.oldest_in_flight()
            if oldest is not None:
                deadlines.append(oldest + self.config.retry_s)
        elif self.role is Role.CANDIDATE:
            deadlines.append(self.proposer.phase1_sent_at + self.config.retry_s)
        if self.catchup.target is not None:
            deadlines.append(self.catchup.due)
        return min(deadlines)

    def accepted_entries(self) -> dict[int, AcceptedEntry]:
        return self.acceptor.accepted
