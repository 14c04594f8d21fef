"""Forged and mis-sent peer messages, injected by the simulator (``SimConfig.forge_every_s``).

Each one claims a member's identity (the transport authenticates members, so a forger is a
member, or a message a member sent to the wrong place) and tells a live node something false
that it did not ask for, as the frames of issue 12 did:

- a ``Chosen`` of a value nobody proposed, in the node's next slot, from a member that is not
  the primary the node follows, at a ballot of that member's that was never an office
  (round 0);
- a ``CatchupReply`` carrying a snapshot of made-up state (with a matching digest), or
  made-up chosen entries, to a node that is not catching up: it asks nobody before the
  reply arrives (the first request waits ``retry_s``, longer than any network delay).

(A member that forges what its real office or a real answer would say cannot be told apart
from it here: that is what authenticating members is for.)

The node must drop them all (``core.admission``). A node that believed one would learn a
value never chosen, or install a snapshot that is not the state of the chosen prefix, and
the checkers ``learned`` and ``prefix`` say so.
"""

from __future__ import annotations

import random

from paxlock.coordinator.core.ballot import Ballot
from paxlock.coordinator.core.catchup import digest_of
from paxlock.coordinator.core.messages import (
    Batch,
    CatchupReply,
    Chosen,
    ChosenEntry,
    Envelope,
    Message,
    Snapshot,
    SnapshotChunk,
)
from paxlock.coordinator.core.node import Node

FORGED = Batch((b"forged",))
FORGED_STATE = b"forged state"
KINDS = ("chosen", "snapshot", "entries")


def forge(rng: random.Random, nodes: dict[str, Node | None]) -> Envelope | None:
    """One forged message to a random live node, or None when no member could claim it."""
    live = sorted(m for m, node in nodes.items() if node is not None)
    if not live:
        return None
    dst = rng.choice(live)
    node = nodes[dst]
    assert node is not None
    kind = rng.choice(KINDS)
    if kind != "chosen" and node.catchup.target is not None:
        return None
    senders = [m for m in sorted(nodes) if m not in (dst, node.primary_hint)]
    if not senders:
        return None
    src = rng.choice(senders)
    slot = node.chosen_index + 1
    msg: Message
    if kind == "chosen":
        msg = Chosen(slot, FORGED, Ballot(0, src))
    elif kind == "snapshot":
        snapshot = Snapshot(slot + 2, FORGED_STATE)
        chunk = SnapshotChunk(snapshot.slot, 0, len(FORGED_STATE), digest_of(snapshot),
                              FORGED_STATE)  # fmt: skip
        msg = CatchupReply((), snapshot.slot, chunk)
    else:
        msg = CatchupReply((ChosenEntry(slot, FORGED),), slot)
    return Envelope(src, dst, msg)
