"""Every failure of the HTTP API as one JSON shape (DESIGN.md §4):
``{"error": CODE, "message": TEXT, ...details}``.

Lease errors come from the service; aiohttp's own ``HTTPException``s (unknown route, wrong
method, body over ``client_max_size``) would otherwise answer in plain text, which an SDK
could not tell apart from a proxy's error page. 503s always carry ``Retry-After`` (whole
seconds, as RFC 9110 requires); the body repeats it as ``retry_after_s`` with sub-second
precision for the SDK.
"""

from __future__ import annotations

import math
from http import HTTPStatus
from collections.abc import Mapping
from typing import Any

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler

from paxlock._logs import get_logger
from paxlock.coordinator.errors import LeaseError, NotPrimary, TooMany, Unavailable

log = get_logger("paxlock.api")

DEFAULT_RETRY_AFTER_S = 1.0
"""Retry-After for a 503 that names no better time (no primary known, not ready)."""

CODES_BY_STATUS: dict[int, str] = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    431: "bad_request",
    429: "too_many",
    500: "internal",
    503: "unavailable",
}
"""Codes for errors aiohttp raises itself; §4 fixes 400/404/409/413/503, the rest are ours."""

_encode = msgspec.json.Encoder().encode


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None
                  ) -> web.Response:  # fmt: skip
    """A JSON answer encoded with msgspec (fast, and rejects non-JSON values loudly)."""
    return web.Response(
        body=_encode(payload), status=status, headers=headers, content_type="application/json"
    )


def error_response(
    status: int, code: str, message: str, *, retry_after_s: float | None = None,
    headers: dict[str, str] | None = None, details: Mapping[str, Any] | None = None,
) -> web.Response:  # fmt: skip
    """The one error shape. Details never override ``error``/``message``."""
    body = {**(details or {}), "error": code, "message": message}
    out = dict(headers or {})
    if status in (429, 503):
        retry = DEFAULT_RETRY_AFTER_S if retry_after_s is None else retry_after_s
        out["Retry-After"] = str(max(1, math.ceil(retry)))
        body["retry_after_s"] = retry
    return json_response(body, status=status, headers=out)


def lease_error_response(error: LeaseError) -> web.Response:
    details = dict(error.details)
    retry_after_s: float | None = None
    if isinstance(error, Unavailable | TooMany):
        retry_after_s = error.retry_after_s
    elif isinstance(error, NotPrimary):
        details.setdefault("primary", error.primary)
    return error_response(
        error.status, error.code, error.message, retry_after_s=retry_after_s, details=details
    )


def http_error_response(exc: web.HTTPException, request: web.Request) -> web.Response:
    """aiohttp's 4xx/5xx as JSON; ``Allow`` (405) and ``Retry-After`` survive."""
    headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
    code = CODES_BY_STATUS.get(exc.status, "internal" if exc.status >= 500 else "bad_request")
    if exc.status == 404:
        message = f"no such route: {request.method} {request.path}"
    elif exc.status == 405:
        allowed = headers.get("Allow", "")
        message = f"{request.method} not allowed on {request.path} (allowed: {allowed})"
    elif exc.status == 413:
        message = "request body too large (limit 1 MiB)"
    elif exc.text and not exc.text.startswith(f"{exc.status}:"):
        message = exc.text  # a handler's own explanation, not aiohttp's "400: Bad Request"
    else:
        message = exc.reason
    return error_response(exc.status, code, message, headers=headers)


def protocol_error_response(status: int, message: str | None,
                            exc: BaseException | None) -> web.Response:  # fmt: skip
    """An error of aiohttp's own protocol layer — its HTTP parser refusing a request (NUL in
    the path, a header line over 8 KiB, both Content-Length and Transfer-Encoding), or a
    crash outside the middlewares — in the JSON shape. It runs before any middleware, so
    ``limits.GuardedRequestHandler.handle_error`` calls it instead of aiohttp's text/plain."""
    code = CODES_BY_STATUS.get(status, "internal" if status >= 500 else "bad_request")
    if status >= 500:
        log.error("http_protocol_error", status=status, error=repr(exc))
        text = "internal error" if status == 500 else HTTPStatus(status).phrase.lower()
    else:
        log.debug("http_request_refused_by_parser", status=status, error=repr(exc))
        reason = (message or HTTPStatus(status).phrase).split("\n", 1)[0].rstrip(": ")
        text = f"malformed HTTP request: {reason[:200]}"  # its first line: no raw bytes
    return error_response(status, code, text)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn lease errors, aiohttp HTTP errors and crashes into the JSON error shape."""
    try:
        return await handler(request)
    except LeaseError as error:
        return lease_error_response(error)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects and the like are answers, not errors
        return http_error_response(exc, request)
    except Exception as exc:  # a bug: answer 500 rather than drop the connection
        log.exception("http_handler_crashed", path=request.path, method=request.method)
        return error_response(500, "internal", f"internal error: {type(exc).__name__}")
