"""Confirmation rounds of the primary: heartbeats with a sequence number.

Once a majority acked round ``seq``, the primary knows it was still primary at some instant
after it sent that round (DESIGN.md §3, renew and linearizable reads): any successor needs a
promise from one of the acceptors that acked, so it took office after the ack.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from paxlock.coordinator.core.ready import Confirmed

Quorum = Callable[[Collection[str]], bool]
"""Whether members ``ids`` hold a majority of every configuration in effect or pending."""


def counting(quorum: int) -> Quorum:
    """A fixed majority of ``quorum`` members (one static configuration)."""
    return lambda ids: len(ids) >= quorum


class Rounds:
    __slots__ = ("quorum", "node_id", "seq", "confirmed_seq", "confirmed_sent_at", "_acked",
                 "_sent_at")  # fmt: skip

    def __init__(self, quorum: int | Quorum, node_id: str = "") -> None:
        """``node_id`` is this node: its own round counts as acked by itself."""
        self.quorum: Quorum = counting(quorum) if isinstance(quorum, int) else quorum
        self.node_id = node_id
        self.seq = 0
        """The last round sent."""
        self.confirmed_seq = 0
        self.confirmed_sent_at = 0.0
        self._acked: dict[str, int] = {}
        self._sent_at: dict[int, float] = {}

    def restart(self, now: float) -> None:
        """A new ballot starts its rounds afresh (older acks do not count); the phase-1
        quorum that just answered counts as recent contact for the check-quorum rule."""
        self._acked = {}
        self._sent_at = {}
        self.confirmed_seq = self.seq
        self.confirmed_sent_at = now

    def begin(self, now: float) -> int:
        self.seq += 1
        self._sent_at[self.seq] = now
        return self.seq

    def freshest(self, among: tuple[str, ...]) -> str | None:
        """The member of ``among`` that acked the latest round of this ballot (None if none
        did): the one most likely to be up to date and reachable."""
        acked = [(seq, member) for member, seq in self._acked.items() if member in among]
        return max(acked)[1] if acked else None

    def on_ack(self, src: str, seq: int) -> Confirmed | None:
        if seq > self._acked.get(src, 0):
            self._acked[src] = seq
        return self.progress()

    def progress(self) -> Confirmed | None:
        """The newly confirmed round, if a majority (this node included) acked a later one."""
        acked = {self.node_id: self.seq, **self._acked}
        seq = next((s for s in sorted(set(acked.values()), reverse=True)
                    if self.quorum([m for m, a in acked.items() if a >= s])), None)  # fmt: skip
        if seq is None or seq <= self.confirmed_seq:
            return None  # ``seq``: the highest round a majority has acked
        self.confirmed_seq = seq
        self.confirmed_sent_at = self._sent_at[seq]
        for old in [s for s in self._sent_at if s < seq]:
            del self._sent_at[old]
        return Confirmed(seq, self.confirmed_sent_at)
