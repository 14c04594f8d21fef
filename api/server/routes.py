"""The handlers of the HTTP API (the README lists its routes), thin: parse (``wire``), call
the ``Leasing`` service, shape.

Names may contain ``/``, so one route per collection (``/v1/leases/{tail:.+}``) takes the
rest of the path and splits the custom verb off its last ``:`` (names cannot contain ``:``).
Each dispatched request records its route *template* (``/v1/leases/{name}:acquire``) for
the HTTP metrics, and the seconds it may legitimately wait, for the forwarding timeout.

Errors are raised, never returned: ``api.errors`` shapes them, and a ``NotPrimary`` raised
by the service is caught by the forwarding middleware in ``api.app``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import msgspec
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from paxlock.api.server import wire
from paxlock.api.server.errors import error_response, json_response
from paxlock.api.server.limits import LIMITER
from paxlock.api.server.members import MEMBER_ACTIONS, add_member, list_members
from paxlock.coordinator.errors import LeaseError, NotFound
from paxlock.coordinator.leasing import Leasing
from paxlock.coordinator.metrics import Metrics
from paxlock.coordinator.views import LeaseView

SERVICE = web.AppKey("paxlock_service", Leasing)
METRICS = web.AppKey("paxlock_metrics", Metrics)
SSE_HEARTBEAT_S = web.AppKey("paxlock_sse_heartbeat_s", float)
STREAMS = web.AppKey("paxlock_streams", set[asyncio.Task[Any]])
"""Tasks serving open event streams: cancelled at shutdown, which would otherwise wait for
them (they never end by themselves) until the runner's ``shutdown_timeout``."""

PRINCIPAL = web.RequestKey("paxlock_principal", str)
"""Who sent the request: the principal its bearer token names under ``--auth``, else ``""``
(everyone is the same anonymous principal). Holds are owned by it; limits count by it."""
ROUTE = web.RequestKey("paxlock_route", str)
"""The route template of a dispatched request (metrics label; raw paths would explode)."""
WAIT_S = web.RequestKey("paxlock_wait_s", float)
"""How long the request may block at the primary (acquire ``wait``, observe ``timeout``)."""

Action = Callable[[web.Request, str], Awaitable[web.StreamResponse]]


def _service(request: web.Request) -> Leasing:
    return request.app[SERVICE]


def _principal(request: web.Request) -> str:
    principal: str = request.get(PRINCIPAL, "")
    return principal


def _consistent(request: web.Request) -> bool:
    return wire.query_bool(request, "consistent", True)


# -- leases --------------------------------------------------------------------------------


async def acquire(request: web.Request, name: str) -> web.StreamResponse:
    body = await wire.read_body(request, wire.AcquireBody)
    request[WAIT_S] = body.wait
    view = await _service(request).acquire(
        name, holder=body.holder, ttl=body.ttl, wait=body.wait, value=body.value,
        lock_delay=body.lock_delay, request_id=wire.request_id_of(request, body.request_id),
        principal=_principal(request),
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


async def campaign(request: web.Request, name: str) -> web.StreamResponse:
    body = await wire.read_body(request, wire.CampaignBody)
    request[WAIT_S] = body.wait
    view = await _service(request).acquire(
        name, holder=body.candidate, ttl=body.ttl, wait=body.wait, value=body.value,
        request_id=wire.request_id_of(request, body.request_id), principal=_principal(request),
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
    after = wire.query_int(request, "after", 0)
    if "text/event-stream" in request.headers.get("Accept", ""):
        with contextlib.suppress(ValueError):  # EventSource resumes with Last-Event-ID
            after = max(after, int(request.headers.get("Last-Event-ID", "")))
        with request.app[LIMITER].stream(request, events=True):  # --max-streams
            return await _stream(request, name, after)
    timeout = wire.query_float(
        request, "timeout", wire.OBSERVE_TIMEOUT_S_DEFAULT, 0.0, wire.WAIT_S_MAX
    )
    request[WAIT_S] = timeout
    with request.app[LIMITER].stream(request):  # long polls count as streams too
        view = await _service(request).observe(name, after=after, timeout=timeout)
    if view is None:
        return web.Response(status=204)
    return json_response(view.as_leader())


@contextlib.contextmanager
def open_stream(request: web.Request) -> Iterator[None]:
    """Register the current handler as a never-ending stream for ``cancel_streams``."""
    task = asyncio.current_task()
    assert task is not None
    streams = request.app[STREAMS]
    streams.add(task)
    try:
        yield
    finally:
        streams.discard(task)


async def cancel_streams(app: web.Application) -> None:
    """``on_shutdown``: end open streams so a node stops promptly; clients reconnect."""
    streams: set[asyncio.Task[Any]] = app[STREAMS]
    for task in list(streams):
        task.cancel()


def _sse_event(view: LeaseView) -> bytes:
    return b"id: %d\ndata: %s\n\n" % (view.revision, msgspec.json.encode(view.as_leader()))


async def _stream(request: web.Request, name: str, after: int) -> web.StreamResponse:
    """Server-sent events until the client goes away.

    The first observe (timeout 0) runs before the headers leave, so a ``NotPrimary`` still
    forwards the whole stream and other errors still get a JSON status. Later errors end the
    stream with an ``event: error``; the client reconnects with ``Last-Event-ID``. Changes
    closer together than one observe round trip arrive as the latest state only (the
    ``Leasing.observe`` contract). A comment every heartbeat finds dead clients; a reader
    that does not keep up is cut off (``Limiter.write``), not buffered for.
    """
    service, heartbeat_s = _service(request), request.app[SSE_HEARTBEAT_S]
    view = await service.observe(name, after=after, timeout=0.0)
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    try:
        with open_stream(request):
            await _pump(request, response, service, name, after, view, heartbeat_s)
    except ConnectionResetError:
        pass  # the client went away
    except LeaseError as error:
        payload = {"error": error.code, "message": error.message}
        with contextlib.suppress(ConnectionResetError):
            await response.write(b"event: error\ndata: %s\n\n" % msgspec.json.encode(payload))
    return response


async def _pump(request: web.Request, response: web.StreamResponse, service: Leasing,
                name: str, after: int, view: LeaseView | None,
                heartbeat_s: float) -> None:  # fmt: skip
    """Write each change, or a keepalive comment when a heartbeat passes without one."""
    write = request.app[LIMITER].write
    while True:
        if view is not None:
            await write(request, response, _sse_event(view))
            after = view.revision
        else:
            await write(request, response, b": keepalive\n\n")
        view = await service.observe(name, after=after, timeout=heartbeat_s)


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


def dispatcher(collection: str, actions: dict[tuple[str, str | None], Action]
               ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:  # fmt: skip
    """One handler for ``/v1/{collection}/{tail:.+}``: split ``name:verb``, route on both."""

    methods_of: dict[str | None, set[str]] = {}
    for method, action_verb in actions:
        methods_of.setdefault(action_verb, set()).add(method)

    async def dispatch(request: web.Request) -> web.StreamResponse:
        name, verb = split_tail(request.match_info["tail"])
        key = verb or None
        allowed = methods_of.get(key)
        if not allowed:
            verbs = ", ".join(sorted({f":{v}" for _, v in actions if v}))
            raise NotFound(f"unknown action :{verb}; {collection} take {verbs}")
        request[ROUTE] = f"/v1/{collection}/{{name}}" + (f":{verb}" if verb else "")
        action = actions.get((request.method, key))
        if action is None:
            raise web.HTTPMethodNotAllowed(request.method, sorted(allowed))
        return await action(request, wire.check_name(name))

    return dispatch


def split_tail(tail: str) -> tuple[str, str]:
    """``a/b:acquire`` -> (``a/b``, ``acquire``); ``a/b`` -> (``a/b``, ``""``)."""
    name, colon, verb = tail.rpartition(":")
    return (name, verb) if colon else (verb, "")


COLLECTIONS = {"leases": LEASE_ACTIONS, "elections": ELECTION_ACTIONS, "members": MEMBER_ACTIONS}
PLAIN_PATHS = ("/v1/leases", "/v1/members", "/v1/cluster", "/healthz", "/readyz", "/metrics")
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
    for collection, actions in COLLECTIONS.items():
        if canonical.endswith(f"/v1/{collection}/{{tail}}"):
            name, verb = split_tail(request.match_info["tail"])
            if (method, verb or None) not in actions:
                return None, None
            return f"{method} /v1/{collection}/{{name}}" + (f":{verb}" if verb else ""), name
    for path in PLAIN_PATHS:
        if canonical.endswith(path):
            return f"{method} {path}", None
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
    router.add_get("/v1/cluster", cluster, allow_head=False)
    router.add_get("/v1/members", list_members, allow_head=False)
    router.add_post("/v1/members", add_member)
    router.add_route("*", "/v1/members/{tail:.+}", dispatcher("members", MEMBER_ACTIONS))
    router.add_get("/healthz", healthz)
    router.add_get("/readyz", readyz)
    router.add_get("/metrics", metrics, allow_head=False)
