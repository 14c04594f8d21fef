"""One way to follow changes over HTTP, for every route that offers it (an election's
``:observe``, a group's ``:observe``, ``GET /v1/changes``): ``?after=REV&timeout=S`` as a long
poll, or with ``Accept: text/event-stream`` as server-sent events.

A route gives a ``Poll``: the next change past a revision, within a timeout, as the long
poll's JSON and the stream's events. ``follow`` does the rest, the same for all: the query,
the stream limit, ``Last-Event-ID``, heartbeats, and errors.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from aiohttp import web

from paxlock.api.server import wire
from paxlock.api.server.dispatch import (
    SSE_HEARTBEAT_S, WAIT_S, open_stream, resume_after, sse_event, wants_events,
)  # fmt: skip
from paxlock.api.server.errors import json_response
from paxlock.api.server.limits import LIMITER
from paxlock.coordinator.errors import LeaseError


class Change(NamedTuple):
    revision: int
    """The revision the follower has seen once it has this change (its next ``after``)."""
    body: Any
    """The long poll's answer (JSON)."""
    events: bytes
    """The stream's events for it (``sse_event``)."""


Poll = Callable[[int, float], Awaitable[Change | None]]
"""(after, timeout) -> the next change past ``after``, or None when ``timeout`` passes first."""


async def follow(request: web.Request, poll: Poll) -> web.StreamResponse:
    """Long poll (200 with the change's body once there is one past ``after``, 204 on
    timeout), or with ``Accept: text/event-stream`` a stream of every change. Both count
    against the open-stream limit (``--max-streams``)."""
    after = wire.query_int(request, "after", 0)
    if wants_events(request):
        with request.app[LIMITER].stream(request, events=True):
            return await _stream(request, poll, resume_after(request, after))
    timeout = wire.query_float(request, "timeout", wire.OBSERVE_TIMEOUT_S_DEFAULT, 0.0,
                               wire.WAIT_S_MAX)  # fmt: skip
    request[WAIT_S] = timeout
    with request.app[LIMITER].stream(request):
        change = await poll(after, timeout)
    if change is None:
        return web.Response(status=204)
    return json_response(change.body)


async def _stream(request: web.Request, poll: Poll, after: int) -> web.StreamResponse:
    """Server-sent events until the client goes away.

    The first poll (timeout 0) runs before the headers leave, so a ``NotPrimary`` still
    forwards the whole stream and other errors still get a JSON status. Later errors end the
    stream with an ``event: error``; the client reconnects with ``Last-Event-ID``. Changes
    closer together than one poll round trip may arrive as the latest state only. A comment
    every heartbeat finds dead clients; a reader that does not keep up is cut off
    (``Limiter.write``), not buffered for.
    """
    heartbeat_s, write = request.app[SSE_HEARTBEAT_S], request.app[LIMITER].write
    change = await poll(after, 0.0)
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    try:
        with open_stream(request):
            while True:
                if change is not None:
                    await write(request, response, change.events)
                    after = change.revision
                else:
                    await write(request, response, b": keepalive\n\n")
                change = await poll(after, heartbeat_s)
    except ConnectionResetError:
        pass  # the client went away
    except LeaseError as error:
        payload = {"error": error.code, "message": error.message}
        with contextlib.suppress(ConnectionResetError):
            await response.write(sse_event(after, payload, "error"))
    return response
