"""A node's consensus configuration (static membership, timers, bounds)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from paxlock.coordinator.core.learner import LearnMode
from paxlock.coordinator.core.messages import CHUNK_BYTES_MAX, MEMBERS_MAX


class Rng(Protocol):
    """The randomness the core draws (election timeouts), injected so that a seeded
    ``random.Random`` replays a simulation exactly; the core never imports ``random``."""

    def uniform(self, a: float, b: float) -> float: ...


@dataclass(frozen=True, slots=True)
class CoreConfig:
    node_id: str
    members: tuple[str, ...]
    """The genesis voters when the durable state has no genesis (tests, simulations); a
    real node gives its stored genesis (``DurableState.genesis``) and may leave this empty."""
    learn_mode: LearnMode = field(default_factory=lambda: LearnMode("broadcast"))
    election: bool = True
    """Off only in tests that drive phase 1 by hand (the notes' dueling proposers)."""
    prevote: bool = False
    """Ask for a majority's go-ahead before raising the ballot (Raft's PreVote): a node cut
    off from the majority then never inflates its ballot, so it cannot depose a healthy
    primary when it comes back. The node runtime turns it on."""
    election_timeout_s: float = 0.5
    """T: a follower that heard no primary for a random time in [T, 2T] runs phase 1."""
    heartbeat_s: float = 0.1
    retry_s: float = 0.2
    in_flight_slots_max: int = 64
    batch_commands_max: int = 512
    pending_max: int = 10_000
    catchup_entries_max: int = 256
    snapshot_chunk_bytes: int = 1024 * 1024
    """A snapshot travels in chunks of at most this many bytes, each fetched only after the
    previous one arrived (``core.catchup``); catch-up entries are cut at about as many."""
    slots_ahead_margin: int = 1024
    """With ``4 * in_flight_slots_max``, how far past what this node knows of the log a slot
    may be and still be believed (``admission.slots_ahead_max``)."""

    incarnation: str = ""
    """This node's member incarnation (``core.membership``): it votes only while a
    configuration lists it with this incarnation."""

    def __post_init__(self) -> None:
        if self.members and self.node_id not in self.members:
            raise ValueError(f"node {self.node_id!r} is not among members {self.members}")
        if len(set(self.members)) != len(self.members):
            raise ValueError("member ids must be unique")
        if len(self.members) > MEMBERS_MAX:
            raise ValueError(f"at most {MEMBERS_MAX} members, not {len(self.members)}")
        if not 0 < self.heartbeat_s < self.election_timeout_s:
            raise ValueError("heartbeat_s must be positive and below election_timeout_s")
        if not 1 <= self.snapshot_chunk_bytes <= CHUNK_BYTES_MAX:
            raise ValueError(f"snapshot_chunk_bytes must be in [1, {CHUNK_BYTES_MAX}]")
        if self.slots_ahead_margin < 0:
            raise ValueError("slots_ahead_margin must not be negative")

    @property
    def quorum(self) -> int:
        return len(self.members) // 2 + 1
