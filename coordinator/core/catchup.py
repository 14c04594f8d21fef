"""Catch-up: "a node that is behind fetches chosen slots, or a snapshot when the slots it
needs were compacted away" (DESIGN.md §2).

The fetching side (``CatchUp``) remembers who showed this node to be behind and when to ask;
the serving side (``serve``) answers from the chosen log, or with the snapshot first when the
slots asked for are gone. Installing a snapshot is the node's job (``Node._install``): it
touches every role.
"""

from __future__ import annotations

from paxlock.coordinator.core.messages import (
    CatchupReply,
    CatchupRequest,
    ChosenEntry,
    Snapshot,
    Value,
)


class CatchUp:
    """Whom to ask for the slots this node is missing, and when."""

    __slots__ = ("node_id", "members", "retry_s", "target", "due", "asked")

    def __init__(self, node_id: str, members: tuple[str, ...], retry_s: float) -> None:
        self.node_id = node_id
        self.members = members
        self.retry_s = retry_s
        self.target: tuple[str, int] | None = None
        """(source, its chosen index): a member known to be ahead of this node."""
        self.due = 0.0
        self.asked = False
        """Whether the current source was already asked once (a retry asks another)."""

    def note(self, src: str, chosen_index: int, own_index: int, now: float) -> None:
        """Behind the sender: fetch chosen slots, unless ordinary learning fills the gap
        within one retry interval (the usual case: its Chosen or Accepted are on the way)."""
        if chosen_index <= own_index:
            return
        if self.target is None:
            self.due = now + self.retry_s
        elif self.target[1] >= chosen_index:
            return
        self.target = (src, chosen_index)
        self.asked = False

    def ask(self, own_index: int, primary_hint: str | None,
            now: float) -> tuple[str, CatchupRequest] | None:  # fmt: skip
        """The request to send now (and to whom), or None once nothing is missing."""
        assert self.target is not None
        src, target = self.target
        if target <= own_index:
            self.target = None
            return None
        # The first request goes to whoever showed us ahead; a retry (that source may have
        # crashed) goes to the known primary, else to the next member in turn.
        if self.asked:
            others = [m for m in self.members if m != self.node_id]
            if primary_hint not in (None, self.node_id, src):
                src = primary_hint
            elif others:
                src = others[(others.index(src) + 1) % len(others)] if src in others else others[0]
            self.target = (src, target)
        self.asked = True
        self.due = now + self.retry_s
        return src, CatchupRequest(own_index + 1)

    def on_reply(self, src: str, msg: CatchupReply, own_index: int, now: float) -> None:
        """A reply that brought something while more is missing: ask again at once. One that
        brought nothing but shows the sender ahead (sent unasked, see ``Acceptor.on_accept``)
        is noted like any other sign of being behind."""
        if msg.chosen_index <= own_index:
            return
        if msg.entries or msg.snapshot is not None:
            self.target = (src, msg.chosen_index)
            self.asked = False
            self.due = now
        else:
            self.note(src, msg.chosen_index, own_index, now)


def serve(
    msg: CatchupRequest,
    chosen: dict[int, Value],
    chosen_index: int,
    snapshot: Snapshot | None,
    entries_max: int,
) -> CatchupReply:
    """Chosen slots contiguous from the one asked for, at most ``entries_max``. Slots at or
    below the snapshot were compacted away: the snapshot goes instead, entries after it."""
    start = msg.from_slot
    shipped = None
    if snapshot is not None and start <= snapshot.slot:
        shipped = snapshot
        start = snapshot.slot + 1
    entries = []
    for slot in range(start, start + entries_max):
        value = chosen.get(slot)
        if value is None:
            break
        entries.append(ChosenEntry(slot, value))
    return CatchupReply(tuple(entries), chosen_index, shipped)
