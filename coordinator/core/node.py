"""One paxlock node's consensus logic: acceptor, learner and proposer composed, plus the
election of the primary and catch-up. Pure and synchronous: every entry point takes the
current time and returns a ``Ready``; randomness comes from the injected ``random.Random``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from paxlock.coordinator.core.acceptor import Acceptor
from paxlock.coordinator.core.ballot import Ballot
from paxlock.coordinator.core.learner import Learner, LearnMode
from paxlock.coordinator.core.messages import (
    Accept,
    Accepted,
    AcceptedEntry,
    CatchupReply,
    CatchupRequest,
    Chosen,
    ChosenEntry,
    Envelope,
    Heartbeat,
    HeartbeatAck,
    Message,
    Nack,
    Prepare,
    Promise,
    Value,
)
from paxlock.coordinator.core.proposer import Proposer, Role
from paxlock.coordinator.core.ready import (
    BecamePrimary,
    Confirmed,
    DurableState,
    Phase1Started,
    Ready,
    Rejection,
    SteppedDown,
)


@dataclass(frozen=True, slots=True)
class CoreConfig:
    node_id: str
    members: tuple[str, ...]
    learn_mode: LearnMode = field(default_factory=lambda: LearnMode("broadcast"))
    election: bool = True
    """Off only in tests that drive phase 1 by hand (the notes' dueling proposers)."""
    election_timeout_s: float = 0.5
    """T: a follower that heard no primary for a random time in [T, 2T] runs phase 1."""
    heartbeat_s: float = 0.1
    retry_s: float = 0.2
    window: int = 64
    max_batch: int = 512
    max_pending: int = 10_000
    catchup_max_entries: int = 256

    def __post_init__(self) -> None:
        if self.node_id not in self.members:
            raise ValueError(f"node {self.node_id!r} is not among members {self.members}")
        if len(set(self.members)) != len(self.members):
            raise ValueError("member ids must be unique")
        if not 0 < self.heartbeat_s < self.election_timeout_s:
            raise ValueError("heartbeat_s must be positive and below election_timeout_s")

    @property
    def quorum(self) -> int:
        return len(self.members) // 2 + 1


class Node:
    def __init__(
        self,
        config: CoreConfig,
        durable: DurableState,
        rng: random.Random,
        *,
        acceptor: Acceptor | None = None,
        proposer: Proposer | None = None,
        learner: Learner | None = None,
    ) -> None:
        """``durable`` is what the store holds after a restart; the optional components let
        tests substitute deliberately broken roles to prove the checkers catch them."""
        self.config = config
        self.id = config.node_id
        self.members = tuple(sorted(config.members))
        self.rng = rng
        self.acceptor = acceptor or Acceptor(durable.promised, dict(durable.accepted))
        self.learner = learner or Learner(config.quorum, dict(durable.chosen), 0)
        self.proposer = proposer or Proposer(
            self.id, config.quorum, config.window, config.max_batch, config.max_pending
        )
        self.highest_seen: Ballot = self.acceptor.promised
        self.primary_hint: str | None = None
        self.heard_primary_at = float("-inf")
        self.election_deadline = 0.0
        self.next_heartbeat = 0.0
        self.catchup_due = 0.0
        self.catchup_target: tuple[str, int] | None = None
        self.catchup_asked = False
        """Whether the current source was already asked once (a retry asks another)."""
        # Confirmation rounds (heartbeats with a sequence number), primary side.
        self.heartbeat_seq = 0
        self.confirmed_seq = 0
        self.confirmed_sent_at = 0.0
        self._acked: dict[str, int] = {}
        self._round_sent_at: dict[int, float] = {}

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

    def start(self, now: float) -> Ready:
        """First step of an incarnation: deliver the durable chosen log, arm the timer."""
        out = Ready()
        self._heard_primary(None, now)
        return self._finish(out, now)

    def receive(self, src: str, msg: Message, now: float) -> Ready:
        out = Ready()
        match msg:
            case Prepare():
                self._on_prepare(src, msg, now, out)
            case Promise():
                self._on_promise(src, msg, now, out)
            case Accept():
                self._on_accept(src, msg, now, out)
            case Accepted():
                self._on_accepted(src, msg, out)
            case Nack():
                self._on_nack(msg, now, out)
            case Chosen():
                self._learned(msg.slot, msg.value, out, by_learner=True)
            case Heartbeat():
                self._on_heartbeat(src, msg, now, out)
            case HeartbeatAck():
                self._on_heartbeat_ack(src, msg, out)
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

    def tick(self, now: float) -> Ready:
        out = Ready()
        cfg = self.config
        match self.role:
            case Role.PRIMARY if now - self.confirmed_sent_at > cfg.election_timeout_s:
                # Check quorum: no majority acked any round sent in the last T, so others may
                # have elected a successor; stop serving rather than answer from a stale view.
                out.events.append(SteppedDown(self.ballot, None))
                out.rejected += self.proposer.step_down(None)
                self.primary_hint = None
                self._heard_primary(None, now)
            case Role.PRIMARY:
                if now >= self.next_heartbeat:
                    self._send_heartbeats(now, out)
                for slot, value in self.proposer.due_retransmits(now, cfg.retry_s):
                    self._broadcast_accept(slot, value, out)
            case Role.CANDIDATE:
                if cfg.election and now >= self.election_deadline:
                    self._run_phase1(now, out)
                elif now >= self.proposer.phase1_sent_at + cfg.retry_s:
                    self.proposer.phase1_sent_at = now
                    prepare = Prepare(self.ballot, self.proposer.from_slot)
                    for member in self.members:
                        if member not in self.proposer.promises:
                            self._send(member, prepare, out)
            case Role.FOLLOWER:
                if cfg.election and now >= self.election_deadline:
                    self._run_phase1(now, out)
        if self.catchup_target is not None and now >= self.catchup_due:
            self._request_catchup(now, out)
        return self._finish(out, now)

    def request_confirmation(self, now: float) -> tuple[int | None, Ready]:
        """Start a confirmation round now; its ``Confirmed`` event carries the returned seq.
        None when this node is not primary."""
        out = Ready()
        seq = None
        if self.role is Role.PRIMARY:
            self._send_heartbeats(now, out)
            seq = self.heartbeat_seq
        return seq, self._finish(out, now)

    def run_phase1(self, now: float) -> Ready:
        """Start phase 1 with a fresh ballot now (used directly when the election is off)."""
        out = Ready()
        self._run_phase1(now, out)
        return self._finish(out, now)

    # -- phase 1 ---------------------------------------------------------------------------

    def _run_phase1(self, now: float, out: Ready) -> None:
        self.primary_hint = None
        if self.role is Role.PRIMARY:
            out.rejected += self.proposer.step_down(None)
        above = max(self.highest_seen, self.acceptor.promised, self.proposer.ballot)
        ballot = above.successor(self.id)
        self.highest_seen = ballot
        self.acceptor.promise_own(ballot, out.records)
        from_slot = self.learner.chosen_index + 1
        self.proposer.begin_phase1(ballot, from_slot, now)
        self.election_deadline = now + self._election_timeout()
        out.events.append(Phase1Started(ballot, from_slot))
        prepare = Prepare(ballot, from_slot)
        for member in self.members:
            self._send(member, prepare, out)

    def _on_prepare(self, src: str, msg: Prepare, now: float, out: Ready) -> None:
        if msg.ballot > self.acceptor.promised and self._has_live_primary(src, now):
            return
        self._saw(msg.ballot, now, out)
        reply = self.acceptor.on_prepare(msg, out.records)
        if isinstance(reply, Promise):
            reply = Promise(reply.ballot, reply.from_slot, reply.accepted, self.chosen_index)
        self._send(src, reply, out)

    def _on_promise(self, src: str, msg: Promise, now: float, out: Ready) -> None:
        if not self.proposer.on_promise(src, msg):
            return
        best = max(self.proposer.promises.items(), key=lambda item: item[1].chosen_index)
        reproposed = self.proposer.take_office(self.learner.chosen, now)
        self.primary_hint = self.id
        # A new ballot starts its rounds afresh (older acks do not count); the phase-1 quorum
        # that just answered counts as recent contact for the check-quorum rule.
        self._acked = {}
        self._round_sent_at = {}
        self.confirmed_seq = self.heartbeat_seq
        self.confirmed_sent_at = now
        out.events.append(BecamePrimary(self.ballot, reproposed))
        self._note_chosen_index(best[0], best[1].chosen_index, now)
        self._send_heartbeats(now, out)

    # -- phase 2 ---------------------------------------------------------------------------

    def _broadcast_accept(self, slot: int, value: Value, out: Ready) -> None:
        accept = Accept(self.ballot, slot, value, self.learner.chosen_index)
        for member in self.members:
            self._send(member, accept, out)

    def _on_accept(self, src: str, msg: Accept, now: float, out: Ready) -> None:
        self._saw(msg.ballot, now, out)
        result = self.acceptor.on_accept(msg, out.records)
        if isinstance(result, Nack):
            self._send(src, result, out)
            return
        self._heard_primary(msg.ballot.node, now)
        self._note_chosen_index(src, msg.chosen_index, now)
        accepted = Accepted(result.ballot, result.slot, result.value)
        for learner in self.config.learn_mode.accepted_targets(msg.ballot.node, self.members):
            self._send(learner, accepted, out)

    def _on_accepted(self, src: str, msg: Accepted, out: Ready) -> None:
        if self.learner.on_accepted(src, msg.slot, msg.ballot, msg.value, out.records):
            self._after_learning(msg.slot, msg.value, out, by_learner=False)

    def _learned(self, slot: int, value: Value, out: Ready, *, by_learner: bool) -> None:
        if self.learner.learn(slot, value, out.records):
            self._after_learning(slot, value, out, by_learner=by_learner)

    def _after_learning(self, slot: int, value: Value, out: Ready, *, by_learner: bool) -> None:
        """A learner that saw the quorum itself tells the others (methods 2 and 3)."""
        self.proposer.on_chosen(slot)
        if not by_learner and self.config.learn_mode.tells_learners():
            chosen = Chosen(slot, value)
            for member in self.members:
                self._send(member, chosen, out)

    # -- ballots seen, stepping down, election ------------------------------------------------

    def _saw(self, ballot: Ballot, now: float, out: Ready) -> None:
        """Any higher ballot makes a proposer abandon its own (the notes' progress fix)."""
        if ballot > self.highest_seen:
            self.highest_seen = ballot
        if self.role is not Role.FOLLOWER and ballot > self.proposer.ballot:
            out.events.append(SteppedDown(self.proposer.ballot, ballot))
            out.rejected += self.proposer.step_down(ballot.node)  # a likely successor
            self.primary_hint = None  # until the new primary is heard from
            self._heard_primary(None, now)

    def _on_nack(self, msg: Nack, now: float, out: Ready) -> None:
        if msg.ballot == self.proposer.ballot:
            self._saw(msg.promised, now, out)

    def _on_heartbeat(self, src: str, msg: Heartbeat, now: float, out: Ready) -> None:
        self._saw(msg.ballot, now, out)
        if msg.ballot < self.acceptor.promised:
            self._send(src, Nack(msg.ballot, self.acceptor.promised), out)
            return
        self._send(src, HeartbeatAck(msg.ballot, msg.seq), out)
        if self.role is Role.FOLLOWER:
            self._heard_primary(msg.ballot.node, now)
        self._note_chosen_index(src, msg.chosen_index, now)

    def _on_heartbeat_ack(self, src: str, msg: HeartbeatAck, out: Ready) -> None:
        if self.role is not Role.PRIMARY or msg.ballot != self.ballot:
            return
        if msg.seq > self._acked.get(src, 0):
            self._acked[src] = msg.seq
        self._confirm_progress(out)

    def _confirm_progress(self, out: Ready) -> None:
        acked = sorted([self.heartbeat_seq, *self._acked.values()], reverse=True)
        if len(acked) < self.config.quorum:
            return
        seq = acked[self.config.quorum - 1]  # the highest round a majority has acked
        if seq <= self.confirmed_seq:
            return
        self.confirmed_seq = seq
        self.confirmed_sent_at = self._round_sent_at[seq]
        for old in [s for s in self._round_sent_at if s < seq]:
            del self._round_sent_at[old]
        out.events.append(Confirmed(seq, self.confirmed_sent_at))

    def _has_live_primary(self, candidate: str, now: float) -> bool:
        """No disruption by a node that merely lost its own link (DESIGN.md §2): while a
        node heard a live primary within T — or is one, confirmed by a majority within T —
        it ignores another node's phase 1a. Once the primary is silent for T, it answers.
        Only with the election on; safety does not depend on it."""
        if not self.config.election or candidate == self.id:
            return False
        t = self.config.election_timeout_s
        if self.role is Role.PRIMARY:
            return now - self.confirmed_sent_at < t
        return (self.role is Role.FOLLOWER and self.primary_hint not in (None, candidate)
                and now - self.heard_primary_at < t)  # fmt: skip

    def _heard_primary(self, primary: str | None, now: float) -> None:
        """"A node that has heard from a live primary within T does not start phase 1": the
        election deadline moves to a random point in [T, 2T] after every sign of life."""
        if primary is not None:
            self.primary_hint = primary
            self.heard_primary_at = now
        self.election_deadline = now + self._election_timeout()

    def _election_timeout(self) -> float:
        t = self.config.election_timeout_s
        return self.rng.uniform(t, 2 * t)

    def _send_heartbeats(self, now: float, out: Ready) -> None:
        self.next_heartbeat = now + self.config.heartbeat_s
        self.heartbeat_seq += 1
        self._round_sent_at[self.heartbeat_seq] = now
        beat = Heartbeat(self.ballot, self.learner.chosen_index, self.heartbeat_seq)
        for member in self.members:
            if member != self.id:
                self._send(member, beat, out)
        if self.config.quorum == 1:  # a cluster of one confirms itself
            self._confirm_progress(out)

    # -- catch-up ----------------------------------------------------------------------------

    def _note_chosen_index(self, src: str, chosen_index: int, now: float) -> None:
        """Behind the sender: fetch chosen slots, unless ordinary learning fills the gap
        within one retry interval (the usual case: its Chosen or Accepted are on the way)."""
        if chosen_index <= self.learner.chosen_index:
            return
        if self.catchup_target is None:
            self.catchup_due = now + self.config.retry_s
        elif self.catchup_target[1] >= chosen_index:
            return
        self.catchup_target = (src, chosen_index)
        self.catchup_asked = False

    def _request_catchup(self, now: float, out: Ready) -> None:
        assert self.catchup_target is not None
        src, target = self.catchup_target
        if target <= self.learner.chosen_index:
            self.catchup_target = None
            return
        # The first request goes to whoever showed us ahead; a retry (that source may have
        # crashed) goes to the known primary, else to the next member in turn.
        if self.catchup_asked:
            others = [m for m in self.members if m != self.id]
            if self.primary_hint not in (None, self.id, src):
                src = self.primary_hint  # type: ignore[assignment]
            elif others:
                src = others[(others.index(src) + 1) % len(others)] if src in others else others[0]
            self.catchup_target = (src, target)
        self.catchup_asked = True
        self.catchup_due = now + self.config.retry_s
        self._send(src, CatchupRequest(self.learner.chosen_index + 1), out)

    def _on_catchup_request(self, src: str, msg: CatchupRequest, out: Ready) -> None:
        entries = []
        chosen = self.learner.chosen
        for slot in range(msg.from_slot, msg.from_slot + self.config.catchup_max_entries):
            value = chosen.get(slot)
            if value is None:
                break
            entries.append(ChosenEntry(slot, value))
        self._send(src, CatchupReply(tuple(entries), self.learner.chosen_index), out)

    def _on_catchup_reply(self, src: str, msg: CatchupReply, now: float, out: Ready) -> None:
        for entry in msg.entries:
            self._learned(entry.slot, entry.value, out, by_learner=True)
        self.learner.deliver(out.learned)
        if msg.entries and msg.chosen_index > self.learner.chosen_index:
            self.catchup_target = (src, msg.chosen_index)
            self.catchup_asked = False
            self.catchup_due = now  # more to fetch: ask again at once

    # -- output ------------------------------------------------------------------------------

    def _send(self, dst: str, msg: Message, out: Ready) -> None:
        out.messages.append(Envelope(self.id, dst, msg))

    def _finish(self, out: Ready, now: float) -> Ready:
        self.learner.deliver(out.learned)
        for slot, value in self.proposer.next_proposals(now):
            self._broadcast_accept(slot, value, out)
        out.deadline = self._deadline()
        return out

    def _deadline(self) -> float:
        deadlines = []
        match self.role:
            case Role.PRIMARY:
                deadlines.append(self.next_heartbeat)
                oldest = self.proposer.oldest_in_flight()
                if oldest is not None:
                    deadlines.append(oldest + self.config.retry_s)
            case Role.CANDIDATE:
                deadlines.append(self.proposer.phase1_sent_at + self.config.retry_s)
                if self.config.election:
                    deadlines.append(self.election_deadline)
            case Role.FOLLOWER:
                if self.config.election:
                    deadlines.append(self.election_deadline)
        if self.catchup_target is not None:
            deadlines.append(self.catchup_due)
        return min(deadlines) if deadlines else float("inf")

    def accepted_entries(self) -> dict[int, AcceptedEntry]:
        return self.acceptor.accepted
