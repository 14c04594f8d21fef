"""Values, peer messages and durable records of the consensus core.

All are frozen msgspec structs: hashable, cheap to build, and encodable on the wire without a
hand-written codec. Messages are tagged so that one union type decodes any of them.

Phase names follow the notes: 1a ``Prepare``, 1b ``Promise``, 2a ``Accept``, 2b ``Accepted``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, TypeAlias

import msgspec

from paxlock.coordinator.core.ballot import ROUND_MAX, ZERO_BALLOT, Ballot, NodeIdText

# --- bounds checked where a peer's frame is decoded (a forged field is a dropped frame) -----

SLOT_MAX = 2**62
"""Slots, chosen indexes and round numbers fit a signed 64-bit SQLite integer with room."""
ITEMS_MAX = 65_536
"""Entries of one batch, promise or catch-up reply (the senders' own bounds are far lower)."""
COMMAND_BYTES_MAX = 1024 * 1024
CHUNK_BYTES_MAX = 16 * 1024 * 1024
"""The most snapshot bytes one chunk may carry (senders use ``CoreConfig.snapshot_chunk_bytes``,
1 MiB by default): far below the peer frame limit, whatever the snapshot's size."""
SNAPSHOT_BYTES_MAX = 2**40
"""The largest snapshot a transfer announces (1 TiB): any state a node can hold. Nothing is
allocated up front: a receiver holds only the chunks it asked for, one at a time."""
DIGEST_BYTES_MAX = 64
MEMBERS_MAX = 64
"""The most members a cluster may have: bounds every per-member list on the wire."""
Slot = Annotated[int, msgspec.Meta(ge=0, le=SLOT_MAX)]
Seq = Annotated[int, msgspec.Meta(ge=0, le=ROUND_MAX)]

# --- values ------------------------------------------------------------------------------


class NoOp(msgspec.Struct, frozen=True, tag="noop"):
    """Fills a hole in the log found by phase 1 (a slot with nothing accepted in the quorum)."""


class Batch(msgspec.Struct, frozen=True, tag="batch"):
    """The value of one slot: several client commands chosen together (group commit).

    The core never looks inside a command: the node encodes its lease commands to bytes, so
    that the wire needs no knowledge of them."""

    commands: Annotated[tuple[Annotated[bytes, msgspec.Meta(max_length=COMMAND_BYTES_MAX)], ...],
                        msgspec.Meta(max_length=ITEMS_MAX)]



# --- membership (``core.membership``: which configuration governs which slot) -------------

INCARNATION_CHARS_MAX = 64
URL_CHARS_MAX = 2048

Incarnation = Annotated[str, msgspec.Meta(max_length=INCARNATION_CHARS_MAX)]
Url = Annotated[str, msgspec.Meta(max_length=URL_CHARS_MAX)]


class Member(msgspec.Struct, frozen=True, array_like=True):
    """One member incarnation. ``incarnation`` is empty only in tests and simulations that
    build a configuration from bare member ids."""

    id: NodeIdText
    incarnation: Incarnation
    url: Url = ""


Members = Annotated[tuple[Member, ...], msgspec.Meta(max_length=MEMBERS_MAX)]


class Configuration(msgspec.Struct, frozen=True, array_like=True):
    """Voters and learners, each sorted by id; ``epoch`` is the slot whose ``Reconfigure``
    made it (0 for the genesis configuration the cluster bootstrapped with)."""

    epoch: Slot
    voters: Members
    learners: Members = ()

    @property
    def voter_ids(self) -> tuple[str, ...]:
        return tuple(m.id for m in self.voters)

    @property
    def ids(self) -> tuple[str, ...]:
        """Every member, voter or learner, sorted."""
        return tuple(sorted(m.id for m in (*self.voters, *self.learners)))

    def member(self, member_id: str) -> Member | None:
        for m in (*self.voters, *self.learners):
            if m.id == member_id:
                return m
        return None

    def votes(self, member_id: str, incarnation: str) -> bool:
        return any(m.id == member_id and m.incarnation == incarnation for m in self.voters)

    def knows(self, member_id: str, incarnation: str) -> bool:
        m = self.member(member_id)
        return m is not None and m.incarnation == incarnation

    def is_quorum(self, ids: Iterable[str]) -> bool:
        """Whether ``ids`` include a majority of the voters."""
        voters = set(self.voter_ids)
        return len(voters.intersection(ids)) >= len(voters) // 2 + 1


class Reconfigure(msgspec.Struct, frozen=True, tag="reconfigure"):
    """A slot value: from ``ALPHA`` slots after its own, the configuration is ``voters`` and
    ``learners``, if it is still valid then (``core.membership``). ``base`` is the epoch of the
    configuration it was computed from."""

    base: Slot
    voters: Members
    learners: Members = ()

    def configuration(self, epoch: int) -> Configuration:
        return Configuration(epoch, self.voters, self.learners)


class ScheduleEntry(msgspec.Struct, frozen=True, array_like=True):
    first_slot: Slot
    configuration: Configuration


class ScheduleState(msgspec.Struct, frozen=True, array_like=True):
    """A schedule on the wire (in a Promise) and in snapshots."""

    applied: Slot
    entries: Annotated[tuple[ScheduleEntry, ...], msgspec.Meta(min_length=1, max_length=4)]


class CoreSnapshot(msgspec.Struct, frozen=True, array_like=True):
    """What a snapshot's bytes hold: the schedule at its slot, then the state machine's own
    snapshot, which the core never reads."""

    schedule: ScheduleState
    machine: bytes


Value: TypeAlias = NoOp | Batch | Reconfigure
NOOP = NoOp()


class AcceptedEntry(msgspec.Struct, frozen=True, array_like=True):
    """An acceptor's highest-ballot accepted proposal in one slot."""

    slot: Slot
    ballot: Ballot
    value: Value


class ChosenEntry(msgspec.Struct, frozen=True, array_like=True):
    slot: Slot
    value: Value


# --- messages ----------------------------------------------------------------------------


class Prepare(msgspec.Struct, frozen=True, tag="prepare"):
    """Phase 1a, for every slot from ``from_slot`` on (Multi-Paxos: one phase 1 for all)."""

    ballot: Ballot
    from_slot: Slot


class Promise(msgspec.Struct, frozen=True, tag="promise"):
    """Phase 1b: a promise not to accept below ``ballot``, with what was accepted so far."""

    ballot: Ballot
    from_slot: Slot
    accepted: Annotated[tuple[AcceptedEntry, ...], msgspec.Meta(max_length=ITEMS_MAX)]
    chosen_index: Slot = 0
    """The responder's contiguous chosen prefix: slots up to it need no re-proposal."""
    schedule: ScheduleState | None = None
    """The responder's configurations after that prefix (``core.membership``): which
    majorities the new primary needs for the slots after it."""


class Accept(msgspec.Struct, frozen=True, tag="accept"):
    """Phase 2a. ``chosen_index`` piggybacks the primary's contiguous chosen prefix."""

    ballot: Ballot
    slot: Slot
    value: Value
    chosen_index: Slot


class Accepted(msgspec.Struct, frozen=True, tag="accepted"):
    """Phase 2b, sent by an acceptor to the learners of the configured learning strategy."""

    ballot: Ballot
    slot: Slot
    value: Value


class Nack(msgspec.Struct, frozen=True, tag="nack"):
    """Tells a proposer that ``ballot`` was refused because ``promised`` is higher."""

    ballot: Ballot
    promised: Ballot


class Chosen(msgspec.Struct, frozen=True, tag="chosen"):
    """From a distinguished learner to every learner (notes, learning methods 2 and 3).
    ``ballot`` is the one at which the sender saw a majority accept ``value``: who may send
    it follows from the ballot (``admission.chosen_believed``); without one, nobody."""

    slot: Slot
    value: Value
    ballot: Ballot = ZERO_BALLOT


AGE_S_MAX = 1e9
"""Ages on the wire are clamped to this (about 31 years): bounded, never infinite."""


class HeardFrom(msgspec.Struct, frozen=True, array_like=True):
    """What the sender heard from one member: ``age_s`` seconds before sending, and the
    chosen index that member last reported (None: none yet). Ages, not times: members'
    monotonic clocks have nothing in common. Decoded as hostile input: every field bounded,
    so a forged entry is a dropped frame, never an exception in the core."""

    member: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    age_s: Annotated[float, msgspec.Meta(ge=0, le=AGE_S_MAX)]
    chosen_index: Annotated[int, msgspec.Meta(ge=0)] | None


class Heartbeat(msgspec.Struct, frozen=True, tag="heartbeat"):
    """The primary is alive; ``chosen_index`` lets a lagging node notice it is behind.

    Heartbeats double as *confirmation rounds*: each carries a sequence number, and once a
    majority acked ``seq`` the primary knows it was still primary after it sent it (see
    ``HeartbeatAck``).

    ``heard`` relays what the primary heard directly from each other member (see
    ``core.heard``): followers hear only from the primary, so this is how one follower
    learns that another is alive and how far it got. At most one entry per member."""

    ballot: Ballot
    chosen_index: Slot
    seq: Seq = 0
    heard: Annotated[tuple[HeardFrom, ...], msgspec.Meta(max_length=MEMBERS_MAX)] = ()


class HeartbeatAck(msgspec.Struct, frozen=True, tag="heartbeat_ack"):
    """Sent only by an acceptor that has promised no ballot above ``ballot``. A successor can
    take office only with a promise from a majority, which overlaps every acking majority,
    so it takes office after the round was acked (DESIGN.md §3, renew).

    ``chosen_index`` is the acceptor's contiguous chosen prefix, so that the primary knows
    how far behind each follower is (``core.heard``); None from a member that predates it."""

    ballot: Ballot
    seq: Seq
    chosen_index: Slot | None = None


class Handover(msgspec.Struct, frozen=True, tag="handover"):
    """The primary of ``ballot`` steps down in favour of ``target`` (a member asked to stop
    hands office over first, as etcd transfers leadership). ``target`` runs phase 1 at once;
    every other member takes ``target`` for the primary it has just heard from, so its
    stickiness protects the successor instead of the one that left. Liveness only: safety
    never depends on who runs phase 1."""

    ballot: Ballot
    target: NodeIdText


class Snapshot(msgspec.Struct, frozen=True, array_like=True):
    """The state machine's snapshot after applying every slot up to ``slot``. The core never
    looks inside ``data``: only the runtime's state machine can read it."""

    slot: Slot
    data: bytes


class PreVote(msgspec.Struct, frozen=True, tag="prevote"):
    """Would you answer a phase 1 at ``round`` now? Changes no state anywhere."""

    round: Seq


class PreVoteReply(msgspec.Struct, frozen=True, tag="prevote_reply"):
    """Granted only by a node that has heard no live primary within T."""

    round: Seq
    granted: bool


SnapshotBytes = Annotated[int, msgspec.Meta(ge=0, le=SNAPSHOT_BYTES_MAX)]
Digest = Annotated[bytes, msgspec.Meta(max_length=DIGEST_BYTES_MAX)]


class CatchupRequest(msgspec.Struct, frozen=True, tag="catchup_request"):
    """Chosen slots from ``from_slot`` on, please. While a snapshot arrives in chunks,
    ``digest`` names it and ``offset`` is the next byte wanted: the sender goes on with that
    snapshot if it still has it, else starts its current one at offset 0."""

    from_slot: Slot
    digest: Digest = b""
    offset: SnapshotBytes = 0


class SnapshotChunk(msgspec.Struct, frozen=True, array_like=True):
    """Bytes ``offset`` to ``offset + len(data)`` of the snapshot at ``slot``, ``total`` bytes
    long; ``digest`` is ``catchup.digest_of`` the whole snapshot (its slot and its data), so
    the receiver checks what it assembled, and both sides know which snapshot is meant."""

    slot: Slot
    offset: SnapshotBytes
    total: SnapshotBytes
    digest: Digest
    data: Annotated[bytes, msgspec.Meta(max_length=CHUNK_BYTES_MAX)]


class CatchupReply(msgspec.Struct, frozen=True, tag="catchup_reply"):
    """The answer to a ``CatchupRequest``: chosen slots from the one asked for. When that slot
    was compacted away, ``chunk`` carries the next piece of the snapshot that stands for every
    slot up to its own; ``entries`` (right after the snapshot) come with its last chunk only.

    Also sent unasked, with no entries and no chunk, to a proposer whose Accept fell in a
    compacted slot: it only shows the proposer how far the log is known chosen (see
    ``Acceptor.on_accept``), as the chosen index on a Heartbeat or an Accept does.
    """

    entries: Annotated[tuple[ChosenEntry, ...], msgspec.Meta(max_length=ITEMS_MAX)]
    chosen_index: Slot
    chunk: SnapshotChunk | None = None


Message: TypeAlias = (
    Prepare
    | Promise
    | Accept
    | Accepted
    | Nack
    | Chosen
    | Heartbeat
    | HeartbeatAck
    | Handover
    | PreVote
    | PreVoteReply
    | CatchupRequest
    | CatchupReply
)


class Envelope(msgspec.Struct, frozen=True, array_like=True):
    src: str
    dst: str
    msg: Message


# --- durable records -----------------------------------------------------------------------


class PromiseRecord(msgspec.Struct, frozen=True, tag="promise"):
    """The acceptor's promised ballot was raised to ``ballot``."""

    ballot: Ballot


class AcceptRecord(msgspec.Struct, frozen=True, tag="accept"):
    """The acceptor accepted ``value`` at ``ballot`` in ``slot`` (its highest there so far)."""

    slot: Slot
    ballot: Ballot
    value: Value


class ChosenRecord(msgspec.Struct, frozen=True, tag="chosen"):
    """This node learned that ``value`` is chosen in ``slot``."""

    slot: Slot
    value: Value


class SnapshotRecord(msgspec.Struct, frozen=True, tag="snapshot"):
    """The state machine's snapshot at applied slot ``slot``: every accepted and chosen entry
    at or below it may be dropped (compaction). Taken by this node, or installed from a peer
    by catch-up."""

    slot: Slot
    data: bytes


Record: TypeAlias = PromiseRecord | AcceptRecord | ChosenRecord | SnapshotRecord
