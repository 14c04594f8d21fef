"""The learner and the three ways of learning a chosen value from the notes.

- ``broadcast`` (method 1): every acceptor sends its Accepted to every learner; A×L messages
  per decision, and every learner learns one hop after the acceptors.
- ``primary`` (method 2): acceptors send Accepted only to the distinguished learner (the
  primary, which issued the ballot); it tells every learner with ``Chosen``: A+L messages,
  one hop more, and learning stalls while that learner is down (catch-up repairs it).
- ``set:K`` (method 3): K distinguished learners (the primary and the K-1 members after it in
  member order) each hear from every acceptor and each tell every learner: K·(A+L) messages.

The distinguished learner counts itself among the learners it tells, so the counts are exact.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

from paxlock.coordinator.core.ballot import Ballot
from paxlock.coordinator.core.messages import ChosenEntry, ChosenRecord, Record, Value


@dataclass(frozen=True, slots=True)
class LearnMode:
    kind: str
    """``broadcast``, ``primary`` or ``set``."""
    k: int = 1

    @classmethod
    def parse(cls, text: str) -> LearnMode:
        """``broadcast`` | ``primary`` | ``set:K``; raises ``ValueError`` on anything else."""
        if text in ("broadcast", "primary"):
            return cls(text)
        kind, _, count = text.partition(":")
        if kind == "set" and count.isdigit() and int(count) >= 1:
            return cls("set", int(count))
        raise ValueError(f"learn mode must be broadcast, primary or set:K, not {text!r}")

    def __str__(self) -> str:
        return f"set:{self.k}" if self.kind == "set" else self.kind

    def accepted_targets(self, proposer: str, members: tuple[str, ...]) -> tuple[str, ...]:
        """Where an acceptor sends its Accepted for a ballot issued by ``proposer``."""
        if self.kind == "broadcast":
            return members
        k = 1 if self.kind == "primary" else min(self.k, len(members))
        start = members.index(proposer) if proposer in members else 0
        return tuple(members[(start + i) % len(members)] for i in range(k))

    def tells_learners(self) -> bool:
        """Whether a learner that sees a quorum must tell the others with ``Chosen``."""
        return self.kind != "broadcast"

    def messages_per_decision(self, acceptors: int, learners: int) -> int:
        """The notes' message counts, as asserted by the tests and exported as a metric."""
        if self.kind == "broadcast":
            return acceptors * learners
        k = 1 if self.kind == "primary" else min(self.k, learners)
        return k * (acceptors + learners)


SlotQuorum = Callable[[int, Collection[str]], "bool | None"]
"""Whether acceptors ``ids`` are a majority of the configuration that governs ``slot``;
None while that configuration is not known here yet (``core.membership``)."""


def counting(quorum: int) -> SlotQuorum:
    """A fixed majority of ``quorum`` acceptors, whatever the slot (one static configuration)."""
    return lambda slot, ids: len(ids) >= quorum


class Learner:
    """Finds out that a proposal has been accepted by a majority of acceptors, and delivers
    chosen values in slot order, each exactly once per incarnation."""

    __slots__ = ("quorum", "chosen", "applied_index", "_votes", "_deferred")

    def __init__(self, quorum: int | SlotQuorum, chosen: dict[int, Value],
                 applied_index: int) -> None:  # fmt: skip
        self.quorum: SlotQuorum = counting(quorum) if isinstance(quorum, int) else quorum
        self.chosen = chosen
        self.applied_index = applied_index
        # slot -> ballot -> (value, acceptors that reported it); ordered dicts only, so that a
        # run does not depend on string hashing.
        self._votes: dict[int, dict[Ballot, tuple[Value, list[str]]]] = {}
        self._deferred: dict[int, None] = {}
        """Slots with votes counted before their configuration was known here."""

    def on_accepted(
        self, acceptor: str, slot: int, ballot: Ballot, value: Value, records: list[Record]
    ) -> bool:
        """Method 1's rule: a value is learned once a majority accepted it at one ballot.
        Returns whether this report made the slot chosen here."""
        if slot in self.chosen or slot <= self.applied_index:
            return False
        by_ballot = self._votes.setdefault(slot, {})
        reported, voters = by_ballot.setdefault(ballot, (value, []))
        assert reported == value, "one ballot carries one value per slot"
        if acceptor not in voters:
            voters.append(acceptor)
        decided = self.quorum(slot, voters)
        if decided is None:
            self._deferred[slot] = None
        if not decided:
            return False
        self.learn(slot, value, records)
        return True

    def recount(self, records: list[Record]) -> list[tuple[int, Ballot, Value]]:
        """Count again the votes of slots whose configuration was unknown when they came
        (the applied prefix has moved since): returns what they made chosen."""
        learned = []
        for slot in list(self._deferred):
            by_ballot = self._votes.get(slot)
            if by_ballot is None or slot in self.chosen or slot <= self.applied_index:
                del self._deferred[slot]
                continue
            for ballot, (value, voters) in by_ballot.items():
                decided = self.quorum(slot, voters)
                if decided is None:
                    break
                if decided:
                    self.learn(slot, value, records)
                    learned.append((slot, ballot, value))
                    break
            else:
                del self._deferred[slot]
            if slot in self.chosen:
                self._deferred.pop(slot, None)
        return learned

    def learn(self, slot: int, value: Value, records: list[Record]) -> bool:
        """Record a value known to be chosen (by a quorum, a distinguished learner or
        catch-up). Returns whether it was new."""
        if slot <= self.applied_index:
            return False
        known = self.chosen.get(slot)
        if known is not None:
            assert known == value, "a chosen slot's value never changes"
            return False
        self.chosen[slot] = value
        self._votes.pop(slot, None)
        records.append(ChosenRecord(slot, value))
        return True

    def deliver(self, learned: list[ChosenEntry]) -> None:
        """Hand over the contiguous chosen prefix not yet applied, in slot order."""
        while (value := self.chosen.get(self.applied_index + 1)) is not None:
            self.applied_index += 1
            learned.append(ChosenEntry(self.applied_index, value))

    def forget_through(self, slot: int) -> None:
        """A snapshot at ``slot`` stands for every slot up to it: drop the chosen values and
        votes it covers, and resume delivery after it. Taken here (compaction), it covers
        applied slots only; installed from a peer, it jumps the applied index forward, and the
        slots it covers must never be delivered (the state machine gets the snapshot)."""
        self.applied_index = max(self.applied_index, slot)
        self.chosen = {s: v for s, v in self.chosen.items() if s > slot}
        self._votes = {s: v for s, v in self._votes.items() if s > slot}
        self._deferred = {s: None for s in self._deferred if s > slot}

    @property
    def chosen_index(self) -> int:
        """The end of the contiguous chosen prefix (every slot up to it is known chosen)."""
        return self.applied_index

    def highest_known(self) -> int:
        return max(self.chosen, default=self.applied_index)
