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
    asks again at once until it has everything, and applies each slot once, in order."""
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
    requests, replies = [], []
    for _ in range(10):
        ready = net.tick("n3")
        asked = [e for e in ready.messages if isinstance(e.msg, CatchupRequest)]
        if not asked:
            break
        requests += [(e.dst, e.msg.from_slot) for e in asked]
        delivered = net.deliver()
        replies += [e.msg for e in delivered if isinstance(e.msg, CatchupReply)]
        net.now = max(net.now, net.deadlines["n3"])
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
