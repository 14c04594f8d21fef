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
    __slots__ = ("promised", "accepted")

    def __init__(self, promised: Ballot, accepted: dict[int, AcceptedEntry]) -> None:
        self.promised = promised
        self.accepted = accepted

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
        return Promise(msg.ballot, msg.from_slot, reported)

    def on_accept(self, msg: Accept, records: list[Record]) -> AcceptedEntry | Nack:
        """Phase 2b and P1a: "it accepts the proposal unless it has already responded to a
        prepare request having a number greater than n"."""
        if msg.ballot < self.promised:
            return Nack(msg.ballot, self.promised)
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
