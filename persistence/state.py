"""What a store hands back at open, and the in-memory mirror that guards what it writes.

The mirror applies records with ``DurableState.apply`` — the one definition of what a record
means — so the store agrees with the simulator's memory store by construction. It adds the
checks that only make sense next to a disk (TigerBeetle's paired assertions): checked before a
record is written, and again (``verify_loaded``) after the state is read back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from paxlock.coordinator.core.messages import (
    AcceptedEntry,
    AcceptRecord,
    ChosenRecord,
    PromiseRecord,
    Record,
)
from paxlock.coordinator.core.ready import DurableState


@dataclass(frozen=True, slots=True)
class LoadedState:
    """Everything a node is rebuilt from after a restart.

    ``durable`` holds no slot the snapshot made redundant unless it was appended after the
    snapshot was taken; ``snapshot`` is None (and ``snapshot_slot`` 0) before the first one.
    """

    durable: DurableState
    snapshot_slot: int
    snapshot: bytes | None


class Mirror:
    """A ``DurableState`` plus the snapshot point, kept in step with the file."""

    __slots__ = ("durable", "snapshot_slot", "snapshot")

    def __init__(self, loaded: LoadedState) -> None:
        self.durable = loaded.durable.copy()
        self.snapshot_slot = loaded.snapshot_slot
        self.snapshot = loaded.snapshot

    def admit(self, records: Iterable[Record]) -> None:
        """Apply ``records`` all or nothing: they are checked on an overlay of the slots they
        touch first, so a caller's programmer error (AssertionError) leaves the mirror intact.
        """
        base = self.durable
        overlay = DurableState(base.promised, {}, {})
        for record in records:
            match record:
                case AcceptRecord(slot=slot, ballot=ballot, value=value):
                    if slot not in overlay.accepted and slot in base.accepted:
                        overlay.accepted[slot] = base.accepted[slot]
                    previous = overlay.accepted.get(slot)
                    assert previous is None or previous.ballot <= ballot, (
                        "a slot's accepted ballot never goes down"
                    )
                    assert previous is None or previous.ballot != ballot or (
                        previous.value == value
                    ), "one ballot carries one value per slot"
                case ChosenRecord(slot=slot):
                    if slot not in overlay.chosen and slot in base.chosen:
                        overlay.chosen[slot] = base.chosen[slot]
                case PromiseRecord():
                    pass
            overlay.apply(record)
        base.promised = overlay.promised
        base.accepted.update(overlay.accepted)
        base.chosen.update(overlay.chosen)

    def compact(self, slot: int, data: bytes) -> None:
        """Take a snapshot at ``slot``: forget accepted and chosen slots at or below it."""
        assert slot >= self.snapshot_slot, "a snapshot never goes back"
        self.snapshot_slot = slot
        self.snapshot = data
        durable = self.durable
        durable.accepted = {s: e for s, e in durable.accepted.items() if s > slot}
        durable.chosen = {s: v for s, v in durable.chosen.items() if s > slot}

    def loaded(self) -> LoadedState:
        return LoadedState(self.durable.copy(), self.snapshot_slot, self.snapshot)


def verify_loaded(state: DurableState) -> str | None:
    """The read-side half of the paired checks: what must hold in any file we wrote.
    Returns a description of the first violation, or None."""
    for slot, entry in state.accepted.items():
        if not isinstance(entry, AcceptedEntry) or entry.slot != slot:
            return f"accepted row for slot {slot} is inconsistent"
        if entry.ballot > state.promised:
            return (
                f"slot {slot} accepted ballot {entry.ballot} above the promise {state.promised}"
            )
    return None
