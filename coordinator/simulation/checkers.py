"""Safety and liveness checkers of the simulator, run incrementally after every step.

The checker is omniscient: it sees every durable record, every message sent and every value a
learner delivers, and keeps the *ground truth* of what is chosen — a value is chosen in a slot
once a majority of acceptors have (durably) accepted it at one ballot, whatever they accept
later. Each check is named after the requirement of the notes it enforces:

- ``proposed``  (a) only a value that has been proposed may be chosen;
- ``single``    (b) only a single value is chosen per slot (P2);
- ``learned``   (c) a process never learns that a value has been chosen unless it has been;
- ``P2a``       (d) once v is chosen at ballot b, every proposal accepted at a higher ballot
                in that slot has value v;
- ``P2b``       (e) ... every proposal *issued* at a higher ballot in that slot has value v;
- ``prefix``    (f) the learners' logs are prefixes of one another; a log may resume right
                after a snapshot (installed by catch-up, or restored at restart), and every
                snapshot must equal the state machine's state after the chosen prefix up to
                its slot (folded from the ground truth, see ``machine.py``);
- ``liveness``  (g) once faults stop, every submitted command is chosen and learned by every
                node within the remaining steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from paxlock.coordinator.core.ballot import Ballot
from paxlock.coordinator.core.messages import Batch, ChosenEntry, Value
from paxlock.coordinator.simulation.machine import INITIAL, fold, snapshot_bytes

ChosenAt = Callable[[int], Value | None]
"""The ground truth: the value first chosen in a slot, None while none is."""


class StateModel(Protocol):
    """What a snapshot must be: the simulated state machine folded over the ground-truth
    chosen prefix (``prefix`` checks every snapshot, taken or installed, against it)."""

    def snapshot(self, slot: int, chosen_at: ChosenAt) -> bytes | int:
        """The snapshot bytes of the state after slots 1..``slot``, or the first slot up to
        ``slot`` that is not chosen yet."""
        ...


class HashChainModel:
    """The log-level simulator's machine (``machine.HashChain``)."""

    def __init__(self) -> None:
        self.chain = [INITIAL]
        """The state after each slot of the ground-truth chosen prefix."""

    def snapshot(self, slot: int, chosen_at: ChosenAt) -> bytes | int:
        while len(self.chain) <= slot:
            value = chosen_at(len(self.chain))
            if value is None:
                return len(self.chain)
            self.chain.append(fold(self.chain[-1], value))
        return snapshot_bytes(slot, self.chain[slot])


@dataclass(frozen=True, slots=True)
class Violation:
    check: str
    step: int
    detail: str


@dataclass(slots=True)
class _Slot:
    # ballot -> (value, acceptors that durably accepted it), ordered by arrival
    votes: dict[Ballot, tuple[Value, list[str]]] = field(default_factory=dict)
    issued: dict[Ballot, Value] = field(default_factory=dict)
    chosen: list[tuple[Ballot, Value]] = field(default_factory=list)


class Checker:
    def __init__(self, quorum: int, model: StateModel | None = None) -> None:
        self.quorum = quorum
        self.model: StateModel = model or HashChainModel()
        self.every_command_retried = True
        """False when clients retry with *new* commands (the lease simulation): a command
        may then rightly never be chosen, and liveness asks only that every node catches up."""
        self.step = 0
        self.slots: dict[int, _Slot] = {}
        self.submitted: set[bytes] = set()
        self.chosen_commands: set[bytes] = set()
        self.learned: dict[int, Value] = {}
        self.logs: dict[tuple[str, int], int] = {}
        self.violations: list[Violation] = []
        self.decisions = 0
        self.installs = 0
        """Snapshots installed by catch-up (restores at restart not counted)."""
        self.liveness_slot: int | None = None
        """Every node must have caught up to this slot at the end (default: the highest
        chosen slot; a workload that keeps writing to the end sets an earlier one)."""

    def _fail(self, check: str, detail: str) -> None:
        self.violations.append(Violation(check, self.step, detail))

    def _slot(self, slot: int) -> _Slot:
        state = self.slots.get(slot)
        if state is None:
            state = self.slots[slot] = _Slot()
        return state

    def first_chosen(self, slot: int) -> tuple[Ballot, Value] | None:
        state = self.slots.get(slot)
        return state.chosen[0] if state is not None and state.chosen else None

    def _chosen_value(self, slot: int) -> Value | None:
        truth = self.first_chosen(slot)
        return None if truth is None else truth[1]

    # -- observations ------------------------------------------------------------------------

    def on_submit(self, command: bytes) -> None:
        self.submitted.add(command)

    def on_issue(self, slot: int, ballot: Ballot, value: Value) -> None:
        """A proposer sent phase 2a for (slot, ballot, value)."""
        state = self._slot(slot)
        if ballot in state.issued:
            return
        state.issued[ballot] = value
        for chosen_ballot, chosen_value in state.chosen:
            if ballot > chosen_ballot and value != chosen_value:
                self._fail("P2b", f"slot {slot}: {value} issued at {ballot} after "
                                  f"{chosen_value} was chosen at {chosen_ballot}")  # fmt: skip

    def on_accept_record(self, acceptor: str, slot: int, ballot: Ballot, value: Value) -> None:
        """An acceptor durably accepted (slot, ballot, value)."""
        state = self._slot(slot)
        for chosen_ballot, chosen_value in state.chosen:
            if ballot > chosen_ballot and value != chosen_value:
                self._fail("P2a", f"slot {slot}: {acceptor} accepted {value} at {ballot} after "
                                  f"{chosen_value} was chosen at {chosen_ballot}")  # fmt: skip
        reported, voters = state.votes.setdefault(ballot, (value, []))
        if reported != value:
            self._fail("single", f"slot {slot}: two values accepted at one ballot {ballot}")
            return
        if acceptor in voters:
            return
        voters.append(acceptor)
        if len(voters) == self.quorum:
            self._on_chosen(slot, state, ballot, value)

    def _on_chosen(self, slot: int, state: _Slot, ballot: Ballot, value: Value) -> None:
        if not state.chosen:
            self.decisions += 1
        if value not in state.issued.values():
            self._fail("proposed", f"slot {slot}: {value} chosen but never proposed there")
        if isinstance(value, Batch):
            for command in value.commands:
                if command not in self.submitted:
                    self._fail("proposed", f"slot {slot}: command {command!r} never submitted")
                self.chosen_commands.add(command)
        for earlier_ballot, earlier in state.chosen:
            if earlier != value:
                self._fail("single", f"slot {slot}: {earlier} chosen at {earlier_ballot} and "
                                     f"{value} at {ballot}")  # fmt: skip
        for higher, (accepted, _) in state.votes.items():
            if higher > ballot and accepted != value:
                self._fail("P2a", f"slot {slot}: {accepted} accepted at {higher} though "
                                  f"{value} is chosen at {ballot}")  # fmt: skip
        for higher, issued in state.issued.items():
            if higher > ballot and issued != value:
                self._fail("P2b", f"slot {slot}: {issued} issued at {higher} though "
                                  f"{value} is chosen at {ballot}")  # fmt: skip
        state.chosen.append((ballot, value))

    def on_learn(self, node: str, slot: int, value: Value) -> None:
        """A learner recorded that ``value`` is chosen in ``slot`` (its ChosenRecord)."""
        truth = self.first_chosen(slot)
        if truth is None or truth[1] != value:
            self._fail("learned", f"{node} learned {value} in slot {slot}; chosen there: "
                                  f"{truth[1] if truth else 'nothing'}")  # fmt: skip

    def on_deliver(self, node: str, incarnation: int, entry: ChosenEntry) -> None:
        """A learner handed ``entry`` to its state machine: logs must be prefixes of one
        another, so every incarnation delivers slots 1, 2, 3, ... with the same values."""
        key = (node, incarnation)
        last = self.logs.get(key, 0)
        if entry.slot != last + 1:
            self._fail("prefix", f"{node} delivered slot {entry.slot} after slot {last}")
        self.logs[key] = max(last, entry.slot)
        known = self.learned.setdefault(entry.slot, entry.value)
        if known != entry.value:
            self._fail("prefix", f"{node} delivered {entry.value} in slot {entry.slot}, "
                                 f"another learner {known}")  # fmt: skip
        truth = self.first_chosen(entry.slot)
        if truth is None or truth[1] != entry.value:
            self._fail("learned", f"{node} delivered {entry.value} in slot {entry.slot}, "
                                  f"which is not chosen there")  # fmt: skip

    def on_snapshot(self, node: str, slot: int, data: bytes) -> None:
        """A node persisted a snapshot (taken or installed): it must be the state after the
        chosen prefix up to ``slot`` — a snapshot past the applied slots, or of corrupted
        content, would silently change the replicated state."""
        expected = self.model.snapshot(slot, self._chosen_value)
        if isinstance(expected, int):
            self._fail("prefix", f"{node} has a snapshot at slot {slot}, but slot "
                                 f"{expected} is not chosen")  # fmt: skip
            return
        if data != expected:
            self._fail("prefix", f"{node}'s snapshot at slot {slot} is not the state of the "
                                 f"chosen prefix up to it")  # fmt: skip

    def on_install(self, node: str, incarnation: int, slot: int, data: bytes, *,
                   transferred: bool) -> None:  # fmt: skip
        """A node replaced its state machine with a snapshot (from a peer by catch-up, or its
        own at restart): its log resumes right after ``slot``, never goes back."""
        key = (node, incarnation)
        last = self.logs.get(key, 0)
        if slot < last:
            self._fail("prefix", f"{node} installed a snapshot at slot {slot} after slot {last}")
        self.logs[key] = max(last, slot)
        self.installs += transferred
        self.on_snapshot(node, slot, data)

    def check_liveness(self, delivered_by_node: dict[str, int]) -> None:
        for detail in self.liveness_unmet(delivered_by_node):
            self._fail("liveness", detail)

    def liveness_unmet(self, delivered_by_node: dict[str, int]) -> list[str]:
        """What (g) still lacks: commands never chosen, nodes behind the chosen prefix."""
        unmet = []
        missing = sorted(self.submitted - self.chosen_commands)
        if missing and self.every_command_retried:
            unmet.append(f"{len(missing)} submitted commands never chosen, e.g. {missing[:3]}")
        top = self.liveness_slot
        if top is None:
            top = max((s for s, st in self.slots.items() if st.chosen), default=0)
        behind = {n: i for n, i in delivered_by_node.items() if i < top}
        if behind:
            unmet.append(f"nodes behind chosen slot {top}: {behind}")
        return unmet
