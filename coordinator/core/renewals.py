"""Renewals waiting at the primary's keeper for a confirmation round, and the round in flight
(DESIGN.md §3, renew): a renewal writes nothing to the log; it is answered once a quorum round
that started after it arrived confirmed this node still primary. One round serves every
renewal that arrived before it started (batching, as Raft's ReadIndex); one round is in
flight at a time, and one not confirmed within ``confirm_timeout_s`` is given up so that
another can start."""

from __future__ import annotations

from dataclasses import dataclass

from paxlock.coordinator.core.keeper_effects import RequestKey


@dataclass(frozen=True, slots=True)
class Renewal:
    seq: int
    """Arrival number: a round serves the renewals numbered up to its id."""
    key: RequestKey
    name: str
    """The lease's name, the session's id, or the shared name of a permit."""
    holder: str
    token: int
    kind: str = "lease"
    """"lease", "session", or the kind of a shared name ("semaphore", "rwlock")."""
    principal: str = ""
    """Who asks: checked again when the round answers (the grant may be learned only then)."""


@dataclass(frozen=True, slots=True)
class _Round:
    round_id: int
    started_at: float


class Renewals:
    def __init__(self, renewals_max: int, confirm_timeout_s: float) -> None:
        assert renewals_max >= 1 and confirm_timeout_s > 0
        self.renewals_max = renewals_max
        self.confirm_timeout_s = confirm_timeout_s
        self._seq = 0
        """Arrival number of the last renewal; never reset, so that a round id from an earlier
        term in office can serve no renewal of a later one."""
        self._waiting: list[Renewal] = []
        self._round: _Round | None = None

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, key: RequestKey, name: str, holder: str, token: int, kind: str = "lease",
            principal: str = "") -> bool:  # fmt: skip
        """Queue a renewal for the next round; false when the bound is reached."""
        if len(self._waiting) >= self.renewals_max:
            return False
        self._seq += 1
        self._waiting.append(Renewal(self._seq, key, name, holder, token, kind, principal))
        return True

    def needs_round(self) -> bool:
        return bool(self._waiting) and self._round is None

    def start_round(self, now: float) -> int:
        assert self._round is None, "one confirmation round at a time"
        self._round = _Round(self._seq, now)
        return self._seq

    def round_failed(self, round_id: int) -> None:
        if self._round is not None and self._round.round_id == round_id:
            self._round = None

    def served_by(self, round_id: int) -> list[Renewal]:
        """Round ``round_id`` was confirmed: the renewals it serves, taken off the queue."""
        if self._round is not None and self._round.round_id <= round_id:
            self._round = None
        served = [r for r in self._waiting if r.seq <= round_id]
        self._waiting = [r for r in self._waiting if r.seq > round_id]
        return served

    def give_up_late_round(self, now: float) -> None:
        """A round unconfirmed for ``confirm_timeout_s`` is given up: the renewals it would
        have served wait for another."""
        deadline = self.deadline()
        if deadline is not None and now >= deadline:
            self._round = None

    def deadline(self) -> float | None:
        """When the round in flight is given up (None: no round in flight)."""
        return None if self._round is None else self._round.started_at + self.confirm_timeout_s

    def clear(self) -> list[RequestKey]:
        """Leaving office: every waiting renewal is dropped; returns whom to answer 503."""
        keys = [r.key for r in self._waiting]
        self._waiting, self._round = [], None
        return keys
