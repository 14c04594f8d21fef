"""Which peer messages a node believes (``core.admission``): a non-member's, a Chosen from no
learner it follows, an Accept far past the log and a catch-up reply nobody asked for are all
dropped and counted before they change anything. Each test replays a frame that, before these
rules, changed a node's state (issue 12's table) or one like it."""

from __future__ import annotations

import pytest

from paxlock.coordinator.core.admission import ROUNDS_AHEAD_MAX, slots_ahead_max
from paxlock.coordinator.core.ballot import ROUND_MAX, Ballot
from paxlock.coordinator.core.catchup import digest_of
from paxlock.coordinator.core.config import CoreConfig
from paxlock.coordinator.core.learner import LearnMode
from paxlock.coordinator.core.messages import (
    SLOT_MAX,
    Accept,
    Accepted,
    Batch,
    CatchupReply,
    CatchupRequest,
    Chosen,
    ChosenEntry,
    Envelope,
    Heartbeat,
    Nack,
    PreVote,
    Prepare,
    Snapshot,
    SnapshotChunk,
)

MEMBERS = ("n1", "n2", "n3")
B1 = Ballot(1, "n1")
FORGED = Batch((b"forged",))


def primary_cluster(fifo_net, decisions: int = 2, learn_mode: str = "primary", **config):
    """n1 primary under ``learn_mode``, ``decisions`` slots chosen and known everywhere."""
    net = fifo_net(MEMBERS, election=False, learn_mode=LearnMode.parse(learn_mode), **config)
    net.elect("n1")
    for i in range(decisions):
        net.submit("n1", f"c{i}")
        net.deliver()
    assert all(node.chosen_index == decisions for node in net.nodes.values())
    return net


def unchanged(ready) -> bool:
    return (ready.records, ready.messages, ready.learned, ready.installed) == ([], [], [], None)


# -- members -----------------------------------------------------------------------------


def test_a_message_from_a_non_member_is_dropped_before_anything(fifo_net) -> None:
    """Frames are accepted only from a member: a sender outside the configured members is
    not heard from, not answered, and changes no state — whatever it claims."""
    net = primary_cluster(fifo_net)
    node = net.nodes["n2"]
    for msg in (Accept(Ballot(9, "zz"), 3, FORGED, 0), Heartbeat(Ballot(9, "zz"), 50, 1),
                CatchupRequest(1), Chosen(3, FORGED, Ballot(9, "zz"))):  # fmt: skip
        assert unchanged(node.receive("zz", msg, net.now))
    assert node.dropped == {"non_member": 4}
    assert node.acceptor.promised == B1 and node.chosen_index == 2
    assert "zz" not in {c.member for c in node.heard.contacts()}


# -- ballot rounds -------------------------------------------------------------------------


def test_a_round_far_above_any_known_is_dropped_and_the_next_election_still_works(
    fifo_net,
) -> None:
    """The fuzzer's brick: a Prepare at ROUND_MAX (2**62, the highest round decoding admits)
    promised by every member left no round a successor could encode, and no primary was
    ever elected again. A round more than ROUNDS_AHEAD_MAX above what a node knows is
    dropped; one within it is promised as before, and its successor can be elected."""
    net = primary_cluster(fifo_net)
    node = net.nodes["n2"]
    for msg in (Prepare(Ballot(ROUND_MAX, "n3"), 0), Heartbeat(Ballot(ROUND_MAX, "n3"), 2, 1),
                PreVote(ROUND_MAX), Nack(B1, Ballot(ROUND_MAX, "n3")),
                Accept(Ballot(2 + ROUNDS_AHEAD_MAX, "n3"), 3, FORGED, 2)):  # fmt: skip
        assert unchanged(node.receive("n3", msg, net.now))
    assert node.dropped == {"implausible_round": 5}
    assert node.acceptor.promised == B1
    within = Ballot(1 + ROUNDS_AHEAD_MAX, "n3")
    node.receive("n3", Prepare(within, 0), net.now)
    assert node.acceptor.promised == within
    assert node.dropped == {"implausible_round": 5}


# -- Chosen ------------------------------------------------------------------------------


def test_a_chosen_from_a_follower_is_dropped(fifo_net) -> None:
    """The frame that split the replicas: ``Chosen(ci+1, Batch(...))`` to one follower. From a
    follower (n2), whatever ballot it names — its own, or the primary's, whose learner it is
    not under ``primary`` — it teaches nothing."""
    net = primary_cluster(fifo_net)
    node = net.nodes["n3"]
    for ballot in (Ballot(1, "n2"), B1, Ballot(0, "")):
        assert unchanged(node.receive("n2", Chosen(3, FORGED, ballot), net.now))
    assert node.dropped == {"unfollowed_chosen": 3}
    assert 3 not in node.learner.chosen and net.disks["n3"].chosen.get(3) is None


def test_a_chosen_from_the_primary_is_learned(fifo_net) -> None:
    """Method 2: the distinguished learner (the primary n3 follows) tells it what is chosen,
    and n3 learns and applies it — though n3 heard no Accept for the slot."""
    net = primary_cluster(fifo_net)
    net.submit("n1", "x")
    net.deliver(lambda e: e.dst != "n3")  # n3 hears neither the Accept nor the Chosen
    (chosen,) = [e for e in net.queue if isinstance(e.msg, Chosen)]
    assert chosen.msg == Chosen(3, Batch(("x",)), B1)
    ready = net.receive(chosen)
    assert ready.learned == [ChosenEntry(3, Batch(("x",)))]
    assert net.nodes["n3"].dropped == {}


def test_a_chosen_from_a_second_distinguished_learner_is_learned_under_set_k(fifo_net) -> None:
    """Method 3: under ``set:2`` the learners of n1's ballot are n1 and n2; n2's Chosen is
    believed, n3's own acceptors never reported to the third member."""
    net = primary_cluster(fifo_net, learn_mode="set:2")
    ready = net.nodes["n3"].receive("n2", Chosen(3, Batch(("y",)), B1), net.now)
    assert ready.learned == [ChosenEntry(3, Batch(("y",)))]
    net2 = primary_cluster(fifo_net, learn_mode="set:2")
    assert unchanged(net2.nodes["n2"].receive("n3", Chosen(3, FORGED, B1), net2.now))


def test_a_chosen_is_believed_from_a_learner_of_a_ballot_at_which_this_node_accepted_it(
    fifo_net,
) -> None:
    """With no primary known (a restarted follower), a Chosen is still believed from the
    learner of the ballot at which this node itself accepted that very value — its own
    acceptance is one of the votes that learner counted — and from nobody else."""
    net = primary_cluster(fifo_net)
    net.submit("n1", "x")
    net.deliver(lambda e: not isinstance(e.msg, Chosen))  # n3 accepted x at B1 in slot 3
    net.queue.clear()
    net.restart("n3")  # knows no primary now
    node = net.nodes["n3"]
    assert node.primary_hint is None and node.acceptor.accepted[3].value == Batch(("x",))
    assert unchanged(node.receive("n1", Chosen(3, FORGED, B1), net.now))  # not what it accepted
    assert unchanged(node.receive("n1", Chosen(3, Batch(("x",)), Ballot(2, "n1")), net.now))
    ready = node.receive("n1", Chosen(3, Batch(("x",)), B1), net.now)
    assert ready.learned[-1] == ChosenEntry(3, Batch(("x",)))
    assert node.dropped == {"unfollowed_chosen": 2}


def test_under_broadcast_no_chosen_is_believed(fifo_net) -> None:
    """Method 1 sends no Chosen at all: one that arrives anyway is dropped, even from the
    primary."""
    net = primary_cluster(fifo_net, learn_mode="broadcast")
    assert unchanged(net.nodes["n3"].receive("n1", Chosen(3, FORGED, B1), net.now))
    assert net.nodes["n3"].dropped == {"unfollowed_chosen": 1}


# -- slots far past the log ----------------------------------------------------------------


def test_an_accept_far_beyond_the_window_is_dropped(fifo_net) -> None:
    """A forged Accept at slot 2**62 (or just past the bound) is neither accepted nor
    answered nor recorded; right at the bound it is an ordinary Accept."""
    net = primary_cluster(fifo_net, in_flight_slots_max=8, slots_ahead_margin=16)
    node = net.nodes["n2"]
    bound = 2 + slots_ahead_max(node.config)
    assert bound == 2 + 4 * 8 + 16
    for slot in (SLOT_MAX, bound + 1):
        assert unchanged(node.receive("n1", Accept(B1, slot, FORGED, 0), net.now))
        assert unchanged(node.receive("n1", Accepted(B1, slot, FORGED), net.now))
    assert node.dropped == {"implausible_slot": 4}
    assert max(net.disks["n2"].accepted) == 2
    ready = node.receive("n1", Accept(B1, bound, Batch(("z",)), 2), net.now)
    assert [r.slot for r in ready.records] == [bound]


def test_a_chosen_far_beyond_the_window_is_dropped_even_from_the_primary(fifo_net) -> None:
    net = primary_cluster(fifo_net, slots_ahead_margin=0)
    node = net.nodes["n3"]
    assert unchanged(node.receive("n1", Chosen(SLOT_MAX, FORGED, B1), net.now))
    assert node.dropped == {"implausible_slot": 1} and SLOT_MAX not in node.learner.chosen


def test_the_primary_believes_slots_as_far_as_it_proposed_itself(fifo_net) -> None:
    """The bound counts from the log this node knows, its own proposals included: a primary
    ahead of its own chosen prefix (after phase 1 learned of a longer chosen log) still
    accepts its own Accepts (up to ``membership.ALPHA`` past that prefix, where it knows the
    configuration)."""
    net = primary_cluster(fifo_net, in_flight_slots_max=1, slots_ahead_margin=0)
    node = net.nodes["n1"]
    node.proposer.next_slot = 60  # as if the promisers knew slots up to 59 chosen
    ready = node.receive("n1", Accept(B1, 59, Batch(("q",)), 2), net.now)
    assert [r.slot for r in ready.records] == [59] and node.dropped == {}


# -- catch-up replies ------------------------------------------------------------------------


def _forged_snapshot_reply(slot: int) -> CatchupReply:
    data = b"forged state"
    chunk = SnapshotChunk(slot, 0, len(data), digest_of(Snapshot(slot, data)), data)
    return CatchupReply((), slot, chunk)


def test_a_catchup_reply_nobody_asked_for_is_dropped(fifo_net) -> None:
    """The frame that replaced a cluster's state: ``CatchupReply((), 10**6, <snapshot>)`` to a
    follower that asked nothing. Nothing is installed or recorded, whatever its digest."""
    net = primary_cluster(fifo_net)
    node = net.nodes["n3"]
    assert unchanged(node.receive("n1", _forged_snapshot_reply(10**6), net.now))
    entries = (ChosenEntry(3, FORGED),)
    assert unchanged(node.receive("n1", CatchupReply(entries, 3), net.now))
    assert node.dropped == {"unsolicited_catchup": 2}
    assert node.chosen_index == 2 and node.snapshot is None


def test_a_catchup_reply_must_answer_the_request_from_the_member_asked(fifo_net) -> None:
    """n3 asks n1 for slots from 3: a reply from n2, entries that start elsewhere, and a
    snapshot that does not cover slot 3 answer nothing; n1's true answer is used, once."""
    net = primary_cluster(fifo_net, decisions=2)
    net.submit("n1", "x")
    net.deliver(lambda e: e.dst != "n3")
    net.queue.clear()
    node = net.nodes["n3"]
    node.receive("n1", Heartbeat(B1, 3, 1), net.now)
    net.now += 1.0
    assert [(e.dst, e.msg) for e in node.tick(net.now).messages] == [("n1", CatchupRequest(3))]
    good = CatchupReply((ChosenEntry(3, Batch(("x",))),), 3)
    wrong = [
        ("n2", good),
        ("n1", CatchupReply((ChosenEntry(4, FORGED),), 4)),
        ("n1", _forged_snapshot_reply(2)),
    ]
    for src, reply in wrong:
        assert unchanged(node.receive(src, reply, net.now))
    assert node.dropped == {"unsolicited_catchup": 3}
    assert node.receive("n1", good, net.now).learned == [ChosenEntry(3, Batch(("x",)))]
    assert unchanged(node.receive("n1", good, net.now))  # a duplicate answers nothing now
    assert node.dropped == {"unsolicited_catchup": 4}


def test_an_empty_catchup_reply_is_only_a_hint_of_the_senders_chosen_index(fifo_net) -> None:
    """Sent unasked to a proposer behind a compacted slot (``Acceptor.on_accept``): it names
    whom to ask, as a Heartbeat's chosen index does, and changes nothing else."""
    net = primary_cluster(fifo_net)
    node = net.nodes["n3"]
    ready = node.receive("n2", CatchupReply((), 7), net.now)
    assert (ready.records, ready.learned, ready.installed) == ([], [], None)
    assert node.catchup_target == ("n2", 7) and node.dropped == {}


def test_config_bounds_the_chunk_size_and_the_margin() -> None:
    with pytest.raises(ValueError, match="snapshot_chunk_bytes"):
        CoreConfig("n1", MEMBERS, snapshot_chunk_bytes=0)
    with pytest.raises(ValueError, match="snapshot_chunk_bytes"):
        CoreConfig("n1", MEMBERS, snapshot_chunk_bytes=17 * 1024 * 1024)
    with pytest.raises(ValueError, match="slots_ahead_margin"):
        CoreConfig("n1", MEMBERS, slots_ahead_margin=-1)
    assert slots_ahead_max(CoreConfig("n1", MEMBERS)) == 4 * 64 + 1024
