"""Catch-up: "a node that is behind fetches chosen slots, or a snapshot when the slots it
needs were compacted away" (DESIGN.md §2).

The fetching side (``CatchUp``) remembers who showed this node to be behind, when to ask, the
one request it has outstanding, and the snapshot it is assembling; the serving side
(``serve``) answers from the chosen log, or with the next chunk of its snapshot when the slots
asked for are gone. Installing a snapshot is the node's job (``Node._install``): it touches
every role.

**Answers only.** A reply is used only when it answers the request outstanding, from the
member it went to: its entries start at the slot asked for (right after the snapshot when
one comes), and a snapshot comes only for a request it covers. Anything else — a reply
nobody asked for, a late duplicate, a chunk of another offset — is dropped (``take``).

**Chunks, pulled.** A snapshot of any size travels as chunks of at most
``CoreConfig.snapshot_chunk_bytes``: the receiver asks for the next one only once the
previous one arrived (pull is the backpressure: one chunk in flight per transfer, whatever
the link), names the snapshot by its digest, and checks size and digest before installing.
A sender that compacted again meanwhile still serves the snapshot under way (``Served``
keeps the one before its latest); one that no longer has it, or a retry that reaches a member
with another snapshot, starts its own at offset 0, and the receiver starts afresh. A lost
chunk is asked for again by the ordinary retry.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from paxlock.coordinator.core.messages import (
    Batch,
    CatchupReply,
    CatchupRequest,
    ChosenEntry,
    Snapshot,
    SnapshotChunk,
    Value,
)

UNSOLICITED = "unsolicited_catchup"
"""A drop reason: a catch-up reply that answers no request outstanding."""
CORRUPT = "corrupt_snapshot"
"""A drop reason: an assembled snapshot whose size or digest is not the announced one."""


def digest_of(snapshot: Snapshot) -> bytes:
    """What names a snapshot in a transfer: SHA-256 over its slot and its data."""
    digest = hashlib.sha256(snapshot.slot.to_bytes(8, "big"))
    digest.update(snapshot.data)
    return digest.digest()


@dataclass(slots=True)
class Transfer:
    """A snapshot arriving in chunks: the bytes up to ``received`` are in ``parts``."""

    slot: int
    total: int
    digest: bytes
    parts: list[bytes]
    received: int = 0


@dataclass(frozen=True, slots=True)
class Taken:
    """What an accepted reply brings: a whole snapshot (its last chunk came) and entries."""

    snapshot: Snapshot | None
    entries: tuple[ChosenEntry, ...]


class CatchUp:
    """Whom to ask for the slots this node is missing, and when; what it asked last."""

    __slots__ = ("node_id", "members", "retry_s", "target", "due", "asked", "asking",
                 "transfer")  # fmt: skip

    def __init__(self, node_id: str, members: tuple[str, ...], retry_s: float) -> None:
        self.node_id = node_id
        self.members = members
        self.retry_s = retry_s
        self.target: tuple[str, int] | None = None
        """(source, its chosen index): a member known to be ahead of this node."""
        self.due = 0.0
        self.asked = False
        """Whether the current source was already asked once (a retry asks another)."""
        self.asking: tuple[str, CatchupRequest] | None = None
        """The request outstanding and the member it went to: the only one a reply may
        answer. Cleared by the answer, so a duplicate of it answers nothing."""
        self.transfer: Transfer | None = None

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
        if self.transfer is not None and self.transfer.slot <= own_index:
            self.transfer = None  # learned past it meanwhile
        src, target = self.target
        if target <= own_index:
            self.target = self.asking = None
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
        transfer = self.transfer
        request = (CatchupRequest(own_index + 1) if transfer is None else
                   CatchupRequest(own_index + 1, transfer.digest, transfer.received))  # fmt: skip
        self.asking = (src, request)
        return src, request

    def take(self, src: str, msg: CatchupReply) -> Taken | str:
        """The reply's content if it answers the request outstanding to ``src``, else the
        reason it is dropped (``UNSOLICITED``, or ``CORRUPT`` for a snapshot assembled
        wrong). Checks everything before it changes anything."""
        if self.asking is None or self.asking[0] != src:
            return UNSOLICITED
        request = self.asking[1]
        chunk = msg.chunk
        last = chunk is None or chunk.offset + len(chunk.data) == chunk.total
        start = request.from_slot if chunk is None else chunk.slot + 1
        if chunk is not None and not self._continues(request, chunk, msg.chosen_index):
            return UNSOLICITED
        if msg.entries and not last:
            return UNSOLICITED  # entries come after the snapshot, with its last chunk
        if any(entry.slot != start + i for i, entry in enumerate(msg.entries)):
            return UNSOLICITED
        self.asking = None
        snapshot = None
        if chunk is not None:
            if chunk.offset == 0:
                self.transfer = Transfer(chunk.slot, chunk.total, chunk.digest, [])
            transfer = self.transfer
            assert transfer is not None and transfer.received == chunk.offset
            transfer.parts.append(chunk.data)
            transfer.received += len(chunk.data)
            if not last:
                return Taken(None, ())
            self.transfer = None
            snapshot = Snapshot(transfer.slot, b"".join(transfer.parts))
            if len(snapshot.data) != transfer.total or digest_of(snapshot) != transfer.digest:
                return CORRUPT
        return Taken(snapshot, msg.entries)

    def _continues(self, request: CatchupRequest, chunk: SnapshotChunk,
                   chosen_index: int) -> bool:  # fmt: skip
        """Whether ``chunk`` answers ``request``: a snapshot that covers the slot asked for
        (and no more than its sender knows chosen), whose bytes fit its announced size and
        either start it afresh or follow on from exactly what arrived so far."""
        end = chunk.offset + len(chunk.data)
        if not request.from_slot <= chunk.slot <= chosen_index or end > chunk.total:
            return False
        if not chunk.data and end < chunk.total:
            return False  # no progress
        if chunk.offset == 0:  # afresh: unless the request asked to go on with this one
            return request.offset == 0 or chunk.digest != request.digest
        transfer = self.transfer
        return (transfer is not None and chunk.digest == request.digest == transfer.digest
                and chunk.offset == request.offset == transfer.received
                and (chunk.slot, chunk.total) == (transfer.slot, transfer.total))  # fmt: skip

    def on_reply(self, src: str, msg: CatchupReply, own_index: int, now: float) -> None:
        """A reply that brought something while more is missing: ask again at once (for the
        next chunk, or the slots after). One that brought nothing but shows the sender ahead
        (sent unasked, see ``Acceptor.on_accept``) is noted like any other sign of being
        behind."""
        if msg.entries or msg.chunk is not None:
            if msg.chosen_index > own_index and (self.target is None
                                                 or msg.chosen_index >= self.target[1]):
                self.target = (src, msg.chosen_index)
            if self.target is not None:  # (a source further ahead is asked next, not lost)
                self.asked = False
                self.due = now
        else:
            self.note(src, msg.chosen_index, own_index, now)


class Served:
    """The snapshots this node serves, with their digests (computed once, when first
    served): its latest, and the one before it. A transfer that began before this node
    compacted again goes on with the snapshot it began with — else a snapshot taking longer
    to send than the interval between compactions would restart for ever. (One extra
    snapshot in memory, at most.)"""

    __slots__ = ("_kept",)

    def __init__(self) -> None:
        self._kept: list[tuple[Snapshot, bytes]] = []

    def pick(self, latest: Snapshot, msg: CatchupRequest) -> tuple[Snapshot, bytes]:
        """The snapshot to serve ``msg`` from, and its digest: the one it names if still
        kept (and it covers the slot asked for), else the latest."""
        if not self._kept or self._kept[-1][0] is not latest:
            self._kept = [*self._kept[-1:], (latest, digest_of(latest))]
        for snapshot, digest in self._kept:
            if msg.digest == digest and msg.from_slot <= snapshot.slot:
                return snapshot, digest
        return self._kept[-1]


def serve(
    msg: CatchupRequest,
    chosen: dict[int, Value],
    chosen_index: int,
    snapshot: Snapshot | None,
    entries_max: int,
    *,
    chunk_bytes: int = 1024 * 1024,
    digest: bytes | None = None,
) -> CatchupReply:
    """Chosen slots contiguous from the one asked for, at most ``entries_max`` and about
    ``chunk_bytes`` of commands. Slots at or below the snapshot were compacted away: the
    snapshot goes instead, one chunk per request (the one asked for when the request names
    this snapshot, else the first), and entries after it come with its last chunk.
    ``digest`` is ``digest_of(snapshot)``, passed in by a caller that keeps it (``Served``)."""
    start = msg.from_slot
    chunk = None
    if snapshot is not None and start <= snapshot.slot:
        digest = digest if digest is not None else digest_of(snapshot)
        total = len(snapshot.data)
        offset = msg.offset if msg.digest == digest and msg.offset < total else 0
        data = snapshot.data[offset : offset + chunk_bytes]
        chunk = SnapshotChunk(snapshot.slot, offset, total, digest, data)
        if offset + len(data) < total:
            return CatchupReply((), chosen_index, chunk)
        start = snapshot.slot + 1
    entries: list[ChosenEntry] = []
    budget = chunk_bytes
    for slot in range(start, start + entries_max):
        value = chosen.get(slot)
        if value is None or (entries and budget <= 0):
            break
        entries.append(ChosenEntry(slot, value))
        budget -= sum(map(len, value.commands)) if isinstance(value, Batch) else 0
    return CatchupReply(tuple(entries), chosen_index, chunk)
