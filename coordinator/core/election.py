"""The election of the primary (DESIGN.md §2, the notes' Progress section): the randomized
election timer, the primary's heartbeats and check-quorum, the rule that a live primary is
not disrupted, and the optional pre-vote.

``Election`` decides and the node acts: it keeps which primary this node last heard from and
when, and when its timers run out, and it returns the messages to send; the node sends them,
runs phase 1 when told to (``Node._elect``, the ``PreVote`` handlers), and steps down. Its
only randomness is the injected ``Rng``: one draw each time the election timer is re-armed.
"""

from __future__ import annotations

from paxlock.coordinator.core.ballot import Ballot
from paxlock.coordinator.core.config import CoreConfig, Rng
from paxlock.coordinator.core.confirm import Rounds
from paxlock.coordinator.core.messages import HeardFrom, Heartbeat, PreVote, PreVoteReply
from paxlock.coordinator.core.proposer import Role


class Election:
    """Who the primary is believed to be, when this node stands for the office, and, while it
    holds it, when it shows its followers that it is alive."""

    __slots__ = (
        "config", "node_id", "rng", "rounds", "primary_hint", "heard_primary_at",
        "prevote_round", "prevote_grants", "deadline", "next_heartbeat",
    )  # fmt: skip

    def __init__(self, config: CoreConfig, rng: Rng, rounds: Rounds) -> None:
        """``rounds`` are the node's confirmation rounds: heartbeats begin them, and check-
        quorum reads when a majority last confirmed one."""
        self.config = config
        self.node_id = config.node_id
        self.rng = rng
        self.rounds = rounds
        self.primary_hint: str | None = None
        """The member believed to be primary (this node's own id while it is), else None."""
        self.heard_primary_at = float("-inf")
        self.prevote_round: int | None = None
        """The round of the pre-vote under way, if any."""
        self.prevote_grants: list[str] = []
        self.deadline = 0.0
        """When the election timer runs out: phase 1 (or a pre-vote) is then due."""
        self.next_heartbeat = 0.0
        """When the primary sends its next heartbeat."""

    # -- timers ------------------------------------------------------------------------------

    def due(self, now: float) -> bool:
        """Whether the election timer (of a follower or a candidate) has run out."""
        return self.config.election and now >= self.deadline

    def quorum_lost(self, now: float) -> bool:
        """Check quorum: no majority acked any round sent in the last 2T, so others have likely
        elected a successor; the primary stops serving rather than answer from a stale view.
        (2T, not T: a primary that merely stalled for a moment keeps its office.)"""
        return now - self.rounds.confirmed_sent_at > 2 * self.config.election_timeout_s

    def timer(self, role: Role) -> float:
        """When the election next needs a tick: the primary's next heartbeat, else the end of
        the election timer (never, with the election off)."""
        if role is Role.PRIMARY:
            return self.next_heartbeat
        return self.deadline if self.config.election else float("inf")

    # -- the primary -------------------------------------------------------------------------

    def took_office(self, now: float) -> None:
        self.primary_hint = self.node_id
        self.rounds.restart(now)

    def heartbeat(self, ballot: Ballot, chosen_index: int, now: float,
                  heard: tuple[HeardFrom, ...] = ()) -> Heartbeat:  # fmt: skip
        """The primary's sign of life, every ``heartbeat_s``; each one is a confirmation
        round too, and relays what the primary ``heard`` from the others (``core.heard``)."""
        self.next_heartbeat = now + self.config.heartbeat_s
        return Heartbeat(ballot, chosen_index, self.rounds.begin(now), heard)

    def handed_over(self, target: str, now: float) -> None:
        """This node gave up office to ``target``: follow it, as if just heard from."""
        self.primary_hint = target
        self.heard_primary_at = now
        self.deadline = now + self._timeout()

    # -- the others --------------------------------------------------------------------------

    def heard_primary(self, primary: str | None, role: Role, now: float) -> None:
        """"A node that has heard from a live primary within T does not start phase 1": the
        election deadline moves to a random point in [T, 2T] after every sign of life."""
        if primary is not None and (primary != self.node_id or role is Role.PRIMARY):
            # (A late loopback Accept of a ballot this node already gave up is no news.)
            self.primary_hint = primary
            self.heard_primary_at = now
            self.prevote_round = None
        self.deadline = now + self._timeout()

    def forget_primary(self, now: float) -> None:
        """No primary is known any more (this node stepped down, or runs phase 1 itself):
        none is hinted until one is heard from, and the election timer starts afresh."""
        self.primary_hint = None
        self.deadline = now + self._timeout()

    def has_live_primary(self, candidate: str, role: Role, now: float) -> bool:
        """No disruption by a node that merely lost its own link (DESIGN.md §2): while a
        node heard a live primary within T — or is one, confirmed by a majority within T —
        it ignores another node's phase 1a. Once the primary is silent for T, it answers.
        Only with the election on; safety does not depend on it."""
        if not self.config.election or candidate == self.node_id:
            return False
        t = self.config.election_timeout_s
        if role is Role.PRIMARY:
            return now - self.rounds.confirmed_sent_at < t
        return (role is Role.FOLLOWER and self.primary_hint not in (None, candidate)
                and now - self.heard_primary_at < t)  # fmt: skip

    # -- standing for the office -------------------------------------------------------------

    def start(self, above: Ballot, now: float) -> PreVote | None:
        """The election timer ran out: run phase 1 — after a pre-vote, when configured.
        No primary has been heard from for at least T, so none is known any more. Returns
        the ``PreVote`` to send to every other member, or None when phase 1 is due at once;
        ``above`` is the highest ballot this node knows of."""
        self.primary_hint = None
        if not self.config.prevote or self.rounds.quorum([self.node_id]):
            return None
        self.prevote_round = above.round + 1
        self.prevote_grants = [self.node_id]
        self.deadline = now + self._timeout()
        return PreVote(self.prevote_round)

    def on_prevote(self, src: str, msg: PreVote, role: Role, now: float) -> PreVoteReply:
        """Granted unless this node knows a live primary, or is the primary."""
        granted = not self.has_live_primary(src, role, now) and role is not Role.PRIMARY
        return PreVoteReply(msg.round, granted)

    def on_prevote_reply(self, src: str, msg: PreVoteReply, role: Role) -> bool:
        """Collects the grants of the current pre-vote; true once a majority granted it:
        phase 1 is then due at once."""
        if not msg.granted or msg.round != self.prevote_round or role is Role.PRIMARY:
            return False
        if src not in self.prevote_grants:
            self.prevote_grants.append(src)
        if self.rounds.quorum(self.prevote_grants):
            self.prevote_round = None
            return True
        return False

    def _timeout(self) -> float:
        t = self.config.election_timeout_s
        return self.rng.uniform(t, 2 * t)
