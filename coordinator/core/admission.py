"""Which peer messages a node believes: the rules ``Node.receive`` applies before a message
changes anything, and the reasons it counts (``Node.dropped``) when it drops one.

Decoding already bounds every field (``messages``: slots and rounds below 2**62, sizes and
counts); these rules judge what a well-formed message claims against what this node knows:

- ``NON_MEMBER``: the sender is not a configured member.
- ``IMPLAUSIBLE_SLOT``: an Accept, Accepted or Chosen far past the log (``slots_ahead_max``).
- ``IMPLAUSIBLE_ROUND``: a ballot round far above any this node knows (``ROUNDS_AHEAD_MAX``).
- ``UNFOLLOWED_CHOSEN``: a Chosen from no learner this node has reason to believe
  (``chosen_believed``).
- ``UNSOLICITED`` and ``CORRUPT``: a catch-up reply that answers nothing this node asked,
  or a snapshot assembled wrong (``core.catchup``).
"""

from __future__ import annotations

from paxlock.coordinator.core.ballot import Ballot
from paxlock.coordinator.core.catchup import CORRUPT, UNSOLICITED
from paxlock.coordinator.core.config import CoreConfig
from paxlock.coordinator.core.messages import (
    Accept, Accepted, AcceptedEntry, Chosen, Handover, Heartbeat, HeartbeatAck, Message, Nack,
    PreVote, PreVoteReply, Prepare, Promise,
)  # fmt: skip

NON_MEMBER = "non_member"
IMPLAUSIBLE_SLOT = "implausible_slot"
IMPLAUSIBLE_ROUND = "implausible_round"
UNFOLLOWED_CHOSEN = "unfollowed_chosen"
DROP_REASONS = (NON_MEMBER, IMPLAUSIBLE_SLOT, IMPLAUSIBLE_ROUND, UNFOLLOWED_CHOSEN, UNSOLICITED, CORRUPT)
"""Why ``Node.receive`` drops a peer message: the keys of ``Node.dropped``."""


ROUNDS_AHEAD_MAX = 2**32
"""How far above the highest round this node knows (promised, or its own ballot) a message's
round may lie. Decoding bounds rounds absolutely (``ROUND_MAX``), but any absolute bound is a
brick: a member that promised a Prepare at the bound can never promise its successor, which
no decoder admits, so no primary is ever elected again (the fuzzer found it at 2**62). A
relative bound leaves no such cliff: honest rounds grow by one per election attempt (four
billion elections before this bound is ever met), while a forger must get a round promised —
one fsync — for every 2**32 it climbs."""


def message_round(msg: Message) -> int:
    """The highest ballot round ``msg`` carries (0 for messages without one)."""
    match msg:
        case Prepare() | Promise() | Accept() | Accepted() | Chosen() | Heartbeat() \
                | HeartbeatAck() | Handover():
            return msg.ballot.round
        case Nack():
            return max(msg.ballot.round, msg.promised.round)
        case PreVote() | PreVoteReply():
            return msg.round
    return 0


def slots_ahead_max(config: CoreConfig) -> int:
    """How far past what a node knows of the log (its chosen prefix, or the slots it proposed
    itself) a slot may lie and still be believed: ``4 * in_flight_slots_max +
    slots_ahead_margin`` (1,280 slots with the defaults).

    A primary proposes at most ``in_flight_slots_max`` slots past its chosen prefix, and after
    phase 1 re-proposes the slots its promisers reported, which each of them had accepted
    within such a window of its own: four windows cover a primary and its predecessors'
    leftovers, and the margin covers a follower a little behind. A follower further behind
    drops the primary's Accepts until catch-up (started by the next heartbeat) brings it
    near: a liveness cost, the price of the bound. Without it, one forged Accept at slot 2**62
    would be accepted durably, and the next primary would try to re-propose every slot up to
    it (a hole it could never fill); a Chosen there would sit in memory for good."""
    return 4 * config.in_flight_slots_max + config.slots_ahead_margin


def chosen_believed(config: CoreConfig, members: tuple[str, ...], src: str, msg: Chosen, *,
                    primary_hint: str | None, promised: Ballot,
                    accepted: AcceptedEntry | None) -> bool:  # fmt: skip
    """Learning from another learner (the notes' methods 2 and 3): "the assumption of
    non-Byzantine failures makes it easy for one learner to find out from another learner
    that a value has been accepted". A Chosen is believed on its sender's word alone — the
    one message that makes a node learn from a single peer (a quorum of Accepteds takes a
    majority of acceptors; catch-up answers a request this node made) — so it is believed
    only from a *distinguished learner of its ballot*: one that the acceptors of
    ``msg.ballot`` report to (``LearnMode.accepted_targets``: its proposer under ``primary``,
    that one and the K-1 members after it under ``set:K``; under ``broadcast`` no learner
    tells another and no Chosen is believed), and only when either

    - that ballot is the office of the primary this node follows: its proposer is the
      ``primary_hint`` and it is the ballot this node's acceptor promised (whose Accepts it
      takes); or
    - this node's acceptor accepted exactly ``msg.value`` at ``msg.ballot`` in that slot:
      its own acceptance is one of the Accepteds that learner counted, so the value was
      proposed there, and only that ballot's own learner could lie about its quorum.

    A node's own Chosen (loopback) is always believed. Dropped: a Chosen from a follower,
    from a learner of another ballot, or of a ballot this node neither follows nor accepted
    the value at. Safety never needs one, and liveness does not lose the slot: the next
    primary re-proposes it (its Accepteds teach it), or the next heartbeat shows the gap and
    catch-up fetches it.

    Not "when the value matches what this node accepted" whatever the ballot: an accepted
    value shows that it was proposed, not that it was chosen — a deposed primary's value
    accepted by a minority stays in their logs while another value is chosen at a higher
    ballot — so one misdirected Chosen could teach a value never chosen, which requirement
    (c) forbids ("a process never learns that a value has been chosen unless it actually
    has been"). ``members`` are in the node's (sorted) order."""
    if src == config.node_id:
        return True
    mode, ballot = config.learn_mode, msg.ballot
    if not mode.tells_learners() or ballot.node not in members:
        return False
    if src not in mode.accepted_targets(ballot.node, members):
        return False
    if ballot.node == primary_hint and ballot == promised:
        return True
    return accepted is not None and (accepted.ballot, accepted.value) == (ballot, msg.value)
