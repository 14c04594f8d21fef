"""The HTTP handlers of sessions, semaphores and read/write locks (DESIGN.md §7), thin like
``routes``: parse (``coord_wire``), call ``Coordination``, shape.

- ``POST /v1/sessions`` opens one; ``/v1/sessions/{id}`` takes ``:renew`` and ``:close``
  and GET; ``GET /v1/sessions?holder=`` lists them.
- ``/v1/semaphores/{name}`` and ``/v1/rwlocks/{name}`` take ``:acquire``, ``:renew``,
  ``:release``, ``:verify`` and GET, and ``GET /v1/semaphores?prefix=`` lists them.

The access rule of a session route names no lease: its resolver gives the name ``""``, so
reading one needs a read role over every name (a session's holds may be under any prefix).
"""

from __future__ import annotations

from aiohttp import web

from paxlock.api.server import coord_wire, wire
from paxlock.api.server.dispatch import (
    ROUTE, WAIT_S, Actions, Resolver, consistent, coordination_of, dispatcher, principal_of,
    resolver,
)  # fmt: skip
from paxlock.api.server.errors import json_response
from paxlock.coordinator.core.coord_commands import SharedKind
from paxlock.coordinator.errors import BadRequest, NotHolder

# -- sessions --------------------------------------------------------------------------------


async def open_session(request: web.Request) -> web.StreamResponse:
    request[ROUTE] = "/v1/sessions"
    body = await wire.read_body(request, coord_wire.OpenSessionBody)
    view = await coordination_of(request).open_session(
        holder=body.holder, ttl=body.ttl, request_id=wire.request_id_of(request, body.request_id),
        principal=principal_of(request),
    )  # fmt: skip
    return json_response(view.as_json())


async def _holder_body(request: web.Request, session_id: str) -> coord_wire.SessionHolderBody:
    body = await wire.read_body(request, coord_wire.SessionHolderBody)
    if body.token is not None and session_id != f"s{body.token}":
        raise NotHolder(f"token {body.token} is not session {session_id}'s",
                        holder=None, token=None)  # fmt: skip
    return body


async def renew_session(request: web.Request, session_id: str) -> web.StreamResponse:
    body = await _holder_body(request, session_id)
    view = await coordination_of(request).renew_session(session_id, holder=body.holder,
                                                        principal=principal_of(request))  # fmt: skip
    return json_response(view.as_json())


async def close_session(request: web.Request, session_id: str) -> web.StreamResponse:
    body = await _holder_body(request, session_id)
    freed = await coordination_of(request).close_session(
        session_id, holder=body.holder, request_id=wire.request_id_of(request, body.request_id),
        principal=principal_of(request),
    )  # fmt: skip
    return json_response({"closed": True, "freed": [hold.as_json() for hold in freed]})


async def get_session(request: web.Request, session_id: str) -> web.StreamResponse:
    view = await coordination_of(request).get_session(session_id,
                                                      consistent=consistent(request))  # fmt: skip
    return json_response(view.as_json())


async def list_sessions(request: web.Request) -> web.StreamResponse:
    holder = request.query.get("holder") or None
    if holder is not None and len(holder) > wire.ID_CHARS_MAX:
        raise BadRequest(f"query parameter holder must be 1..{wire.ID_CHARS_MAX} characters")
    views = await coordination_of(request).list_sessions(holder, consistent=consistent(request))
    return json_response({"sessions": [view.as_json() for view in views]})


# -- semaphores and read/write locks ---------------------------------------------------------


def _kind(request: web.Request) -> SharedKind:
    """The kind a shared route serves (its collection: ``semaphores`` or ``rwlocks``)."""
    resource = request.match_info.route.resource
    canonical = resource.canonical if resource is not None else ""
    semaphores = canonical.endswith(("/v1/semaphores", "/v1/semaphores/{tail}"))
    kind: SharedKind = "semaphore" if semaphores else "rwlock"
    return kind


async def acquire(request: web.Request, name: str) -> web.StreamResponse:
    kind = _kind(request)
    body: coord_wire.SemaphoreAcquireBody | coord_wire.RwlockAcquireBody
    if kind == "semaphore":
        body = await wire.read_body(request, coord_wire.SemaphoreAcquireBody)
        mode, limit = "permit", body.limit
    else:
        body = await wire.read_body(request, coord_wire.RwlockAcquireBody)
        mode, limit = body.mode, 0
    request[WAIT_S] = body.wait
    view = await coordination_of(request).acquire_shared(
        kind, name, holder=body.holder, mode=mode, limit=limit, ttl=body.ttl,
        session=body.session, wait=body.wait, lock_delay=body.lock_delay,
        request_id=wire.request_id_of(request, body.request_id), principal=principal_of(request),
    )  # fmt: skip
    return json_response(view.as_json())


async def renew(request: web.Request, name: str) -> web.StreamResponse:
    body = await wire.read_body(request, wire.RenewBody)
    view = await coordination_of(request).renew_shared(
        _kind(request), name, holder=body.holder, token=body.token,
        principal=principal_of(request),
    )  # fmt: skip
    return json_response(view.as_json())


async def release(request: web.Request, name: str) -> web.StreamResponse:
    body = await wire.read_body(request, wire.ReleaseBody)
    await coordination_of(request).release_shared(
        _kind(request), name, holder=body.holder, token=body.token,
        request_id=wire.request_id_of(request, body.request_id), principal=principal_of(request),
    )  # fmt: skip
    return json_response({"released": True})


async def verify(request: web.Request, name: str) -> web.StreamResponse:
    body = await wire.read_body(request, wire.VerifyBody)
    current, token = await coordination_of(request).verify_shared(_kind(request), name,
                                                                  token=body.token)  # fmt: skip
    return json_response({"current": current, "token": token})


async def get_shared(request: web.Request, name: str) -> web.StreamResponse:
    view = await coordination_of(request).get_shared(_kind(request), name,
                                                     consistent=consistent(request))  # fmt: skip
    return json_response(view.as_json())


async def list_shared(request: web.Request) -> web.StreamResponse:
    kind = _kind(request)
    views = await coordination_of(request).list_shared(
        kind, wire.query_prefix(request), consistent=consistent(request))
    return json_response({f"{kind}s": [view.as_json() for view in views]})


# -- dispatch --------------------------------------------------------------------------------

SESSION_ACTIONS: Actions = {
    ("POST", "renew"): renew_session,
    ("POST", "close"): close_session,
    ("GET", None): get_session,
}
SHARED_ACTIONS: Actions = {
    ("POST", "acquire"): acquire,
    ("POST", "renew"): renew,
    ("POST", "release"): release,
    ("POST", "verify"): verify,
    ("GET", None): get_shared,
}
COLLECTIONS: dict[str, Actions] = {
    "sessions": SESSION_ACTIONS, "semaphores": SHARED_ACTIONS, "rwlocks": SHARED_ACTIONS,
}  # fmt: skip
PLAIN_PATHS = ("/v1/sessions", "/v1/semaphores", "/v1/rwlocks")
PLAIN_NAMES = {"/v1/sessions": ""}
"""Plain paths whose access rule names a name, not a list's prefix: sessions are listed by
holder, and may hold names under any prefix."""


def _any_session(resolve: Resolver) -> Resolver:
    def resolve_session(method: str, tail: str) -> tuple[str, str] | None:
        found = resolve(method, tail)
        return None if found is None else (found[0], "")

    return resolve_session


RESOLVERS: dict[str, Resolver] = {"sessions": _any_session(resolver("sessions", SESSION_ACTIONS))}
"""Overrides of the default resolvers (see the module docstring)."""


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/v1/sessions", open_session)
    for collection, actions in COLLECTIONS.items():
        router.add_route("*", f"/v1/{collection}/{{tail:.+}}", dispatcher(collection, actions))
    router.add_get("/v1/sessions", list_sessions, allow_head=False)
    router.add_get("/v1/semaphores", list_shared, allow_head=False)
    router.add_get("/v1/rwlocks", list_shared, allow_head=False)
