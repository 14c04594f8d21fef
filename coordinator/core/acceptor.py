"""The acceptor: the durable memory of Paxos.

One promised ballot covers every slot (Multi-Paxos); per slot it keeps only the highest-ballot
proposal it accepted, which is all that phase 1b must report (P2c). Every change is returned
as a record that the runtime makes durable before the reply that reports it leaves.
"""

from __future__ import annotations

from paxlock.coordinator.core.ballot import Ballot
from paxlock.coordinator.core.messages import (
    Accept,
    AcceptedEntry,
    AcceptRecord,
    Nack,
    Prepare,
    Promise,
    PromiseRecord,
    Record,
)


class Acceptor:
    __slots__ = ("promised", "accepted", "snapshot_slot")

    def __init__(self, promised: Ballot, accepted: dict[int, AcceptedEntry]) -> None:
        self.promised = promised
        self.accepted = accepted
        self.snapshot_slot = 0
        """Slots up to here are compacted: known chosen and applied, their entries dropped."""

    def compact(self, slot: int) -> None:
        """Drop the entries a snapshot covers. Safe because those slots are chosen and every
        Promise carries the node's chosen index (>= ``slot``), so no new primary asks for
        them again (``Proposer.take_office`` skips them)."""
        assert slot >= self.snapshot_slot, "the snapshot slot never goes down"
        self.snapshot_slot = slot
        self.accepted = {s: e for s, e in self.accepted.items() if s > slot}

    def promise_own(self, ballot: Ballot, records: list[Record]) -> None:
        """A proposer's own acceptor promises its new ballot before phase 1a leaves.

        Persisting it first is what keeps ballots unique across a crash: after a restart the
        node's next ballot is built above its promise, so it never reissues an old ballot.
        """
        assert ballot > self.promised, "a promise never goes down"
        self.promised = ballot
        records.append(PromiseRecord(ballot))

    def on_prepare(self, msg: Prepare, records: list[Record]) -> Promise | Nack:
        """Phase 1b: "If an acceptor receives a prepare request with number n greater than
        that of any prepare request to which it has already responded, then it responds with
        a promise not to accept any more proposals numbered less than n and with the
        highest-numbered proposal (if any) that it has accepted."

        A prepare *equal* to the promise is answered again (a retransmission): it is the same
        promise, so answering twice promises nothing new.
        """
        if msg.ballot < self.promised:
            return Nack(msg.ballot, self.promised)
        if msg.ballot > self.promised:
            self.promised = msg.ballot
            records.append(PromiseRecord(msg.ballot))
        reported = tuple(
            entry for slot, entry in sorted(self.accepted.items()) if slot >= msg.from_slot
        )
        assert all(e.slot > self.snapshot_slot for e in reported), "compacted entries are gone"
        return Promise(msg.ballot, msg.from_slot, reported)

    def on_accept(self, msg: Accept, records: list[Record]) -> AcceptedEntry | Nack | None:
        """Phase 2b and P1a: "it accepts the proposal unless it has already responded to a
        prepare request having a number greater than n".

        None for a slot at or below the snapshot: it is chosen already and its entry is gone,
        so the acceptor neither accepts (an AcceptRecord would resurrect a compacted slot)
        nor answers Accepted (it cannot vouch for a value it no longer holds: a stale
        proposer could count it towards a value that was never chosen). Accepting nothing
        keeps P2a trivially; the node tells the proposer how far it knows the log chosen,
        and the proposer catches up instead. A ballot below the promise is refused first.
        """
        if msg.ballot < self.promised:
            return Nack(msg.ballot, self.promised)
        if msg.slot <= self.snapshot_slot:
            return None
        if msg.ballot > self.promised:
            self.promised = msg.ballot
            records.append(PromiseRecord(msg.ballot))
        entry = AcceptedEntry(msg.slot, msg.ballot, msg.value)
        previous = self.accepted.get(msg.slot)
        if previous != entry:
            assert previous is None or previous.ballot != msg.ballot, (
                "two values proposed in one slot at one ballot"
            )
            self.accepted[msg.slot] = entry
            records.append(AcceptRecord(msg.slot, msg.ballot, msg.value))
        assert self.accepted[msg.slot].ballot <= self.promised
        return entry
