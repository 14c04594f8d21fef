"""Peer frames are decoded as hostile input (issue 12, the forged-frame table): every field
has bounds where it is decoded, so a forged frame is dropped before it reaches the core or
the store. The frames below each did real damage before: a ballot whose successor cannot be
encoded, promised durably by every node (the cluster bricked for good); a slot that overflows
SQLite's integer; millions of messages in one frame (a loop stalled for 13 s)."""

from __future__ import annotations

import msgspec
import pytest

from paxlock.api.server.peer import FRAME_MESSAGES_MAX, decode_batch, encode_batch
from paxlock.coordinator.core.ballot import ROUND_MAX, Ballot
from paxlock.coordinator.core.messages import (
    NOOP,
    SLOT_MAX,
    Accept,
    Batch,
    CatchupReply,
    ChosenEntry,
    Heartbeat,
    Message,
    Prepare,
    PreVote,
)

FORGED: dict[str, list[Message]] = {
    "a ballot whose successor cannot be encoded": [Accept(Ballot(2**64 - 1, "zz"), 1, NOOP, 0)],
    "a ballot round just above the bound": [Prepare(Ballot(ROUND_MAX + 1, "n9"), 1)],
    "a slot beyond SQLite's integer": [Accept(Ballot(1, "n1"), 2**63, NOOP, 0)],
    "a chosen index beyond the bound": [Heartbeat(Ballot(1, "n1"), SLOT_MAX + 1, 1)],
    "a negative slot": [Accept(Ballot(1, "n1"), -1, NOOP, 0)],
    "a node id of 10 kB": [Prepare(Ballot(1, "n" * 10_000), 1)],
    "too many messages in one frame": [PreVote(1)] * (FRAME_MESSAGES_MAX + 1),
    "a batch of too many commands": [Accept(Ballot(1, "n1"), 1, Batch((b"x",) * 70_000), 0)],
    "a catch-up reply of too many entries": [
        CatchupReply(tuple(ChosenEntry(s, NOOP) for s in range(1, 70_002)), 70_001)],
}  # fmt: skip


def encode_unchecked(messages: list[Message]) -> bytes:
    """Encoding checks nothing (only decoding does), as a forger's encoder would."""
    return msgspec.msgpack.encode(messages)


@pytest.mark.parametrize("case", list(FORGED))
def test_a_forged_frame_is_refused_where_it_is_decoded(case: str) -> None:
    with pytest.raises(msgspec.ValidationError):
        decode_batch(encode_unchecked(FORGED[case]))


def test_honest_frames_at_the_bounds_decode() -> None:
    frame = [Accept(Ballot(ROUND_MAX, "n1"), SLOT_MAX, Batch((b"c",) * 512), SLOT_MAX),
             Heartbeat(Ballot(7, "n2"), 12, 3), PreVote(ROUND_MAX)]  # fmt: skip
    assert decode_batch(encode_batch(frame)) == frame
