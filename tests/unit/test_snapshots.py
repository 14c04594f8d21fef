"""Snapshots and compaction (DESIGN §2): "the state machine is snapshotted at an applied slot;
slots and acceptor records below it are dropped", and "a node that is behind fetches ... a
snapshot when the slots it needs were compacted away"."""

from __future__ import annotations

import pytest

from paxlock.coordinator.core.acceptor import Acceptor
from paxlock.coordinator.core.ballot import ZERO_BALLOT, Ballot
from paxlock.coordinator.core.catchup import digest_of, serve
from paxlock.coordinator.core.learner import Learner
from paxlock.coordinator.core.membership import decode_snapshot
from paxlock.coordinator.core.messages import (
    Accept,
    Accepted,
    AcceptedEntry,
    AcceptRecord,
    Batch,
    CatchupReply,
    CatchupRequest,
    ChosenEntry,
    ChosenRecord,
    Envelope,
    Heartbeat,
    Nack,
    Prepare,
    Promise,
    PromiseRecord,
    Record,
    Snapshot,
    SnapshotChunk,
    SnapshotRecord,
)
from paxlock.coordinator.core.proposer import Proposer, Role
from paxlock.coordinator.core.ready import BecamePrimary, DurableState

MEMBERS = ("n1", "n2", "n3")
RETRY_S = 0.2
B1 = Ballot(1, "n1")
X, Y = Batch(("x",)), Batch(("y",))


def value(slot: int) -> Batch:
    return Batch((f"c{slot - 1}",))


def entries(first: int, last: int) -> list[ChosenEntry]:
    return [ChosenEntry(s, value(s)) for s in range(first, last + 1)]


def whole(slot: int, data: bytes) -> SnapshotChunk:
    """A snapshot small enough to travel in one chunk."""
    return SnapshotChunk(slot, 0, len(data), digest_of(Snapshot(slot, data)), data)


def cluster(fifo_net, decisions: int, *, behind: str | None = None, **config):
    """n1 primary and ``decisions`` slots chosen; ``behind`` (if any) hears none of it."""
    net = fifo_net(MEMBERS, election=False, retry_s=RETRY_S, **config)
    net.elect("n1")
    cut = lambda e: behind in (e.src, e.dst)  # noqa: E731
    for i in range(decisions):
        net.submit("n1", f"c{i}")
        net.drop(cut)
        net.deliver(lambda e: not cut(e))
        net.drop(cut)
    return net


def compact(net, node_id: str, slot: int) -> bytes:
    """What a runtime does once its state machine applied ``slot``: snapshot and compact."""
    data = f"state@{slot}".encode()
    net.absorb(node_id, net.nodes[node_id].compact(slot, data, net.now))
    return data


# -- compaction ------------------------------------------------------------------------------


def test_compaction_drops_exactly_the_slots_the_snapshot_covers(fifo_net) -> None:
    """"Slots and acceptor records below it are dropped": at or below the snapshot slot, and
    nothing above it — in memory and on disk alike."""
    net = cluster(fifo_net, 5)
    node = net.nodes["n1"]
    ready = node.compact(3, b"s3", net.now)
    assert ready.records == [SnapshotRecord(3, node.snapshot.data)]
    assert decode_snapshot(node.snapshot.data)[1] == b"s3"  # the schedule at 3, then the data
    assert ready.installed is None and ready.learned == []  # its own state: nothing to apply
    net.absorb("n1", ready)
    assert sorted(node.learner.chosen) == [4, 5]
    assert sorted(node.acceptor.accepted) == [4, 5]
    assert node.snapshot.slot == 3 and node.chosen_index == 5
    disk = net.disks["n1"]
    assert (disk.snapshot_slot, disk.snapshot) == (3, node.snapshot.data)
    assert sorted(disk.chosen) == [4, 5] and sorted(disk.accepted) == [4, 5]
    # the other nodes keep their own logs until they compact
    assert sorted(net.disks["n2"].chosen) == [1, 2, 3, 4, 5]


def test_compaction_covers_applied_slots_only_and_never_goes_back(fifo_net) -> None:
    net = cluster(fifo_net, 3)
    node = net.nodes["n1"]
    with pytest.raises(AssertionError, match="applied"):
        node.compact(4, b"future", net.now)
    compact(net, "n1", 2)
    with pytest.raises(AssertionError, match="never goes down"):
        node.compact(1, b"older", net.now)
    compact(net, "n1", 2)  # the same slot again is harmless
    assert net.disks["n1"].snapshot_slot == 2


def test_durable_state_applies_a_snapshot_record_and_keeps_it_in_copies() -> None:
    state = DurableState()
    records: list[Record] = [
        PromiseRecord(B1),
        *(AcceptRecord(s, B1, value(s)) for s in (1, 2, 3)),
        *(ChosenRecord(s, value(s)) for s in (1, 2, 3)),
        SnapshotRecord(2, b"s2"),
    ]
    for record in records:
        state.apply(record)
    assert (state.snapshot_slot, state.snapshot) == (2, b"s2")
    assert list(state.accepted) == [3] and list(state.chosen) == [3]
    copy = state.copy()
    assert (copy.snapshot_slot, copy.snapshot, copy.chosen) == (2, b"s2", {3: value(3)})
    with pytest.raises(AssertionError, match="never goes down"):
        state.apply(SnapshotRecord(1, b"s1"))
    with pytest.raises(AssertionError, match="compacted slot"):
        state.apply(ChosenRecord(2, value(2)))
    with pytest.raises(AssertionError, match="compacted slot"):
        state.apply(AcceptRecord(2, B1, value(2)))


# -- restart ---------------------------------------------------------------------------------


def test_restart_from_a_compacted_durable_state_delivers_only_later_slots(
    fifo_net,
) -> None:
    """A restarted node resumes after its snapshot: ``start()`` hands the snapshot over as
    ``installed`` (restore it first), then delivers the chosen slots after it, never those it
    covers."""
    net = cluster(fifo_net, 5)
    data = compact(net, "n2", 3)
    ready = net.restart("n2")
    assert ready.installed == (3, data)
    assert ready.learned == entries(4, 5)
    assert ready.records == []  # the snapshot is durable already
    node = net.nodes["n2"]
    assert node.snapshot == Snapshot(3, net.disks["n2"].snapshot)
    assert node.learner.applied_index == 5 and node.chosen_index == 5
    assert sorted(node.accepted_entries()) == [4, 5]


def test_restart_without_a_snapshot_installs_nothing(fifo_net) -> None:
    net = cluster(fifo_net, 2)
    ready = net.restart("n2")
    assert ready.installed is None and ready.learned == entries(1, 2)


# -- catch-up by snapshot transfer -----------------------------------------------------------


def _catch_up(net, node_id: str, rounds: int = 10) -> list:
    """Let ``node_id`` ask for what it misses until it has nothing more to ask."""
    replies = []
    net.now += RETRY_S
    for _ in range(rounds):
        ready = net.tick(node_id)
        if not any(isinstance(e.msg, CatchupRequest) for e in ready.messages):
            break
        replies += [e.msg for e in net.deliver() if isinstance(e.msg, CatchupReply)]
        net.now = max(net.now, net.deadlines[node_id])
    return replies


def test_a_node_behind_the_compaction_point_catches_up_by_snapshot_transfer(fifo_net) -> None:
    """n3 missed slots 1-10 while n1 and n2 compacted at 8: it gets n1's snapshot, installs it
    (persisted as a SnapshotRecord, replacing its state machine before anything is applied),
    then learns and applies slots 9-10 from the same reply."""
    net = cluster(fifo_net, 10, behind="n3")
    data = compact(net, "n1", 8)
    compact(net, "n2", 8)
    net.receive(Envelope("n1", "n3", Heartbeat(B1, 10, 1)))  # shows n3 it is behind
    net.deliver()
    mark = len(net.sent)
    net.now += RETRY_S
    ready = net.tick("n3")
    assert [e.msg for e in ready.messages] == [CatchupRequest(1)]
    (reply_envelope,) = [e for e in net.deliver() if isinstance(e.msg, CatchupReply)]
    reply = reply_envelope.msg
    stored = net.nodes["n1"].snapshot.data  # the schedule at 8, then data
    assert reply == CatchupReply(tuple(entries(9, 10)), 10, whole(8, stored))
    assert net.installed["n3"] == [(8, data)]
    assert net.learned["n3"] == entries(9, 10)
    disk = net.disks["n3"]
    assert (disk.snapshot_slot, disk.snapshot, sorted(disk.chosen)) == (8, stored, [9, 10])
    node = net.nodes["n3"]
    assert node.chosen_index == 10 and node.snapshot == Snapshot(8, stored)
    assert net.sent_of(CatchupRequest, since=mark) == [Envelope("n3", "n1", CatchupRequest(1))]
    # a duplicate of the reply answers nothing any more: dropped, counted, nothing applied
    ready = net.receive(reply_envelope)
    assert ready.installed is None and ready.learned == [] and ready.records == []
    assert node.dropped == {"unsolicited_catchup": 1}


def test_a_snapshot_reply_installs_before_the_entries_it_carries(fifo_net) -> None:
    """The records of an install are ordered as the disk must apply them: the snapshot first,
    then the chosen slots after it; ``learned`` starts right after the snapshot."""
    net = cluster(fifo_net, 6, behind="n3", catchup_entries_max=1)
    data = compact(net, "n1", 4)
    net.receive(Envelope("n1", "n3", Heartbeat(B1, 6, 1)))  # shows n3 it is behind
    net.queue.clear()
    net.now += RETRY_S
    assert [e.msg for e in net.tick("n3").messages] == [CatchupRequest(1)]
    net.queue.clear()
    ready = net.receive(
        Envelope("n1", "n3", serve(CatchupRequest(1), net.nodes["n1"].learner.chosen, 6,
                                   net.nodes["n1"].snapshot, 1))  # fmt: skip
    )
    stored = net.nodes["n1"].snapshot.data
    assert ready.records == [SnapshotRecord(4, stored), ChosenRecord(5, value(5))]
    assert ready.installed == (4, data) and ready.learned == entries(5, 5)
    # more is missing: it asks again at once, for the slot after what it has
    assert net.nodes["n3"].catchup_target == ("n1", 6)
    assert [e.msg for e in ready.messages] == [CatchupRequest(6)]
    net.deliver()
    assert net.learned["n3"] == entries(5, 6)


def test_serving_catch_up_sends_the_snapshot_only_for_compacted_slots() -> None:
    chosen = {s: value(s) for s in (5, 6, 7)}
    snap = Snapshot(4, b"s4")
    assert serve(CatchupRequest(2), chosen, 7, snap, 2) == CatchupReply(
        tuple(entries(5, 6)), 7, whole(4, b"s4")
    )
    assert serve(CatchupRequest(4), chosen, 7, snap, 10).chunk == whole(4, b"s4")
    assert serve(CatchupRequest(6), chosen, 7, snap, 10) == CatchupReply(
        tuple(entries(6, 7)), 7
    )
    assert serve(CatchupRequest(8), chosen, 7, snap, 10) == CatchupReply((), 7)


def test_a_late_accepted_for_an_installed_slot_is_ignored() -> None:
    """Once a snapshot covers a slot, its votes are gone and no report makes it learned (and
    delivered) again."""
    learner = Learner(2, {}, 0)
    records: list[Record] = []
    assert not learner.on_accepted("a", 3, B1, X, records)
    learner.forget_through(5)
    assert learner.applied_index == 5 and learner.chosen == {}
    assert not learner.on_accepted("b", 3, B1, X, records)
    assert not learner.learn(4, X, records)
    learned: list[ChosenEntry] = []
    learner.deliver(learned)
    assert learned == [] and records == []


# -- phase 1 and phase 2 around compacted slots ----------------------------------------------


def test_a_promise_from_a_compacted_acceptor_never_leads_to_proposals_in_compacted_slots(
    fifo_net,
) -> None:
    """n2 accepted and compacted slots 1-5, so its promise reports none of them; n3 knows
    nothing. Without the promise's chosen index, n3 would see an empty log and propose new
    batches into slots 1-5, which are chosen (P2b broken). With it, n3 proposes nothing at or
    below 5 and fetches the prefix (as a snapshot) instead."""
    net = cluster(fifo_net, 5, behind="n3")
    data = compact(net, "n2", 5)
    down = lambda e: "n1" in (e.src, e.dst)  # noqa: E731  n1 crashes
    mark = len(net.sent)
    net.run_phase1("n3")
    net.drop(down)
    net.deliver(lambda e: not down(e))
    net.drop(down)
    promises = {e.src: e.msg for e in net.sent_of(Promise, since=mark)}
    assert promises["n2"].accepted == () and promises["n2"].chosen_index == 5
    assert net.nodes["n3"].role is Role.PRIMARY
    assert net.events_of(BecamePrimary)[-1] == ("n3", BecamePrimary(Ballot(2, "n3"), 0))
    ready = net.submit("n3", "z")
    assert [(e.msg.slot, e.msg.value) for e in ready.messages] == [(6, Batch(("z",)))] * 3
    net.drop(down)
    net.deliver(lambda e: not down(e))
    net.drop(down)
    assert all(e.msg.slot > 5 for e in net.sent_of(Accept, since=mark))
    _catch_up(net, "n3")
    net.drop(down)
    assert net.installed["n3"] == [(5, data)]
    assert net.learned["n3"] == [ChosenEntry(6, Batch(("z",)))]


def test_a_promise_never_reports_accepted_entries_below_the_snapshot() -> None:
    acceptor = Acceptor(ZERO_BALLOT, {})
    for slot in (1, 2, 3):
        acceptor.on_accept(Accept(B1, slot, value(slot), 0), [])
    acceptor.compact(2)
    promise = acceptor.on_prepare(Prepare(Ballot(2, "n2"), 1), [])
    assert isinstance(promise, Promise)
    assert promise.accepted == (AcceptedEntry(3, B1, value(3)),)


def test_an_accept_in_a_compacted_slot_is_neither_accepted_nor_acknowledged() -> None:
    """P2a holds trivially: nothing is accepted (or recorded) in a compacted slot, and no
    Accepted vouches for a value the acceptor no longer holds. A ballot below the promise is
    still refused first, so a stale proposer learns it was deposed."""
    acceptor = Acceptor(ZERO_BALLOT, {})
    acceptor.on_accept(Accept(B1, 1, X, 0), [])
    acceptor.compact(3)
    records: list[Record] = []
    assert acceptor.on_accept(Accept(Ballot(2, "n2"), 2, Y, 0), records) is None
    assert records == [] and acceptor.accepted == {} and acceptor.promised == B1
    assert acceptor.on_accept(Accept(ZERO_BALLOT, 2, Y, 0), records) == Nack(ZERO_BALLOT, B1)
    assert acceptor.on_accept(Accept(B1, 4, Y, 0), records) == AcceptedEntry(4, B1, Y)


def test_an_accept_in_a_compacted_slot_shows_a_lagging_proposer_how_far_the_log_is_chosen(
    fifo_net,
) -> None:
    """A proposer that sends an Accept into a slot another node already compacted gets no
    Accepted from it but a catch-up reply with that node's chosen index (only if its own
    piggybacked chosen index shows it does not know), so it catches up — here by snapshot —
    rather than retry the slot forever."""
    net = cluster(fifo_net, 4)
    compact(net, "n2", 4)
    node = net.nodes["n2"]
    ready = node.receive("n1", Accept(B1, 3, value(3), 2), net.now)
    assert [e.msg for e in ready.messages] == [CatchupReply((), 4)]
    assert ready.records == []
    ready = node.receive("n1", Accept(B1, 3, value(3), 4), net.now)  # a late retransmission
    assert ready.messages == [] and ready.records == []

    lagging = cluster(fifo_net, 4, behind="n3")
    data = compact(lagging, "n1", 4)
    lagging.receive(Envelope("n1", "n3", CatchupReply((), 4)))
    assert lagging.nodes["n3"].catchup_target == ("n1", 4)
    _catch_up(lagging, "n3")
    assert lagging.installed["n3"] == [(4, data)]
    assert lagging.nodes["n3"].chosen_index == 4


def test_installing_a_snapshot_drops_the_proposers_slots_it_covers() -> None:
    proposer = Proposer("n1", 2, 8, 4, 100)
    proposer.begin_phase1(B1, 1, 0.0)
    proposer.on_promise("n1", Promise(B1, 1, (AcceptedEntry(2, Ballot(0, "n2"), X),)))
    proposer.on_promise("n2", Promise(B1, 1, (AcceptedEntry(4, Ballot(0, "n2"), Y),)))
    assert proposer.take_office({}, 0.0) == 4
    proposer.next_proposals(0.0)  # slots 1-4 in flight
    proposer.forget_through(3)
    assert sorted(proposer.in_flight) == [4]
    proposer.enqueue("z")
    assert proposer.next_proposals(0.0) == [(5, Batch(("z",)))]


def test_take_office_skips_slots_this_node_knows_chosen_even_with_an_empty_log() -> None:
    """After compaction the node's chosen dict is empty below its chosen index; the proposer
    still numbers new batches after that index."""
    proposer = Proposer("n1", 2, 8, 4, 100)
    proposer.begin_phase1(B1, 1, 0.0)
    for member in ("n1", "n2"):
        proposer.on_promise(member, Promise(B1, 1, ()))
    assert proposer.take_office({}, 0.0, chosen_index=7) == 0
    proposer.enqueue("z")
    assert proposer.next_proposals(0.0) == [(8, Batch(("z",)))]


def test_an_accepted_message_for_a_compacted_slot_changes_nothing(fifo_net) -> None:
    net = cluster(fifo_net, 3)
    compact(net, "n1", 3)
    ready = net.nodes["n1"].receive("n2", Accepted(B1, 2, X), net.now)
    assert ready.records == [] and ready.learned == [] and ready.installed is None
