"""How a lease command travels in the log: wrapped with the incarnation that proposed it, so
that the node that proposed it — and only that node, in that incarnation — answers the
request that is waiting for its result. Commands are bytes to the consensus core."""

from __future__ import annotations

import msgspec

from paxlock.coordinator.core.lease_commands import LeaseCommand


class Proposal(msgspec.Struct, frozen=True, array_like=True):
    origin: str
    """``node_id/incarnation``: a restarted node never mistakes an old proposal for its own."""
    seq: int
    command: LeaseCommand


encode_proposal = msgspec.msgpack.Encoder().encode
decode_proposal = msgspec.msgpack.Decoder(Proposal).decode
