"""The cluster object's parts that are not the replica's own status: the members as this
node sees them (``member_views``) and the recent changes of the primary it saw
(``PrimaryChanges``), for ``GET /v1/cluster`` and the status page."""

from __future__ import annotations

from collections import deque
from typing import Any

from paxlock.coordinator.core.node import Node
from paxlock.coordinator.core.replica_io import ReplicaStatus

PRIMARY_CHANGES_MAX = 20


class PrimaryChanges:
    """The last ``PRIMARY_CHANGES_MAX`` changes of the primary this node saw since it started,
    oldest first, in memory only: the first is what it saw at start (often no primary).
    Stamped with wall-clock seconds, as they are shown to people, never compared."""

    def __init__(self, primary: str | None, ballot: str | None, at: float) -> None:
        self._changes: deque[dict[str, Any]] = deque(maxlen=PRIMARY_CHANGES_MAX)
        self._changes.append({"at": round(at, 3), "primary": primary, "ballot": ballot})

    @property
    def primary(self) -> str | None:
        """The primary seen last."""
        primary: str | None = self._changes[-1]["primary"]
        return primary

    def saw(self, primary: str | None, ballot: str | None, at: float) -> None:
        """Record ``primary`` (as seen after a replica step) when it is another one."""
        if primary != self.primary:
            self._changes.append({"at": round(at, 3), "primary": primary, "ballot": ballot})

    @property
    def ballot_unknown(self) -> bool:
        """The current primary's ballot is not known yet: a follower can hear who leads
        (a heartbeat) before it promises or accepts under that primary's ballot."""
        last = self._changes[-1]
        return last["primary"] is not None and last["ballot"] is None

    def learned_ballot(self, ballot: str | None) -> None:
        """The current primary's ballot, once known, fills in its entry."""
        if ballot is not None and self.ballot_unknown:
            self._changes[-1]["ballot"] = ballot

    def as_json(self) -> list[dict[str, Any]]:
        return [dict(change) for change in self._changes]


def primary_ballot(node: Node, primary: str | None) -> str | None:
    """The ballot of ``primary`` as ``node`` knows it: its own while it is the primary, else
    the one it promised when that is the primary's (None while unknown)."""
    if primary is None:
        return None
    if primary == node.id:
        return str(node.ballot)
    promised = node.acceptor.promised
    return str(promised) if promised.node == primary else None


def member_views(status: ReplicaStatus, peer_urls: dict[str, str], now: float,
                 window_s: float) -> list[dict[str, Any]]:  # fmt: skip
    """``/v1/cluster``'s members as ``status`` knows them: ``reachable`` when heard from
    within ``window_s`` (this node always is), the chosen index each last reported, its
    ``lag`` behind the highest chosen index known here (None while unknown), how long ago
    it was heard from, and through whom (``heard_via``: None when directly)."""
    contacts = {contact.member: contact for contact in status.contacts}
    chosen = {member: c.chosen_index for member, c in contacts.items()
              if c.chosen_index is not None}  # fmt: skip
    chosen[status.node] = status.chosen_index
    top = max(chosen.values())
    views = []
    for member, url in sorted(peer_urls.items()):
        contact = contacts.get(member)
        ago: float | None = None
        if member == status.node:
            ago = 0.0
        elif contact is not None:
            ago = round(max(0.0, now - contact.heard_at), 3)
        index = chosen.get(member)
        views.append({
            "id": member, "url": url,
            "reachable": ago is not None and ago <= window_s,
            "chosen_index": index, "lag": None if index is None else top - index,
            "heard_s_ago": ago, "heard_via": contact.via if contact is not None else None,
        })  # fmt: skip
    return views
