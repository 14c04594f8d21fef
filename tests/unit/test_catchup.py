"""Catch-up: a node that is behind fetches chosen slots (DESIGN §2, "Catch-up")."""

from __future__ import annotations

import pytest

from paxlock.coordinator.core.ballot import Ballot
from paxlock.coordinator.core.learner import LearnMode
from paxlock.coordinator.core.messages import (
    Batch,
    CatchupReply,
    CatchupRequest,
    Chosen,
    ChosenEntry,
    Envelope,
    Heartbeat,
)
from paxlock.coordinator.core.proposer import Role
from paxlock.coordinator.core.ready import BecamePrimary

MEMBERS = ("n1", "n2", "n3")
RETRY_S = 0.2


def lagging_cluster(fifo_net, decisions: int, **config):
    """n1 primary; n3 cut off while ``decisions`` slots are chosen by n1 and n2."""
    net = fifo_net(MEMBERS, election=False, retry_s=RETRY_S, **config)
    net.elect("n1")
    cut = lambda e: "n3" in (e.src, e.dst)  # noqa: E731
    for i in range(decisions):
        net.submit("n1", f"c{i}")
        net.drop(cut)
        net.deliver(lambda e: not cut(e))
        net.drop(cut)
    assert net.nodes["n1"].chosen_index == decisions
    assert net.nodes["n3"].chosen_index == 0
    return net


def expected(n: int) -> list[ChosenEntry]:
    return [ChosenEntry(s, Batch((f"c{s - 1}",))) for s in range(1, n + 1)]


def test_catchup_a_lagging_node_fetches_chosen_slots_in_batches_after_a_heartbeat(fifo_net) -> None:
    """DESIGN §2: "a node that is behind fetches chosen slots". The primary's heartbeat shows
    n3 it is 10 slots behind; one retry interval later (ordinary learning did not fill the
    gap) it asks the primary, which answers at most ``catchup_entries_max`` per reply; n3
    asks again on each reply until it has everything, and applies each slot once, in
    order."""
    net = lagging_cluster(fifo_net, 10, catchup_entries_max=4)
    mark = len(net.sent)
    net.now += 0.1  # the primary's next heartbeat is due
    net.tick("n1")
    beats = [e.msg for e in net.queue if e.dst == "n3"]
    assert [(type(b), b.ballot, b.chosen_index) for b in beats] == [
        (Heartbeat, Ballot(1, "n1"), 10)
    ]
    net.deliver()
    assert net.sent_of(CatchupRequest, since=mark) == []
    assert net.deadlines["n3"] == pytest.approx(net.now + RETRY_S)

    net.now += RETRY_S
    net.tick("n3")
    net.deliver()
    requests = [(e.dst, e.msg.from_slot) for e in net.sent_of(CatchupRequest, since=mark)]
    replies = [e.msg for e in net.sent_of(CatchupReply, since=mark)]
    assert requests == [("n1", 1), ("n1", 5), ("n1", 9)]
    assert [len(r.entries) for r in replies] == [4, 4, 2]
    assert all(r.chosen_index == 10 for r in replies)
    assert net.learned["n3"] == expected(10)
    assert net.disks["n3"].chosen == {e.slot: e.value for e in expected(10)}
    # nothing more to fetch: later ticks ask for nothing
    net.now += 10 * RETRY_S
    assert [e for e in net.tick("n3").messages if isinstance(e.msg, CatchupRequest)] == []


def test_catchup_is_not_needed_when_ordinary_learning_fills_the_gap_in_time(fifo_net) -> None:
    """Catch-up waits one retry interval: when the missing Chosen arrives meanwhile (the usual
    case), no CatchupRequest is sent at all."""
    net = fifo_net(MEMBERS, election=False, retry_s=RETRY_S,
                   learn_mode=LearnMode.parse("primary"))  # fmt: skip
    net.elect("n1")
    net.submit("n1", "x")
    net.deliver(lambda e: not (isinstance(e.msg, Chosen) and e.dst == "n3"))
    net.receive(_heartbeat(net, "n3"))  # shows n3 one slot behind
    net.deliver()  # the Chosen for slot 1 reaches n3
    assert net.learned["n3"] == [ChosenEntry(1, Batch(("x",)))]
    net.now += RETRY_S
    ready = net.tick("n3")
    assert [e for e in ready.messages if isinstance(e.msg, CatchupRequest)] == []
    assert net.sent_of(CatchupRequest) == []


def test_catchup_turns_to_the_new_primary_when_the_node_it_asked_is_gone(fifo_net) -> None:
    """A node that is behind must eventually fetch the chosen slots from someone who has them:
    n1 crashes right after its heartbeat showed n3 behind; n2 (which has every slot) becomes
    primary and heartbeats the same chosen index; n3 must catch up from n2."""
    net = lagging_cluster(fifo_net, 3)
    net.receive(_heartbeat(net, "n3"))  # n3's catch-up source is now n1 ...
    down = lambda e: "n1" in (e.src, e.dst)  # noqa: E731  ... which crashes
    net.drop(down)
    net.run_phase1("n2")
    net.drop(down)
    net.deliver(lambda e: not down(e))
    net.drop(down)
    assert net.nodes["n2"].role is Role.PRIMARY  # (n1 is down: its state is moot)
    for _ in range(20):
        net.now += RETRY_S
        net.receive(_heartbeat(net, "n3", primary="n2"))
        net.tick("n3")
        net.drop(down)
        net.deliver(lambda e: not down(e))
        net.drop(down)
    assert net.learned["n3"] == expected(3)


def _heartbeat(net, dst: str, primary: str = "n1") -> Envelope:
    """A heartbeat to ``dst`` as ``primary`` sends it: its ballot and chosen index."""
    node = net.nodes[primary]
    beat = Heartbeat(node.ballot, node.chosen_index, 1)
    return Envelope(primary, dst, beat)


def test_catchup_a_request_beyond_the_chosen_prefix_gets_an_empty_reply(fifo_net) -> None:
    """A catch-up reply carries only chosen slots, contiguous from the one asked for."""
    net = lagging_cluster(fifo_net, 2)
    ready = net.nodes["n1"].receive("n3", CatchupRequest(3), net.now)
    assert [e.msg for e in ready.messages] == [CatchupReply((), 2)]
    ready = net.nodes["n1"].receive("n3", CatchupRequest(2), net.now)
    assert [e.msg for e in ready.messages] == [
        CatchupReply((ChosenEntry(2, Batch(("c1",))),), 2)
    ]


def test_catchup_a_new_primary_that_is_behind_fetches_the_prefix_a_promiser_knows_chosen(
    fifo_net,
) -> None:
    """Phase 1 tells the new primary how far each promiser knows the log chosen: slots up to
    the longest such prefix are not proposed again, new batches go after them, and the
    primary fetches that prefix from the promiser that knows it, then applies all in order."""
    net = lagging_cluster(fifo_net, 3)
    down = lambda e: "n1" in (e.src, e.dst)  # noqa: E731  n1 crashes
    net.run_phase1("n3")
    net.drop(down)
    net.deliver(lambda e: not down(e))
    net.drop(down)
    assert net.nodes["n3"].role is Role.PRIMARY
    assert net.events_of(BecamePrimary)[-1] == ("n3", BecamePrimary(Ballot(2, "n3"), 0))
    ready = net.submit("n3", "z")
    assert {(e.msg.slot, e.msg.value) for e in ready.messages} == {(4, Batch(("z",)))}
    net.drop(down)
    net.deliver(lambda e: not down(e))
    net.drop(down)
    assert net.learned["n3"] == []  # slot 4 is chosen, but 1-3 are still missing here
    net.now += RETRY_S
    mark = len(net.sent)
    net.tick("n3")
    net.drop(down)
    net.deliver(lambda e: not down(e))
    assert [(e.dst, e.msg) for e in net.sent_of(CatchupRequest, since=mark)] == [
        ("n2", CatchupRequest(1))
    ]
    assert net.learned["n3"] == [*expected(3), ChosenEntry(4, Batch(("z",)))]


# -- snapshots in chunks -----------------------------------------------------------------------

DATA = b"the state machine at slot 8, in 41 bytes."  # chunks of 8: six pulls


def compacted_cluster(fifo_net, chunk_bytes: int = 8, data: bytes = DATA, **config):
    """n3 missed slots 1-10; n1 and n2 compacted at 8 (both with ``data``); n3 knows it is
    behind (a heartbeat) and its first request is due."""
    net = lagging_cluster(fifo_net, 10, snapshot_chunk_bytes=chunk_bytes, **config)
    for member in ("n1", "n2"):
        net.absorb(member, net.nodes[member].compact(8, data, net.now))
    net.receive(_heartbeat(net, "n3"))
    net.queue.clear()
    net.now += RETRY_S
    return net


def _chunks(envelopes) -> list[tuple[int, int]]:
    return [(e.msg.chunk.offset, len(e.msg.chunk.data)) for e in envelopes
            if isinstance(e.msg, CatchupReply) and e.msg.chunk is not None]  # fmt: skip


def test_a_snapshot_travels_in_chunks_each_pulled_after_the_last_and_installs_once(
    fifo_net,
) -> None:
    """A snapshot larger than a chunk: one chunk in flight at a time (the next is asked for
    only once the previous one arrived), each at most ``snapshot_chunk_bytes``; assembled,
    checked and installed once, then the slots after it are applied."""
    net = compacted_cluster(fifo_net)
    mark = len(net.sent)
    ready = net.tick("n3")
    assert [e.msg for e in ready.messages] == [CatchupRequest(1)]
    in_flight = []
    while net.queue:  # one envelope at a time: never more than one chunk on its way
        in_flight.append(sum(isinstance(e.msg, CatchupReply) for e in net.queue))
        envelope = net.queue.popleft()
        net.receive(envelope)
    assert max(in_flight) == 1
    replies = net.sent_of(CatchupReply, since=mark)
    wrapped = net.nodes["n1"].snapshot.data  # the schedule at slot 8, then DATA
    size = len(wrapped)
    starts = list(range(0, size, 8))
    assert _chunks(replies) == [(start, min(8, size - start)) for start in starts]
    offsets = [e.msg.offset for e in net.sent_of(CatchupRequest, since=mark)]
    assert offsets == starts
    assert [e.msg.entries for e in replies[:-1]] == [()] * (len(starts) - 1)  # with the last
    assert net.installed["n3"] == [(8, DATA)]
    assert net.disks["n3"].snapshot == wrapped
    assert net.learned["n3"] == expected(10)[8:]
    assert net.nodes["n3"].dropped == {}


def test_a_chunk_out_of_order_is_ignored_and_the_transfer_recovers(fifo_net) -> None:
    """A late duplicate of an earlier chunk, or a chunk further on than asked, is dropped;
    the chunk asked for is taken, and the snapshot installs intact."""
    net = compacted_cluster(fifo_net)
    net.tick("n3")
    net.receive(net.queue.popleft())  # n1 answers the first request ...
    (first,) = list(net.queue)
    net.queue.clear()
    net.receive(first)  # ... n3 takes chunk 0 and asks for offset 8
    (request,) = list(net.queue)
    assert request.msg.offset == 8
    node = net.nodes["n3"]
    skip = CatchupReply((), 10, first.msg.chunk.__class__(
        8, 16, len(DATA), first.msg.chunk.digest, DATA[16:24]))  # fmt: skip
    for stray in (first, Envelope("n1", "n3", skip)):
        ready = net.receive(stray)
        assert (ready.records, ready.messages, ready.installed) == ([], [], None)
    assert node.dropped == {"unsolicited_catchup": 2}
    net.deliver()
    assert net.installed["n3"] == [(8, DATA)]
    assert net.learned["n3"] == expected(10)[8:]


def test_a_lost_chunk_is_asked_for_again_by_the_retry(fifo_net) -> None:
    net = compacted_cluster(fifo_net)
    net.tick("n3")
    net.receive(net.queue.popleft())
    net.receive(net.queue.popleft())  # chunk 0 taken; the request for offset 8 ...
    net.queue.clear()  # ... is lost
    net.now += RETRY_S
    (retry,) = [e for e in net.tick("n3").messages if isinstance(e.msg, CatchupRequest)]
    assert retry.msg.offset == 8 and retry.dst == "n2"  # another member with the same one
    net.deliver()
    assert net.installed["n3"] == [(8, DATA)]


def test_a_sender_with_another_snapshot_restarts_the_transfer(fifo_net) -> None:
    """The retry reaches n2, whose snapshot is not the one under way (another slot): it
    starts its own at offset 0, n3 starts afresh, and installs n2's."""
    net = compacted_cluster(fifo_net)
    other = b"n2's state machine at slot 9, 34 bytes"
    net.absorb("n2", net.nodes["n2"].compact(9, other, net.now))
    net.tick("n3")
    net.receive(net.queue.popleft())
    net.receive(net.queue.popleft())  # chunk 0 of n1's snapshot taken
    net.queue.clear()
    net.now += RETRY_S
    mark = len(net.sent)
    net.tick("n3")  # the retry goes to n2
    net.deliver()
    assert _chunks(net.sent_of(CatchupReply, since=mark))[0] == (0, 8)
    assert net.installed["n3"] == [(9, other)]
    assert net.learned["n3"] == expected(10)[9:]


def test_a_sender_that_compacts_meanwhile_finishes_the_snapshot_under_way(fifo_net) -> None:
    """n1 compacts again in the middle of a transfer: it goes on serving the snapshot the
    transfer began with (else a snapshot slower to send than the interval between
    compactions would never arrive); n3 installs it, then fetches the newer one."""
    net = compacted_cluster(fifo_net)
    net.tick("n3")
    net.receive(net.queue.popleft())
    net.receive(net.queue.popleft())  # chunk 0 of the snapshot at 8 taken
    newer = b"state at 10"
    net.absorb("n1", net.nodes["n1"].compact(10, newer, net.now))
    net.deliver()
    assert net.installed["n3"] == [(8, DATA), (10, newer)]
    assert net.nodes["n3"].chosen_index == 10


def test_a_snapshot_that_does_not_match_its_digest_is_dropped_and_fetched_again(
    fifo_net,
) -> None:
    """Assembled, the bytes must be the announced size and digest; a corrupted chunk makes
    the whole transfer void (counted), and the retry fetches it anew."""
    net = compacted_cluster(fifo_net, chunk_bytes=256)
    net.tick("n3")
    net.receive(net.queue.popleft())
    (reply,) = list(net.queue)
    net.queue.clear()
    chunk = reply.msg.chunk
    bad = chunk.__class__(chunk.slot, 0, chunk.total, chunk.digest, b"X" + chunk.data[1:])
    ready = net.receive(Envelope("n1", "n3", CatchupReply(reply.msg.entries, 10, bad)))
    assert (ready.records, ready.installed, ready.learned) == ([], None, [])
    assert net.nodes["n3"].dropped == {"corrupt_snapshot": 1}
    net.now += RETRY_S
    net.tick("n3")
    net.deliver()
    assert net.installed["n3"] == [(8, DATA)]


def test_serving_cuts_entries_at_about_a_chunk_of_bytes() -> None:
    """Catch-up entries are bounded in bytes too, not only in count: a reply stays near one
    chunk whatever the commands weigh (at least one entry, so it always progresses)."""
    from paxlock.coordinator.core.catchup import serve

    chosen = {s: Batch((bytes(100),)) for s in range(1, 11)}
    reply = serve(CatchupRequest(1), chosen, 10, None, 256, chunk_bytes=250)
    assert [e.slot for e in reply.entries] == [1, 2, 3]
    reply = serve(CatchupRequest(1), chosen, 10, None, 256, chunk_bytes=1)
    assert [e.slot for e in reply.entries] == [1]
