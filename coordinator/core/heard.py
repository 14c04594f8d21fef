"""Whom this node heard from, and when: the per-member record behind ``reachable`` and lag in
``/v1/cluster`` and ``paxlock status`` (issue 11).

Every message a member sends is a sign of life, and heartbeats, accepts, promises, heartbeat
acks and catch-up traffic also carry the sender's chosen index. ``Heard`` keeps, per member,
when this node last received anything from it — the ``now`` of the step that delivered it;
the core reads no clock — and the chosen index it last reported. Pure, like the rest of
the core: outsiders read it through ``LeaseReplica.status()``.

**How a follower learns about the other followers.** In the normal flow a follower hears
only from the primary (heartbeats, accepts, chosen values), never from another follower.
Two ways out: followers could *ask* each other (a new request and reply, about N² more
messages per period, another timer), or the primary could *relay* what it hears. The
primary already hears from every live follower at every heartbeat (its acks), so each
heartbeat carries, per member, how long ago the primary heard from it and the chosen index
it last reported (``messages.HeardFrom``). That costs no extra message, only bytes on one
that is sent anyway, at most one entry per member (``MEMBERS_MAX``, checked at the decoder
like every field of an entry, so a forged entry drops its frame instead of reaching here).
It is also the view that matters: a follower the primary does not hear from cannot be part
of the majority that makes progress.

Ages cross the wire, not times (members' monotonic clocks have nothing in common); the
receiver dates a relayed record ``now - age_s``, which makes it look up to one message delay
fresher than it is. A relayed record names the member that relayed it (``via``), and it
replaces a record only when it is fresher, so a direct record is never overwritten by an
older relayed one. The primary relays its direct records only: nothing travels in circles.
While there is no primary, relayed records age like direct ones, and a member nobody hears
from becomes unreachable in every view — as it is for the election.
"""

from __future__ import annotations

from dataclasses import dataclass

from paxlock.coordinator.core.messages import (
    AGE_S_MAX,
    MEMBERS_MAX,
    Accept,
    CatchupReply,
    CatchupRequest,
    HeardFrom,
    Heartbeat,
    HeartbeatAck,
    Message,
    Promise,
)

__all__ = ["Contact", "Heard", "reported_chosen_index"]


@dataclass(frozen=True, slots=True)
class Contact:
    """The latest news of one member."""

    member: str
    heard_at: float
    """When (this node's clock) the member was last heard from."""
    chosen_index: int | None
    """The chosen index it last reported (None: it has reported none yet)."""
    via: str | None
    """None when heard directly; else the member (the primary) that relayed the news."""


def reported_chosen_index(msg: Message) -> int | None:
    """The sender's own chosen index, for the messages that carry it (None otherwise, and
    for a negative value, which no member sends)."""
    index: int | None
    match msg:
        case Heartbeat() | Accept() | Promise() | CatchupReply() | HeartbeatAck():
            index = msg.chosen_index
        case CatchupRequest():
            index = msg.from_slot - 1  # it asks for the first slot it lacks
        case _:
            index = None
    return index if index is not None and index >= 0 else None


class Heard:
    __slots__ = ("node_id", "members", "_contacts")

    def __init__(self, node_id: str, members: tuple[str, ...]) -> None:
        assert len(members) <= MEMBERS_MAX, "more members than a heartbeat can report on"
        self.node_id = node_id
        self.members = members
        self._contacts: dict[str, Contact] = {}
        """One record per other member at most (never this node, never a non-member)."""

    def set_members(self, members: tuple[str, ...]) -> None:
        """The configuration changed: forget members that left it."""
        self.members = members
        self._contacts = {m: c for m, c in self._contacts.items() if m in members}

    def on_message(self, src: str, msg: Message, now: float) -> None:
        """Any message from ``src`` shows it alive at ``now``; a heartbeat also brings the
        primary's news of the others."""
        if src == self.node_id or src not in self.members:
            return
        reported = reported_chosen_index(msg)
        if reported is None:
            known = self._contacts.get(src)
            reported = known.chosen_index if known is not None else None
        self._contacts[src] = Contact(src, now, reported, None)
        if isinstance(msg, Heartbeat):
            self._relayed(src, msg.heard, now)

    def _relayed(self, src: str, entries: tuple[HeardFrom, ...], now: float) -> None:
        for entry in entries:
            member = entry.member
            if member in (self.node_id, src) or member not in self.members:
                continue
            heard_at = now - entry.age_s
            known = self._contacts.get(member)
            if known is not None and known.heard_at >= heard_at:
                continue  # what this node knows is as fresh already
            chosen = entry.chosen_index
            if chosen is None and known is not None:
                chosen = known.chosen_index
            self._contacts[member] = Contact(member, heard_at, chosen, src)
        assert len(self._contacts) <= len(self.members), "one per member"

    def report(self, now: float) -> tuple[HeardFrom, ...]:
        """What a primary's heartbeat relays: its direct records, in member order."""
        out = []
        for member in self.members:
            contact = self._contacts.get(member)
            if contact is not None and contact.via is None:
                age_s = min(max(0.0, now - contact.heard_at), AGE_S_MAX)
                out.append(HeardFrom(member, age_s, contact.chosen_index))
        return tuple(out)

    def contacts(self) -> tuple[Contact, ...]:
        """Every other member heard from so far, directly or not, in member order."""
        return tuple(self._contacts[m] for m in self.members if m in self._contacts)
