"""The HTTP handlers of groups (DESIGN.md §7): membership, capabilities, observe, and the
group's leader election.

Group and member names may contain ``/``, so the path after ``/v1/groups/`` is split at its
first segment ``members`` or ``leader`` (a group name with such a segment is refused at
creation: 400), and the custom verb off its last ``:``:

    {group}                       GET, PUT (201), DELETE; :observe (GET, long poll or SSE)
    {group}/members               GET
    {group}/members/{member}      GET, PATCH (capabilities); :join, :leave (POST)
    {group}/leader                GET; :campaign, :renew, :proclaim, :resign (POST)

Access rules name the group: a lock role over it to change the group, join, leave or
campaign; read to see it. The leader is an election on lease ``group:<group>``
(``coordination.leader_name``); its objects show the group's name.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from paxlock.api.server import coord_wire, wire
from paxlock.api.server.dispatch import (
    ROUTE, WAIT_S, consistent, coordination_of, principal_of, service_of, split_tail,
    sse_event,
)  # fmt: skip
from paxlock.api.server.errors import json_response
from paxlock.api.server.follow import Change, follow
from paxlock.coordinator.coordination import leader_name
from paxlock.coordinator.errors import BadRequest, NotFound
from paxlock.coordinator.views import GroupChanges, LeaseView

GroupAction = Callable[[web.Request, str, str], Awaitable[web.StreamResponse]]
"""(request, group, member: "" when the route has none)."""
RESERVED_SEGMENTS = ("members", "leader")
PLAIN_PATHS = ("/v1/groups",)


def parse(tail: str) -> tuple[str, str, str] | None:
    """``a/b/members/m:join`` -> (``a/b``, ``/members/{member}:join``, ``m``): group, the
    template's suffix, member ("" when none); None when the shape matches no route."""
    path, verb = split_tail(tail)
    suffix_verb = f":{verb}" if verb else ""
    segments = path.split("/")
    for i, segment in enumerate(segments[1:], start=1):
        if segment not in RESERVED_SEGMENTS:
            continue
        group, rest = "/".join(segments[:i]), "/".join(segments[i + 1:])
        if segment == "leader":
            return (group, "/leader" + suffix_verb, "") if not rest else None
        if not rest:
            return (group, "/members", "") if not verb else None
        return group, "/members/{member}" + suffix_verb, rest
    return path, suffix_verb, ""


def resolve(method: str, tail: str) -> tuple[str, str] | None:
    """The ``Resolver`` of ``/v1/groups/{tail}`` (access rules and metrics)."""
    parsed = parse(tail)
    if parsed is None or (method, parsed[1]) not in GROUP_ACTIONS:
        return None
    return f"{method} /v1/groups/{{group}}{parsed[1]}", parsed[0]


async def dispatch(request: web.Request) -> web.StreamResponse:
    parsed = parse(request.match_info["tail"])
    if parsed is None:
        raise NotFound(f"no such route: {request.method} {request.path}")
    group, suffix, member = parsed
    allowed = sorted(method for method, s in GROUP_ACTIONS if s == suffix)
    if not allowed:
        raise NotFound(f"no such group route: {suffix or request.path}")
    request[ROUTE] = f"/v1/groups/{{group}}{suffix}"
    action = GROUP_ACTIONS.get((request.method, suffix))
    if action is None:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    wire.check_name(group)
    if member:
        wire.check_name(member)
    return await action(request, group, member)


async def _optional_body(request: web.Request) -> coord_wire.GroupBody:
    if not (await request.read()).strip():
        return coord_wire.GroupBody()
    return await wire.read_body(request, coord_wire.GroupBody)


# -- groups ----------------------------------------------------------------------------------


async def list_groups(request: web.Request) -> web.StreamResponse:
    names = await coordination_of(request).groups(consistent=consistent(request))
    prefix = wire.query_prefix(request)
    return json_response({"groups": [name for name in names if name.startswith(prefix)]})


async def create_group(request: web.Request, group: str, _: str) -> web.StreamResponse:
    if any(segment in RESERVED_SEGMENTS for segment in group.split("/")):
        raise BadRequest(f"a group name may not have a segment {' or '.join(RESERVED_SEGMENTS)}")
    body = await _optional_body(request)
    view = await coordination_of(request).create_group(
        group, holder=body.holder, request_id=wire.request_id_of(request, body.request_id),
        principal=principal_of(request),
    )  # fmt: skip
    return json_response(view.as_json(), status=201)


async def delete_group(request: web.Request, group: str, _: str) -> web.StreamResponse:
    body = await _optional_body(request)
    await coordination_of(request).delete_group(
        group, holder=body.holder, request_id=wire.request_id_of(request, body.request_id),
        principal=principal_of(request),
    )  # fmt: skip
    return json_response({"deleted": True})


async def get_group(request: web.Request, group: str, _: str) -> web.StreamResponse:
    view = await coordination_of(request).get_group(group, consistent=consistent(request))
    return json_response(view.as_json())


async def list_members(request: web.Request, group: str, _: str) -> web.StreamResponse:
    view = await coordination_of(request).get_group(group, consistent=consistent(request))
    return json_response({"members": [m.as_json() for m in view.members],
                          "revision": view.revision})  # fmt: skip


# -- members ---------------------------------------------------------------------------------


async def join(request: web.Request, group: str, member: str) -> web.StreamResponse:
    body = await wire.read_body(request, coord_wire.JoinBody)
    view = await coordination_of(request).join_group(
        group, member, session=body.session, capabilities=body.capabilities, holder=body.holder,
        request_id=wire.request_id_of(request, body.request_id), principal=principal_of(request),
    )  # fmt: skip
    return json_response(view.as_json())


async def leave(request: web.Request, group: str, member: str) -> web.StreamResponse:
    raw = await request.read()
    body = (await wire.read_body(request, coord_wire.LeaveBody) if raw.strip()
            else coord_wire.LeaveBody())  # fmt: skip
    await coordination_of(request).leave_group(
        group, member, holder=body.holder,
        request_id=wire.request_id_of(request, body.request_id), principal=principal_of(request),
    )  # fmt: skip
    return json_response({"left": True})


async def update_capabilities(request: web.Request, group: str,
                              member: str) -> web.StreamResponse:  # fmt: skip
    body = await wire.read_body(request, coord_wire.CapabilitiesBody)
    view = await coordination_of(request).update_capabilities(
        group, member, capabilities=body.capabilities, holder=body.holder,
        request_id=wire.request_id_of(request, body.request_id), principal=principal_of(request),
    )  # fmt: skip
    return json_response(view.as_json())


async def get_member(request: web.Request, group: str, member: str) -> web.StreamResponse:
    view = await coordination_of(request).member(group, member, consistent=consistent(request))
    return json_response(view.as_json())


# -- observe ---------------------------------------------------------------------------------


async def observe(request: web.Request, group: str, _: str) -> web.StreamResponse:
    """Long poll: 200 with the events after ``after`` and the members, once there are any;
    204 on timeout. ``Accept: text/event-stream``: one event per change, for ever."""
    coordination = coordination_of(request)

    async def poll(after: int, timeout: float) -> Change | None:
        changes = await coordination.observe_group(group, after=after, timeout=timeout)
        if changes is None:
            return None
        return Change(changes.revision, changes.as_json(), _events(changes))

    return await follow(request, poll)


def _events(changes: GroupChanges) -> bytes:
    """One SSE event per change; a ``resync`` first (with the members) when this node
    cannot give every event since the reader's revision."""
    out = b""
    if not changes.complete:
        out += sse_event(changes.revision, {
            "group": changes.group, "type": "resync", "member": None,
            "revision": changes.revision, "members": [m.as_json() for m in changes.members],
        }, "resync")  # fmt: skip
    for event in changes.events:
        out += sse_event(event.revision, {"group": changes.group, **event.as_json()})
    return out


# -- the leader ------------------------------------------------------------------------------


def _leader(view: LeaseView, group: str) -> dict[str, Any]:
    return {**view.as_leader(), "name": group}


async def campaign(request: web.Request, group: str, _: str) -> web.StreamResponse:
    body = await wire.read_body(request, wire.CampaignBody)
    request[WAIT_S] = body.wait
    view = await service_of(request).acquire(
        leader_name(group), holder=body.candidate, ttl=body.ttl or 0.0, wait=body.wait,
        value=body.value, request_id=wire.request_id_of(request, body.request_id),
        principal=principal_of(request), session=body.session,
    )  # fmt: skip
    return json_response(_leader(view, group))


async def leader_renew(request: web.Request, group: str, _: str) -> web.StreamResponse:
    body = await wire.read_body(request, wire.ElectionRenewBody)
    view = await service_of(request).renew(leader_name(group), holder=body.candidate,
                                           token=body.token, principal=principal_of(request))
    return json_response(_leader(view, group))


async def proclaim(request: web.Request, group: str, _: str) -> web.StreamResponse:
    body = await wire.read_body(request, wire.ProclaimBody)
    view = await service_of(request).proclaim(
        leader_name(group), holder=body.candidate, token=body.token, value=body.value,
        request_id=wire.request_id_of(request, body.request_id), principal=principal_of(request),
    )  # fmt: skip
    return json_response(_leader(view, group))


async def resign(request: web.Request, group: str, _: str) -> web.StreamResponse:
    body = await wire.read_body(request, wire.ResignBody)
    await service_of(request).release(
        leader_name(group), holder=body.candidate, token=body.token,
        request_id=wire.request_id_of(request, body.request_id), principal=principal_of(request),
    )  # fmt: skip
    return json_response({"released": True})


async def get_leader(request: web.Request, group: str, _: str) -> web.StreamResponse:
    """The leader object; ``leader`` null when nobody leads; 404 without the group."""
    view = await coordination_of(request).group_leader(group, consistent=consistent(request))
    return json_response(_leader(view, group))


GROUP_ACTIONS: dict[tuple[str, str], GroupAction] = {
    ("GET", ""): get_group,
    ("PUT", ""): create_group,
    ("DELETE", ""): delete_group,
    ("GET", ":observe"): observe,
    ("GET", "/members"): list_members,
    ("GET", "/members/{member}"): get_member,
    ("PATCH", "/members/{member}"): update_capabilities,
    ("POST", "/members/{member}:join"): join,
    ("POST", "/members/{member}:leave"): leave,
    ("GET", "/leader"): get_leader,
    ("POST", "/leader:campaign"): campaign,
    ("POST", "/leader:renew"): leader_renew,
    ("POST", "/leader:proclaim"): proclaim,
    ("POST", "/leader:resign"): resign,
}
TEMPLATES = tuple(f"{method} /v1/groups/{{group}}{suffix}" for method, suffix in GROUP_ACTIONS)
"""Every group route as ``METHOD template`` (access rules, metrics labels)."""


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/v1/groups", list_groups, allow_head=False)
    router.add_route("*", "/v1/groups/{tail:.+}", dispatch)
