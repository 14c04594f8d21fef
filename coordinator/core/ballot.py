"""Ballots: the proposal numbers of Paxos.

A ballot is ``(round, node)``, ordered as a tuple. A node only ever issues ballots carrying its
own id, so two proposers can never issue the same ballot (the notes' requirement that proposal
numbers be unique, "Paxos Made Simple" §2.2 footnote), and any node can always pick a ballot
higher than every ballot it has seen by bumping the round.
"""

from __future__ import annotations

from typing import Annotated, NewType

import msgspec

ROUND_MAX = 2**62
"""The highest ballot round a decoder accepts: far beyond any real cluster's (a round per
election), far below where a successor could no longer be encoded (2^64). A forged ballot
near the integer limit would otherwise be promised durably by every node and brick the
cluster for good."""
NODE_ID_CHARS_MAX = 256

Round = Annotated[int, msgspec.Meta(ge=0, le=ROUND_MAX)]
NodeIdText = Annotated[str, msgspec.Meta(max_length=NODE_ID_CHARS_MAX)]

NodeId = NewType("NodeId", str)
"""A member of the cluster; static membership in this version (DESIGN.md §2)."""


class Ballot(msgspec.Struct, frozen=True, order=True, array_like=True):
    """A proposal number. ``order=True`` compares ``(round, node)`` like a tuple."""

    round: Round
    node: NodeIdText

    def successor(self, node: NodeId) -> Ballot:
        """The smallest ballot of ``node`` that is higher than ``self``."""
        return Ballot(self.round + 1, node)

    def __str__(self) -> str:
        return f"{self.round}.{self.node}"


ZERO_BALLOT = Ballot(0, "")
"""Lower than every ballot a node can issue (node ids are non-empty)."""
