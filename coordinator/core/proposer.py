"""The proposer, run as Multi-Paxos by the distinguished proposer (the *primary*).

Phase 1 runs once for every open slot; afterwards each new batch of commands needs only
phase 2 in its own slot, with up to ``in_flight_slots_max`` slots in flight at once.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from paxlock.coordinator.core.ballot import ZERO_BALLOT, Ballot
from paxlock.coordinator.core.messages import NOOP, AcceptedEntry, Batch, Promise, Value
from paxlock.coordinator.core.ready import Rejection

Phase1Quorum = Callable[[dict[str, Promise]], bool]
"""Whether these promises complete phase 1 (``membership.phase1_complete``)."""


class Role(enum.Enum):
    FOLLOWER = "follower"
    CANDIDATE = "candidate"
    """Phase 1 is under way with ``Proposer.ballot``."""
    PRIMARY = "primary"
    """Phase 1 completed with a quorum: this node may issue phase 2 for any slot."""


@dataclass(slots=True)
class InFlight:
    value: Value
    sent_at: float


class Proposer:
    __slots__ = (
        "node_id", "quorum", "in_flight_slots_max", "batch_commands_max", "pending_max",
        "role", "ballot", "from_slot", "next_slot", "promises", "phase1_sent_at",
        "in_flight", "pending", "recovery", "singles",
    )  # fmt: skip

    def __init__(self, node_id: str, quorum: int | Phase1Quorum, in_flight_slots_max: int,
                 batch_commands_max: int, pending_max: int) -> None:  # fmt: skip
        assert in_flight_slots_max >= 1 and batch_commands_max >= 1 and pending_max >= 1
        self.node_id = node_id
        self.quorum: Phase1Quorum = (
            (lambda promises: len(promises) >= quorum) if isinstance(quorum, int) else quorum
        )
        self.in_flight_slots_max = in_flight_slots_max
        self.batch_commands_max = batch_commands_max
        self.pending_max = pending_max
        self.role = Role.FOLLOWER
        self.ballot = ZERO_BALLOT
        self.from_slot = 1
        self.next_slot = 1
        self.promises: dict[str, Promise] = {}
        self.phase1_sent_at = 0.0
        self.in_flight: dict[int, InFlight] = {}
        self.pending: deque[Any] = deque()
        self.recovery: deque[tuple[int, Value]] = deque()
        """Slots to re-propose after phase 1, sent within the window before new batches."""
        self.singles: deque[Value] = deque()
        """Values that take a slot of their own (a ``Reconfigure``), before new batches."""

    # -- phase 1 ---------------------------------------------------------------------------

    def begin_phase1(self, ballot: Ballot, from_slot: int, now: float) -> None:
        """Phase 1a: "A proposer selects a proposal number n and sends a prepare request with
        number n to a majority of acceptors" (the node sends it to all of them)."""
        assert ballot > self.ballot and ballot.node == self.node_id
        self.role = Role.CANDIDATE
        self.ballot = ballot
        self.from_slot = from_slot
        self.promises = {}
        self.phase1_sent_at = now

    def on_promise(self, acceptor: str, msg: Promise) -> bool:
        """Collects phase 1b replies; true once a majority promised this ballot."""
        if self.role is not Role.CANDIDATE or msg.ballot != self.ballot:
            return False
        self.promises[acceptor] = msg
        return self.quorum(self.promises)

    def value_for(self, slot: int, reported: AcceptedEntry | None) -> Value:
        """P2c: "(b) v is the value of the highest-numbered proposal among all proposals
        numbered less than n accepted by the acceptors in S", or, when (a) no acceptor in S
        accepted anything in the slot, any value: a no-op fills the hole."""
        return NOOP if reported is None else reported.value

    def take_office(self, chosen: dict[int, Value], now: float, *, chosen_index: int = 0) -> int:
        """Phase 2a after a majority promised: re-propose every open slot the quorum reported
        (P2c(b)), fill holes with no-ops, and number new batches after them. Slots that a
        promiser (or this node: ``chosen_index``) already knows chosen need no proposal (they
        are fetched by catch-up); this is also what keeps a primary out of compacted slots,
        whose accepted entries no promise reports any more. Returns how many slots are queued
        for re-proposal."""
        assert self.role is Role.CANDIDATE and self.quorum(self.promises)
        highest: dict[int, AcceptedEntry] = {}
        known_chosen = max(self.from_slot - 1, chosen_index)
        for promise in self.promises.values():
            known_chosen = max(known_chosen, promise.chosen_index)
            for entry in promise.accepted:
                known = highest.get(entry.slot)
                if known is None or entry.ballot > known.ballot:
                    highest[entry.slot] = entry
        top = max(max(highest, default=0), max(chosen, default=0), known_chosen)
        self.role = Role.PRIMARY
        self.promises = {}
        self.in_flight = {}
        self.recovery = deque(
            (slot, self.value_for(slot, highest.get(slot)))
            for slot in range(known_chosen + 1, top + 1)
            if slot not in chosen
        )
        self.next_slot = top + 1
        return len(self.recovery)

    # -- phase 2 ---------------------------------------------------------------------------

    def enqueue(self, command: Any) -> bool:
        """Queues a command for the next free slot; false when the queue is full."""
        if len(self.pending) >= self.pending_max:
            return False
        self.pending.append(command)
        return True

    def next_proposals(self, now: float, *, last_slot: float = float("inf"),
                       fill_through: int = 0) -> list[tuple[int, Value]]:  # fmt: skip
        """Group commit and pipelining: waiting commands go out as batches, one per slot,
        while fewer than ``in_flight_slots_max`` slots are in flight and up to
        ``last_slot``, the last slot whose configuration this node knows
        (``core.membership``). With nothing else to propose, no-ops fill the slots up to
        ``fill_through``, so that a configuration change takes effect without waiting for
        traffic."""
        proposals: list[tuple[int, Value]] = []
        if self.role is not Role.PRIMARY:
            return proposals

        def room() -> bool:
            return len(self.in_flight) < self.in_flight_slots_max

        while self.recovery and room() and self.recovery[0][0] <= last_slot:
            slot, value = self.recovery.popleft()
            self.in_flight[slot] = InFlight(value, now)
            proposals.append((slot, value))
        if self.recovery:
            return proposals  # new slots are numbered after the recovered ones
        while (self.singles or self.pending or self.next_slot <= fill_through) and room() \
                and self.next_slot <= last_slot:
            if self.singles:
                value = self.singles.popleft()
            elif self.pending:
                take = min(self.batch_commands_max, len(self.pending))
                value = Batch(tuple(self.pending.popleft() for _ in range(take)))
            else:
                value = NOOP
            slot = self.next_slot
            self.next_slot += 1
            self.in_flight[slot] = InFlight(value, now)
            proposals.append((slot, value))
        return proposals

    def on_chosen(self, slot: int) -> None:
        self.in_flight.pop(slot, None)

    def forget_through(self, slot: int) -> None:
        """A snapshot covers every slot up to ``slot``: they are chosen, propose none again."""
        self.in_flight = {s: f for s, f in self.in_flight.items() if s > slot}
        self.recovery = deque((s, v) for s, v in self.recovery if s > slot)
        self.next_slot = max(self.next_slot, slot + 1)

    def due_retransmits(self, now: float, retry_s: float) -> list[tuple[int, Value]]:
        due = []
        for slot, flight in self.in_flight.items():
            if flight.sent_at + retry_s <= now:
                flight.sent_at = now
                due.append((slot, flight.value))
        return due

    def oldest_in_flight(self) -> float | None:
        return min((f.sent_at for f in self.in_flight.values()), default=None)

    # -- stepping down ----------------------------------------------------------------------

    def step_down(self, primary_hint: str | None) -> list[Rejection]:
        """Abandon the ballot ("abandoning a proposal ... if it learns about some request with
        a higher proposal number"). Commands already sent may still be chosen."""
        rejected = [
            Rejection(command, primary_hint, maybe_chosen=True)
            for flight in self.in_flight.values()
            if isinstance(flight.value, Batch)
            for command in flight.value.commands
        ]
        rejected += [Rejection(command, primary_hint, False) for command in self.pending]
        self.role = Role.FOLLOWER
        self.promises = {}
        self.in_flight = {}
        self.recovery.clear()
        self.pending.clear()
        self.singles.clear()
        return rejected
