"""The edge of sessions, semaphores, read/write locks and groups, without a cluster: request
bodies, the group path grammar, access rules, the group event history, and the SDK's
parsing of answers."""

from __future__ import annotations

import asyncio
import base64

import pytest

from paxlock.api.client import coord_types, errors
from paxlock.api.server import coord_wire, group_routes, wire
from paxlock.api.server.auth import RULES, Grant, Principal
from paxlock.coordinator.errors import BadRequest
from paxlock.coordinator.group_watch import HISTORY_PER_GROUP_MAX, GroupEvents
from paxlock.coordinator.views import GroupEvent, GroupView, MemberView

# -- bodies ----------------------------------------------------------------------------------


@pytest.mark.parametrize("raw, why", [
    (b'{"holder": "h", "limit": 2}', "neither"),
    (b'{"holder": "h", "limit": 2, "ttl": 5, "session": "s7"}', "both"),
    (b'{"holder": "h", "limit": 0, "ttl": 5}', ">= 1"),
    (b'{"holder": "h", "limit": 100001, "ttl": 5}', "<= 100000"),
    (b'{"holder": "h", "limit": 2, "session": "7"}', "session"),
    (b'{"holder": "h", "limit": 2, "ttl": 5, "mode": "read"}', "unknown field"),
])  # fmt: skip
def test_a_bad_semaphore_acquire_is_a_400_naming_the_field(raw: bytes, why: str) -> None:
    with pytest.raises(BadRequest, match=why):
        wire.decode_body(raw, coord_wire.SemaphoreAcquireBody)


def test_a_grant_takes_a_ttl_or_a_session() -> None:
    bound = wire.decode_body(b'{"holder": "h", "session": "s12"}', wire.AcquireBody)
    assert (bound.ttl, bound.session) == (None, "s12")
    own = wire.decode_body(b'{"holder": "h", "mode": "write", "ttl": 3}',
                           coord_wire.RwlockAcquireBody)  # fmt: skip
    assert (own.ttl, own.session, own.mode) == (3.0, None, "write")
    with pytest.raises(BadRequest, match="neither"):
        wire.decode_body(b'{"candidate": "c"}', wire.CampaignBody)
    with pytest.raises(BadRequest, match="mode"):
        wire.decode_body(b'{"holder": "h", "mode": "both", "ttl": 3}',
                         coord_wire.RwlockAcquireBody)  # fmt: skip


def test_capabilities_are_base64_of_at_most_4096_bytes() -> None:
    ok = base64.b64encode(bytes(range(256)) * 16).decode()
    body = wire.decode_body(b'{"session": "s1", "capabilities": "%s"}' % ok.encode(),
                            coord_wire.JoinBody)  # fmt: skip
    assert body.capabilities == bytes(range(256)) * 16
    big = base64.b64encode(b"x" * 4097).decode()
    with pytest.raises(BadRequest, match="4096"):
        wire.decode_body(b'{"session": "s1", "capabilities": "%s"}' % big.encode(),
                         coord_wire.JoinBody)  # fmt: skip
    with pytest.raises(BadRequest, match="base64"):
        wire.decode_body(b'{"session": "s1", "capabilities": "***"}', coord_wire.JoinBody)


# -- paths and rules -------------------------------------------------------------------------


@pytest.mark.parametrize("tail, parsed", [
    ("g", ("g", "", "")),
    ("a/b:observe", ("a/b", ":observe", "")),
    ("a/b/members", ("a/b", "/members", "")),
    ("g/members/m/1", ("g", "/members/{member}", "m/1")),
    ("g/members/m:join", ("g", "/members/{member}:join", "m")),
    ("g/members/leader", ("g", "/members/{member}", "leader")),
    ("a/b/leader:campaign", ("a/b", "/leader:campaign", "")),
    ("g/leader/x", None),
    ("g/members:join", None),
])  # fmt: skip
def test_group_paths_split_at_their_first_reserved_segment(
        tail: str, parsed: tuple[str, str, str] | None) -> None:  # fmt: skip
    assert group_routes.parse(tail) == parsed


def test_every_group_route_has_a_rule_by_method() -> None:
    for template in group_routes.TEMPLATES:
        method = template.split(" ", 1)[0]
        assert RULES[template] == ("read" if method == "GET" else "lock"), template
    assert group_routes.resolve("POST", "a/members/b:join") == (
        "POST /v1/groups/{group}/members/{member}:join", "a")
    assert group_routes.resolve("POST", "a/members/b") is None  # no such action


def test_sessions_need_some_lock_role_and_reading_them_every_name() -> None:
    assert RULES["POST /v1/sessions"] == "locker"
    assert RULES["GET /v1/sessions/{name}"] == "read"
    reader = Principal("r", b"", (Grant("a/", "read"),))
    assert not reader.may("read", "")  # a session's route names "": every name


# -- the group history -----------------------------------------------------------------------


def _member(name: str, revision: int) -> MemberView:
    return MemberView("g", name, b"", "s1", revision, revision)


async def test_observe_answers_the_events_after_the_revision_and_the_members_now() -> None:
    state: dict[str, GroupView] = {}
    revision = [0]
    events = GroupEvents(state.get, lambda: revision[0], asyncio.get_running_loop().time)
    events.started()
    state["g"] = GroupView("g", 1, ())
    events.record("g", GroupEvent("created", None, 1))
    waiting = asyncio.create_task(events.observe("g", after=1, timeout=5.0))
    await asyncio.sleep(0)
    assert not waiting.done()
    state["g"] = GroupView("g", 2, (_member("m", 2),))
    events.record("g", GroupEvent("joined", "m", 2))
    changes = await asyncio.wait_for(waiting, 5.0)
    assert changes is not None and changes.complete
    assert [(e.type, e.member) for e in changes.events] == [("joined", "m")]
    assert [m.member for m in changes.members] == ["m"]
    everything = events.changes("g", 0)
    assert everything is not None and [e.revision for e in everything.events] == [1, 2]
    assert await events.observe("g", after=2, timeout=0.0) is None


def test_a_history_that_lost_events_says_so() -> None:
    state = {"g": GroupView("g", 1, ())}
    events = GroupEvents(state.get, lambda: 0, lambda: 0.0)
    events.started()
    for revision in range(1, HISTORY_PER_GROUP_MAX + 2):
        events.record("g", GroupEvent("updated", "m", revision))
    assert not events.changes("g", 0).complete  # type: ignore[union-attr]
    recent = events.changes("g", 5)
    assert recent is not None and recent.complete and recent.events[0].revision == 6


# -- the SDK's side --------------------------------------------------------------------------


def test_the_sdk_maps_the_new_error_codes() -> None:
    for code, kind in (("not_member", errors.NotMember), ("exists", errors.Exists),
                       ("not_empty", errors.NotEmpty), ("limit_mismatch", errors.LimitMismatch)):
        error = errors.error_from_response(409, {"error": code, "message": "m", "limit": 3})
        assert type(error) is kind
    assert isinstance(errors.error_from_response(404, {"error": "not_member", "message": ""}),
                      errors.NotFound)  # fmt: skip


def test_group_changes_parse_with_their_capabilities_as_bytes() -> None:
    raw = {"group": "g", "revision": 4, "complete": True,
           "events": [{"type": "joined", "member": "m", "revision": 4}],
           "members": [{"group": "g", "member": "m", "session": "s2", "token": 4,
                        "revision": 4, "capabilities": base64.b64encode(b"\x00hi").decode()}]}
    changes = coord_types.GroupChanges.from_json(raw)
    assert changes.members[0].capabilities == b"\x00hi"
    assert changes.events == (coord_types.GroupEvent("joined", "m", 4),)
