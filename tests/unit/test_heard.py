"""``core.heard``: whom a node heard from, when, and how far each member got — the record
behind ``reachable`` and lag (issue 11, item 4). Each test is named after the rule it checks.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from paxlock.coordinator.core.ballot import Ballot
from paxlock.coordinator.core.heard import Contact, Heard
from paxlock.coordinator.core.messages import (
    MEMBERS_MAX,
    Accepted,
    CatchupRequest,
    HeardFrom,
    Heartbeat,
    HeartbeatAck,
    Message,
    NoOp,
)
from paxlock.coordinator.core.node import CoreConfig

MEMBERS = ("n1", "n2", "n3")
B1 = Ballot(1, "n1")


def test_any_message_from_a_member_dates_it_and_a_reported_chosen_index_is_kept() -> None:
    heard = Heard("n1", MEMBERS)
    heard.on_message("n2", HeartbeatAck(B1, 1, 7), 10.0)
    heard.on_message("n2", Accepted(B1, 8, NoOp()), 11.0)  # no chosen index: 7 stays
    heard.on_message("n3", CatchupRequest(5), 12.0)  # it lacks slot 5: it has chosen 4
    assert heard.contacts() == (Contact("n2", 11.0, 7, None), Contact("n3", 12.0, 4, None))


def test_nothing_is_recorded_for_this_node_or_for_a_non_member() -> None:
    heard = Heard("n1", MEMBERS)
    heard.on_message("n1", HeartbeatAck(B1, 1, 3), 1.0)  # loopback
    heard.on_message("intruder", HeartbeatAck(B1, 1, 3), 1.0)
    heard.on_message("n2", HeartbeatAck(B1, 1, -5), 1.0)  # no member reports that
    assert heard.contacts() == (Contact("n2", 1.0, None, None),)


def test_a_follower_learns_of_the_other_followers_through_the_primarys_heartbeat() -> None:
    primary, follower = Heard("n1", MEMBERS), Heard("n2", MEMBERS)
    primary.on_message("n3", HeartbeatAck(B1, 1, 9), 100.0)
    primary.on_message("n2", HeartbeatAck(B1, 1, 9), 100.2)
    beat = Heartbeat(B1, 9, 2, primary.report(100.5))
    assert beat.heard == (HeardFrom("n2", pytest.approx(0.3), 9),
                          HeardFrom("n3", pytest.approx(0.5), 9))  # fmt: skip
    follower.on_message("n1", beat, 50.0)  # another clock: only ages cross the wire
    assert follower.contacts() == (Contact("n1", 50.0, 9, None),
                                   Contact("n3", pytest.approx(49.5), 9, "n1"))  # fmt: skip


def test_a_relayed_record_never_replaces_a_fresher_one_and_is_never_relayed_again() -> None:
    follower = Heard("n2", MEMBERS)
    follower.on_message("n3", HeartbeatAck(B1, 1, 4), 10.0)  # heard directly, at 10
    follower.on_message("n1", Heartbeat(B1, 9, 2, (HeardFrom("n3", 5.0, 2),)), 12.0)
    assert follower.contacts()[1] == Contact("n3", 10.0, 4, None)  # 12 - 5 = 7 is older
    follower.on_message("n1", Heartbeat(B1, 9, 3, (HeardFrom("n3", 0.5, 6),)), 12.0)
    assert follower.contacts()[1] == Contact("n3", 11.5, 6, "n1")
    assert follower.report(12.0) == (HeardFrom("n1", 0.0, 9),)  # its direct records only


def test_a_relayed_entry_about_the_receiver_the_sender_or_a_stranger_is_ignored() -> None:
    follower = Heard("n2", MEMBERS)
    entries = (HeardFrom("n2", 0.0, 1), HeardFrom("n1", 0.0, 1), HeardFrom("zz", 0.0, 1))
    follower.on_message("n1", Heartbeat(B1, 9, 2, entries), 3.0)
    assert follower.contacts() == (Contact("n1", 3.0, 9, None),)


@pytest.mark.parametrize("entry", [
    ["n2", float("nan"), 1], ["n2", -1.0, 1], ["n2", float("inf"), 1], ["n2", 0.0, -1],
    ["", 0.0, 1], ["x" * 300, 0.0, 1],
])  # fmt: skip
def test_a_heartbeat_with_an_out_of_bounds_entry_does_not_decode(entry: list[Any]) -> None:
    """Peer input is hostile: the decoder refuses it (the peer link drops the frame)."""
    raw = msgspec.msgpack.encode([{"type": "heartbeat", "ballot": [1, "n1"],
                                   "chosen_index": 0, "seq": 1, "heard": [entry]}])  # fmt: skip
    with pytest.raises(msgspec.ValidationError):
        msgspec.msgpack.decode(raw, type=list[Message])


def test_a_heartbeat_reports_on_at_most_members_max_members() -> None:
    entries = [["n2", 0.0, 1]] * (MEMBERS_MAX + 1)
    raw = msgspec.msgpack.encode([{"type": "heartbeat", "ballot": [1, "n1"],
                                   "chosen_index": 0, "heard": entries}])  # fmt: skip
    with pytest.raises(msgspec.ValidationError):
        msgspec.msgpack.decode(raw, type=list[Message])
    members = tuple(f"m{i}" for i in range(MEMBERS_MAX + 1))
    with pytest.raises(ValueError, match="at most"):
        CoreConfig("m0", members)


def test_in_a_running_cluster_every_follower_hears_of_every_member(clocked_net: Any) -> None:
    net = clocked_net(MEMBERS, seed=4)
    net.start_all()
    assert net.run(until=lambda: len(net.primaries()) == 1, max_steps=100_000)
    net.submit(net.primaries()[0], b"x")
    net.run_for(1.0)
    for node_id, node in net.nodes.items():
        assert node.chosen_index == 1
        contacts = {c.member: c for c in node.heard.contacts()}
        assert set(contacts) == set(MEMBERS) - {node_id}
        for contact in contacts.values():
            assert net.now - contact.heard_at < 2 * node.config.election_timeout_s
            assert contact.chosen_index == node.chosen_index
