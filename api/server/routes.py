"""The handlers of the HTTP API (the README lists its routes), thin: parse (``wire``), call
the ``Leasing`` service, shape. Leases and elections live here; sessions, semaphores and
read/write locks in ``coord_routes``, groups in ``group_routes``; the dispatcher and the keys
they share in ``dispatch``. ``add_routes`` and ``route_of`` cover them all.

Errors are raised, never returned: ``api.errors`` shapes them, and a ``NotPrimary`` raised
by the service is caught by the forwarding middleware in ``api.app``.
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from paxlock.api.server import coord_routes, group_routes, openapi, ui_routes, wire
from paxlock.api.server.dispatch import (
    METRICS, PRINCIPAL, ROUTE, SERVICE, SSE_HEARTBEAT_S, STREAMS, WAIT_S, Action,
    Actions, Resolver, cancel_streams, consistent, dispatcher, open_stream, principal_of,
    resolver, service_of, split_tail, sse_event,
)  # fmt: skip
from paxlock.api.server.errors import error_response, json_response
from paxlock.api.server.follow import Change, follow
from paxlock.api.server.members import MEMBER_ACTIONS, add_member, list_members

__all__ = [
    "COLLECTIONS", "METRICS", "PLAIN_PATHS", "PRINCIPAL", "ROUTE", "SERVICE",
    "SSE_HEARTBEAT_S", "STREAMS", "WAIT_S", "Action", "add_routes", "cancel_streams",
    "open_stream", "route_of", "split_tail",
]  # fmt: skip

_service = service_of
_principal = principal_of
_consistent = consistent


# -- leases --------------------------------------------------------------------------------


async def acquire(request: web.Request, name: str) -> web.StreamResponse:
    body = await wire.read_body(request, wire.AcquireBody)
    request[WAIT_S] = body.wait
    view = await _service(request).acquire(
        name, holder=body.holder, ttl=body.ttl or 0.0, wait=body.wait, value=body.value,
        lock_delay=body.lock_delay, request_id=wire.request_id_of(request, body.request_id),
        principal=_principal(request), session=body.session,
    )  # fmt: skip
    return json_response(view.as_lease())


async def renew(request: web.Request, name: str) -> web.StreamResponse:
    body = await wire.read_body(request, wire.RenewBody)
    view = await _service(request).renew(name, holder=body.holder, token=body.token,
                                         principal=_principal(request))  # fmt: skip
    return json_response(view.as_lease())


async def release(request: web.Request, name: str) -> web.StreamResponse:
    body = await wire.read_body(request, wire.ReleaseBody)
    await _service(request).release(
        name, holder=body.holder, token=body.token,
        request_id=wire.request_id_of(request, body.request_id), principal=_principal(request),
    )  # fmt: skip
    return json_response({"released": True})


async def verify(request: web.Request, name: str) -> web.StreamResponse:
    body = await wire.read_body(request, wire.VerifyBody)
    current, token = await _service(request).verify(name, token=body.token)
    return json_response({"current": current, "token": token})


async def get_lease(request: web.Request, name: str) -> web.StreamResponse:
    view = await _service(request).get(name, consistent=_consistent(request))
    return json_response(view.as_lease())


async def list_leases(request: web.Request) -> web.StreamResponse:
    prefix = wire.query_prefix(request)
    views = await _service(request).list(prefix, consistent=_consistent(request))
    return json_response({"leases": [view.as_lease() for view in views]})


# -- elections -----------------------------------------------------------------------------


async def list_elections(request: web.Request) -> web.StreamResponse:
    """Leases and elections share one namespace (a campaign is an acquire whose holder is
    the candidate): this lists the same held names as ``GET /v1/leases``, as leaders."""
    prefix = wire.query_prefix(request)
    views = await _service(request).list(prefix, consistent=_consistent(request))
    return json_response({"elections": [view.as_leader() for view in views]})


async def campaign(request: web.Request, name: str) -> web.StreamResponse:
    body = await wire.read_body(request, wire.CampaignBody)
    request[WAIT_S] = body.wait
    view = await _service(request).acquire(
        name, holder=body.candidate, ttl=body.ttl or 0.0, wait=body.wait, value=body.value,
        request_id=wire.request_id_of(request, body.request_id), principal=_principal(request),
        session=body.session,
    )  # fmt: skip
    return json_response(view.as_leader())


async def proclaim(request: web.Request, name: str) -> web.StreamResponse:
    body = await wire.read_body(request, wire.ProclaimBody)
    view = await _service(request).proclaim(
        name, holder=body.candidate, token=body.token, value=body.value,
        request_id=wire.request_id_of(request, body.request_id), principal=_principal(request),
    )  # fmt: skip
    return json_response(view.as_leader())


async def election_renew(request: web.Request, name: str) -> web.StreamResponse:
    body = await wire.read_body(request, wire.ElectionRenewBody)
    view = await _service(request).renew(name, holder=body.candidate, token=body.token,
                                         principal=_principal(request))  # fmt: skip
    return json_response(view.as_leader())


async def resign(request: web.Request, name: str) -> web.StreamResponse:
    body = await wire.read_body(request, wire.ResignBody)
    await _service(request).release(
        name, holder=body.candidate, token=body.token,
        request_id=wire.request_id_of(request, body.request_id), principal=_principal(request),
    )  # fmt: skip
    return json_response({"released": True})


async def get_leader(request: web.Request, name: str) -> web.StreamResponse:
    view = await _service(request).get(name, consistent=_consistent(request))
    return json_response(view.as_leader())


async def observe(request: web.Request, name: str) -> web.StreamResponse:
    """Long poll (200 leader once its revision passes ``after``, 204 on timeout), or with
    ``Accept: text/event-stream`` a stream of every change the service reports."""
    service = _service(request)

    async def poll(after: int, timeout: float) -> Change | None:
        view = await service.observe(name, after=after, timeout=timeout)
        if view is None:
            return None
        leader = view.as_leader()
        return Change(view.revision, leader, sse_event(view.revision, leader))

    return await follow(request, poll)


# -- changes -------------------------------------------------------------------------------


async def changes(request: web.Request) -> web.StreamResponse:
    """Any change at all, from this node's applied log (no forwarding): long poll (200
    ``{"revision": N}`` once this node applied a revision N past ``after``, 204 on timeout),
    or with ``Accept: text/event-stream`` one event per change (close ones coalesce)."""
    service = _service(request)

    async def poll(after: int, timeout: float) -> Change | None:
        revision = await service.changes(after=after, timeout=timeout)
        if revision is None:
            return None
        body = {"revision": revision}
        return Change(revision, body, sse_event(revision, body))

    return await follow(request, poll)


# -- dispatch ------------------------------------------------------------------------------

LEASE_ACTIONS: dict[tuple[str, str | None], Action] = {
    ("POST", "acquire"): acquire,
    ("POST", "renew"): renew,
    ("POST", "release"): release,
    ("POST", "verify"): verify,
    ("GET", None): get_lease,
}
ELECTION_ACTIONS: dict[tuple[str, str | None], Action] = {
    ("POST", "campaign"): campaign,
    ("POST", "proclaim"): proclaim,
    ("POST", "renew"): election_renew,
    ("POST", "resign"): resign,
    ("GET", None): get_leader,
    ("GET", "observe"): observe,
}


COLLECTIONS: dict[str, Actions] = {
    "leases": LEASE_ACTIONS, "elections": ELECTION_ACTIONS, "members": MEMBER_ACTIONS,
    **coord_routes.COLLECTIONS,
}  # fmt: skip
"""The collections served by ``dispatch.dispatcher`` (``/v1/{collection}/{name}:verb``)."""
RESOLVERS: dict[str, Resolver] = {
    **{collection: resolver(collection, actions) for collection, actions in COLLECTIONS.items()},
    **coord_routes.RESOLVERS, "groups": group_routes.resolve,
}  # fmt: skip
"""Every ``/v1/{collection}/{tail}`` route, and how its template and name are found."""
PLAIN_PATHS = ("/v1/leases", "/v1/elections", "/v1/members", "/v1/cluster", "/v1/changes",
               "/healthz", "/readyz", "/metrics", *coord_routes.PLAIN_PATHS,
               *group_routes.PLAIN_PATHS)  # fmt: skip
"""The routes of ``add_routes`` that take no name."""


def route_of(request: web.Request) -> tuple[str | None, str | None]:
    """(``METHOD template``, name) of a matched request, e.g. (``POST
    /v1/leases/{name}:acquire``, ``a/b``); name None for routes without one; (None, None)
    when no route matches (the router or the dispatcher answers 404 or 405). For access
    rules (``api.server.auth``), which must know the route before the handler runs."""
    resource = request.match_info.route.resource
    if resource is None:
        return None, None
    canonical = resource.canonical  # with the mount prefix when mounted: compare the end
    method = "GET" if request.method == "HEAD" else request.method
    if canonical.endswith("/{tail}"):
        for collection, resolve in RESOLVERS.items():
            if canonical.endswith(f"/v1/{collection}/{{tail}}"):
                found = resolve(method, request.match_info["tail"])
                return (None, None) if found is None else found
    for path in PLAIN_PATHS:
        if canonical.endswith(path):
            return f"{method} {path}", coord_routes.PLAIN_NAMES.get(path)
    return f"{method} {canonical}", None


# -- cluster and operations ----------------------------------------------------------------


async def cluster(request: web.Request) -> web.StreamResponse:
    return json_response(_service(request).cluster())


async def healthz(request: web.Request) -> web.StreamResponse:
    """Liveness only: the process answers. Readiness is /readyz."""
    return json_response({"status": "ok", "node": _service(request).node_id})


async def readyz(request: web.Request) -> web.StreamResponse:
    ready, reason = _service(request).readiness()
    if ready:
        return json_response({"ready": True, "reason": reason})
    return error_response(503, "unavailable", reason, details={"ready": False, "reason": reason})


async def metrics(request: web.Request) -> web.StreamResponse:
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def add_routes(router: web.UrlDispatcher) -> None:
    """The public routes of §4 (``/internal/`` is the host's: the peer WebSocket)."""
    router.add_route("*", "/v1/leases/{tail:.+}", dispatcher("leases", LEASE_ACTIONS))
    router.add_get("/v1/leases", list_leases, allow_head=False)
    router.add_route("*", "/v1/elections/{tail:.+}", dispatcher("elections", ELECTION_ACTIONS))
    router.add_get("/v1/elections", list_elections, allow_head=False)
    router.add_get("/v1/cluster", cluster, allow_head=False)
    router.add_get("/v1/changes", changes, allow_head=False)
    router.add_get("/v1/members", list_members, allow_head=False)
    router.add_post("/v1/members", add_member)
    router.add_route("*", "/v1/members/{tail:.+}", dispatcher("members", MEMBER_ACTIONS))
    router.add_get("/healthz", healthz)
    router.add_get("/readyz", readyz)
    router.add_get("/metrics", metrics, allow_head=False)
    router.add_get("/v1/openapi.json", openapi.serve, allow_head=False)
    coord_routes.add_routes(router)
    group_routes.add_routes(router)
    ui_routes.add_routes(router)  # the status page (static, open)
