"""Membership: who votes, who only learns, and which configuration governs each slot.

A *configuration* lists the voters (acceptors whose votes count) and the learners (members
that follow the log without a vote), each as a *member incarnation*: a member id, the random
incarnation id its store was created with, and its URL. A store that is lost and recreated
under the same member id gets a new incarnation, which no configuration lists: it cannot
vote until a configuration change admits it again (DESIGN.md §2, Membership).

Configurations change through the log, as Paxos Made Simple §3 proposes: a ``Reconfigure``
value chosen in slot ``i`` sets the configuration of slots ``i + ALPHA`` on. The rule that
decides which configuration governs each slot:

    **Slot s is governed by the genesis configuration changed by every valid
    ``Reconfigure`` chosen in a slot at or below s - ALPHA, in slot order.**

So a node that knows the chosen prefix up to ``c`` knows the configuration of every slot up
to ``c + ALPHA`` and of no slot after; a primary never proposes past that (``governing``
returns None), and a learner that counts votes for a slot whose configuration it does not
know yet waits for the prefix.

ALPHA is the genesis configuration's ``alpha`` (64 unless a simulation says otherwise).

A ``Reconfigure`` is *valid* in slot ``i`` when it names as its base the newest
configuration chosen before it, when that one already governs slot ``i`` (so changes are at
least ALPHA slots apart), and when its voters differ from the base's by at most one member.
Validity is a function of the chosen log, so every member decides it alike; an invalid one
changes nothing (like a deposed primary's stale ``Expire``). The consequence the quorum rules
below rest on: **the configurations that govern any ALPHA consecutive slots are at most two,
and their voters differ by one member, so every majority of one meets every majority of the
other** (the argument of Raft's single-server changes).

Phase 1 for every slot from ``c + 1`` on needs a majority of each configuration that may
govern one of those slots (``phase1_complete``): the known ones up to ``c + ALPHA``, then the
ones that the values P2c makes the new primary re-propose would set, slot by slot
(``Schedule.chain``). A value chosen in slot ``s`` was proposed by a primary that knew the
prefix up to ``s - ALPHA`` chosen, so every configuration change that governs ``s`` is among
those values, and the promise quorum holds a majority of its voters.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

import msgspec

from paxlock.coordinator.core.messages import (
    MEMBERS_MAX, NOOP, AcceptedEntry, Configuration, CoreSnapshot, Member, Promise,
    Reconfigure, ScheduleEntry, ScheduleState, Value,
)  # fmt: skip

ALPHA = 64
"""How many slots after its own a configuration change takes effect, by default. Every
member must use the same one (it decides which majority chose each slot): it is part of
the genesis configuration (``Configuration.alpha``) and every later one inherits it."""
RETIRED_KEPT = 8
"""How many configurations that no longer govern a schedule remembers (``Schedule.at``)."""


def genesis(members: Iterable[Member], alpha: int = ALPHA) -> Configuration:
    """The configuration a cluster bootstraps with: every initial member votes."""
    return Configuration(0, tuple(sorted(members, key=lambda m: m.id)), (), alpha)


def cluster_id_of(first: Configuration) -> str:
    """The cluster id: a digest of the genesis configuration (every initial member
    incarnation), so a joining member can check the genesis it is given against the id."""
    return hashlib.sha256(msgspec.msgpack.encode(first)).hexdigest()[:32]


# --- changes (pure; the primary builds a ``Reconfigure`` with one) ------------------------


class MembershipError(ValueError):
    """A change that cannot be made to the configuration: ``code`` is the API error code
    (``conflict`` for a member that is already there or is not where the change needs it,
    ``invalid`` for a change that would leave no voter)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _sorted(members: Iterable[Member]) -> tuple[Member, ...]:
    return tuple(sorted(members, key=lambda m: m.id))


def add_learner(config: Configuration, member: Member) -> Reconfigure:
    if config.member(member.id) is not None:
        raise MembershipError("conflict", f"{member.id} is already a member; remove it first")
    if len(config.voters) + len(config.learners) >= MEMBERS_MAX:
        raise MembershipError("invalid", f"a cluster has at most {MEMBERS_MAX} members")
    return Reconfigure(config.epoch, config.voters, _sorted((*config.learners, member)))


def promote(config: Configuration, member_id: str) -> Reconfigure:
    learner = next((m for m in config.learners if m.id == member_id), None)
    if learner is None:
        where = "a voter already" if member_id in config.voter_ids else "not a member"
        raise MembershipError("conflict", f"{member_id} is {where}; only a learner is promoted")
    return Reconfigure(config.epoch, _sorted((*config.voters, learner)),
                       tuple(m for m in config.learners if m.id != member_id))  # fmt: skip


def remove(config: Configuration, member_id: str) -> Reconfigure:
    if config.member(member_id) is None:
        raise MembershipError("not_found", f"{member_id} is not a member")
    voters = tuple(m for m in config.voters if m.id != member_id)
    if not voters:
        raise MembershipError("invalid", "the last voter cannot be removed")
    learners = tuple(m for m in config.learners if m.id != member_id)
    return Reconfigure(config.epoch, voters, learners)


def valid_successor(base: Configuration, change: Reconfigure) -> bool:
    """Whether ``change`` may follow ``base``: same base, at least one voter, unique ids,
    and voters that differ from ``base``'s by at most one member incarnation."""
    if change.base != base.epoch or not change.voters:
        return False
    ids = [m.id for m in (*change.voters, *change.learners)]
    if len(set(ids)) != len(ids) or len(ids) > MEMBERS_MAX:
        return False
    return len(set(base.voters).symmetric_difference(change.voters)) <= 1


# --- the schedule: which configuration governs which slot ----------------------------------


class Schedule:
    """The configurations of the slots after the applied prefix, as this node knows them.

    ``entries`` are ``(first_slot, configuration)`` in slot order: the first governs from the
    slot after the applied prefix (at the latest), and each later one, made by a change chosen
    in the last ALPHA slots, from its own first slot. By the validity rule there are at most
    two. Updated by ``apply`` for every chosen slot in order, restored from snapshots.
    """

    __slots__ = ("entries", "applied", "retired")

    def __init__(self, entries: list[tuple[int, Configuration]], applied: int = 0) -> None:
        assert entries, "a schedule always has a configuration in effect"
        self.entries = entries
        self.applied = applied
        self.retired: list[tuple[int, Configuration]] = []
        """The last few entries that no longer govern a slot after the applied prefix, so
        that ``at`` can give the schedule of a recent slot."""

    @classmethod
    def starting(cls, first: Configuration) -> Schedule:
        return cls([(1, first)], 0)

    @property
    def alpha(self) -> int:
        return self.entries[0][1].alpha

    @property
    def current(self) -> Configuration:
        """The configuration of the next slot to apply."""
        return self.governing(self.applied + 1) or self.entries[0][1]

    @property
    def latest(self) -> Configuration:
        """The newest configuration chosen, in effect or not yet."""
        return self.entries[-1][1]

    @property
    def pending(self) -> tuple[int, Configuration] | None:
        """The change chosen but not yet in effect at the next slot, with its first slot."""
        first, config = self.entries[-1]
        return (first, config) if first > self.applied + 1 else None

    def governing(self, slot: int) -> Configuration | None:
        """The configuration of ``slot``, or None while the prefix that decides it (up to
        ``slot - ALPHA``) is not all applied here."""
        if slot > self.applied + self.alpha:
            return None
        found = None
        for first, config in self.entries:
            if first <= slot:
                found = config
        return found

    def configurations(self) -> tuple[Configuration, ...]:
        """Every configuration that governs a slot after the applied prefix."""
        return tuple(config for _, config in self.entries)

    def knows(self, member_id: str, incarnation: str) -> bool:
        """Whether a member incarnation belongs to a configuration in effect or pending:
        the peers this node talks to and hears from."""
        return any(c.knows(member_id, incarnation) for c in self.configurations())

    def member_ids(self) -> tuple[str, ...]:
        return tuple(sorted({i for c in self.configurations() for i in c.ids}))


    def is_quorum(self, ids: Iterable[str]) -> bool:
        """A majority of every configuration in effect or pending: what a confirmation
        round, a check-quorum and a pre-vote need."""
        ids = set(ids)
        return all(c.is_quorum(ids) for c in self.configurations())

    def apply(self, slot: int, value: Value) -> Configuration | None:
        """The chosen value of ``slot``, the next one in order: returns the configuration a
        valid ``Reconfigure`` made (in effect from ``slot + ALPHA``), None otherwise."""
        assert slot == self.applied + 1, "chosen slots are applied in order"
        self.applied = slot
        made = None
        if isinstance(value, Reconfigure):
            first, latest = self.entries[-1]
            if first <= slot and valid_successor(latest, value):
                made = value.configuration(slot, self.alpha)
                self.entries.append((slot + self.alpha, made))
        while len(self.entries) > 1 and self.entries[1][0] <= self.applied + 1:
            self.retired = [*self.retired[-(RETIRED_KEPT - 1):], self.entries.pop(0)]
        return made

    def at(self, slot: int) -> Schedule:
        """The schedule as it was when ``slot`` was the applied prefix (a snapshot taken a
        little behind this node's prefix)."""
        assert slot <= self.applied, "only a slot already applied"
        known = [e for e in (*self.retired, *self.entries) if e[1].epoch <= slot]
        while len(known) > 1 and known[1][0] <= slot + 1:
            known.pop(0)
        assert known and (known[0][0] <= slot + 1 or known[0][1].epoch == 0), \
            "that slot is older than the schedule remembers"
        return Schedule(known, slot)

    def chain(self, from_slot: int, values: dict[int, Value]
              ) -> list[Configuration]:  # fmt: skip
        """Every configuration that may govern a slot from ``from_slot`` on, when the
        values P2c will re-propose are ``values`` (slot → value) and this schedule is
        applied up to ``from_slot - 1``: the known ones, then each one a valid change among
        ``values`` would make, in slot order (module docstring)."""
        assert from_slot == self.applied + 1
        probe = self.copy()
        seen = list(probe.configurations())
        for slot in range(from_slot, max(values, default=0) + 1):
            made = probe.apply(slot, values.get(slot, NOOP))
            if made is not None:
                seen.append(made)
        return seen

    def copy(self) -> Schedule:
        return Schedule(list(self.entries), self.applied)

    def to_state(self) -> ScheduleState:
        return ScheduleState(self.applied, tuple(ScheduleEntry(f, c) for f, c in self.entries))

    @classmethod
    def from_state(cls, state: ScheduleState) -> Schedule:
        return cls([(e.first_slot, e.configuration) for e in state.entries], state.applied)



def phase1_complete(own: Schedule, promises: Mapping[str, Promise]) -> bool:
    """Phase 1 is complete once the promises hold a majority of every configuration that
    may govern a slot the new primary will propose into: from the furthest chosen prefix a
    promise reports (known chosen: nothing to re-propose there), by that promiser's
    schedule (``own``, this node's, when none is further), then by the values P2c will
    re-propose (``Schedule.chain``)."""
    base = own
    for promise in promises.values():
        if promise.chosen_index > base.applied and promise.schedule is not None:
            reported = Schedule.from_state(promise.schedule)
            if reported.applied == promise.chosen_index:
                base = reported
    highest: dict[int, AcceptedEntry] = {}
    for promise in promises.values():
        for entry in promise.accepted:
            known = highest.get(entry.slot)
            if entry.slot > base.applied and (known is None or entry.ballot > known.ballot):
                highest[entry.slot] = entry
    values = {slot: entry.value for slot, entry in highest.items()}
    ids = set(promises)
    return all(config.is_quorum(ids) for config in base.chain(base.applied + 1, values))


_SNAPSHOT_DECODER = msgspec.msgpack.Decoder(CoreSnapshot)


def encode_snapshot(schedule: Schedule, machine: bytes) -> bytes:
    """A snapshot's bytes: the schedule at its slot travels and persists with it, so a
    member that installs it knows the configurations after it."""
    return msgspec.msgpack.encode(CoreSnapshot(schedule.to_state(), machine))


def decode_snapshot(data: bytes) -> tuple[Schedule, bytes]:
    """The schedule and the state machine's snapshot (``msgspec.ValidationError`` or
    ``DecodeError`` when the bytes are not a snapshot: a corrupt store or transfer)."""
    snapshot = _SNAPSHOT_DECODER.decode(data)
    return Schedule.from_state(snapshot.schedule), snapshot.machine
