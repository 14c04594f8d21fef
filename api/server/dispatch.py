"""What every route module shares: the app and request keys, the ``name:verb`` dispatcher,
and the bookkeeping of open event streams.

Names may contain ``/``, so one route per collection (``/v1/leases/{tail:.+}``) takes the
rest of the path and splits the custom verb off its last ``:`` (names cannot contain ``:``).
Each dispatched request records its route *template* (``/v1/leases/{name}:acquire``) for
the HTTP metrics, and the seconds it may legitimately wait, for the forwarding timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import msgspec
from aiohttp import web

from paxlock.api.server import wire
from paxlock.coordinator.coordination import Coordination
from paxlock.coordinator.errors import NotFound
from paxlock.coordinator.leasing import Leasing
from paxlock.coordinator.metrics import Metrics

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
Actions = dict[tuple[str, str | None], Action]
Resolver = Callable[[str, str], "tuple[str, str] | None"]
"""(method, tail) -> (``METHOD template``, name) of a dispatched route, None when no action
matches: what access rules need to know before the handler runs."""


def service_of(request: web.Request) -> Leasing:
    return request.app[SERVICE]


def coordination_of(request: web.Request) -> Coordination:
    """Sessions, semaphores, read/write locks and groups: the service's ``coordination``
    (read per request: a member's service exists only once it bootstrapped; a lease-only
    test double has none)."""
    coordination = getattr(request.app[SERVICE], "coordination", None)
    if not isinstance(coordination, Coordination):
        raise NotFound("this node serves leases and elections only")
    return coordination


def principal_of(request: web.Request) -> str:
    principal: str = request.get(PRINCIPAL, "")
    return principal


def consistent(request: web.Request) -> bool:
    return wire.query_bool(request, "consistent", True)


def split_tail(tail: str) -> tuple[str, str]:
    """``a/b:acquire`` -> (``a/b``, ``acquire``); ``a/b`` -> (``a/b``, ``""``)."""
    name, colon, verb = tail.rpartition(":")
    return (name, verb) if colon else (verb, "")


def dispatcher(collection: str, actions: Actions
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


def resolver(collection: str, actions: Actions) -> Resolver:
    """The ``Resolver`` of a ``dispatcher`` collection."""

    def resolve(method: str, tail: str) -> tuple[str, str] | None:
        name, verb = split_tail(tail)
        if (method, verb or None) not in actions:
            return None
        return f"{method} /v1/{collection}/{{name}}" + (f":{verb}" if verb else ""), name

    return resolve


# -- event streams ---------------------------------------------------------------------------


def wants_events(request: web.Request) -> bool:
    return "text/event-stream" in request.headers.get("Accept", "")


def resume_after(request: web.Request, after: int) -> int:
    """``after``, or the ``Last-Event-ID`` an ``EventSource`` resumes with when higher."""
    with contextlib.suppress(ValueError):
        after = max(after, int(request.headers.get("Last-Event-ID", "")))
    return after


def sse_event(event_id: int, payload: Any, event: str | None = None) -> bytes:
    head = b"event: %s\n" % event.encode() if event else b""
    return head + b"id: %d\ndata: %s\n\n" % (event_id, msgspec.json.encode(payload))


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
