"""Schemathesis hooks of tests/integration/test_schemathesis.py (loaded by the CLI through
``SCHEMATHESIS_HOOKS``): one more check, and two adjustments of generated requests for
what the document says but cannot make schemathesis respect.

- ``json_error_shape``: every 4xx/5xx answer is ``{"error": CODE, "message": TEXT}`` JSON.
- Waits are capped: an acquire's ``wait`` and an observe's ``timeout`` are legitimately up to
  an hour (a held name, an unchanged election). A valid value above ``WAIT_CAP_S`` is lowered
  to it (still valid; an invalid one is left alone), so the run finishes in seconds.
- Request ids of positive requests are made unique (a suffix), and a body ``request_id`` and
  an ``Idempotency-Key`` sent together are made equal: the document says a request id names
  one request and that the two must agree, which OpenAPI cannot express.
- A positive request that names a ``session`` names a live one (``PAXLOCK_FUZZ_SESSION``,
  opened by the test for the run): a group member must be bound to a session, and a random
  id is always a 404, so joins, and the member routes linked from them, would never get past
  it.
"""

from __future__ import annotations

import itertools
import json
import os
from typing import Any

import schemathesis

WAIT_CAP_S = 0.2


def _cap(value: Any) -> Any:
    valid = isinstance(value, int | float) and not isinstance(value, bool)
    return min(value, WAIT_CAP_S) if valid and 0 <= value <= 3600 else value


def _cap_text(value: Any) -> Any:
    """A query value: a number, or a string as sent (kept a string)."""
    if not isinstance(value, str):
        return _cap(value)
    try:
        number = float(value)
    except ValueError:
        return value
    return str(WAIT_CAP_S) if 0 <= number <= 3600 and number > WAIT_CAP_S else value


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    if isinstance(case.body, dict) and "wait" in case.body:
        case.body["wait"] = _cap(case.body["wait"])
    if case.path.endswith((":observe", "/v1/changes")):  # the default timeout is 30 s
        case.query = {"timeout": WAIT_CAP_S, **(case.query or {})}
        case.query["timeout"] = _cap_text(case.query["timeout"])
    meta = case.meta
    if meta is not None and not meta.generation.mode.is_positive:
        return
    headers = case.headers if case.headers is not None else {}
    body = case.body if isinstance(case.body, dict) else {}
    if isinstance(body.get("session"), str) and _SESSION:
        body["session"] = _SESSION
    request_id = body.get("request_id")
    if isinstance(request_id, str):
        body["request_id"] = request_id = _unique(request_id)
    key = headers.get("Idempotency-Key")
    if isinstance(key, str) and isinstance(request_id, str):
        if request_id.isascii() and request_id.isprintable() and " " not in request_id:
            headers["Idempotency-Key"] = request_id
        else:
            del headers["Idempotency-Key"]
    elif isinstance(key, str):
        headers["Idempotency-Key"] = _unique(key)


_SESSION = os.environ.get("PAXLOCK_FUZZ_SESSION", "")
_sent = itertools.count()
_RUN = os.urandom(4).hex()
"""Per run: a cluster may outlive one run (by hand), and remembers ids for long."""


def _unique(request_id: str) -> str:
    """A request id names one request: reusing one for another request is a 400 (the
    document says so), which generated data cannot know to avoid."""
    return f"{request_id[:230]}.{_RUN}{next(_sent)}"


@schemathesis.check
def json_error_shape(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every error answer is the JSON error shape (DESIGN.md §4)."""
    if response.status_code < 400:
        return None
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith("application/json"), (
        f"{response.status_code} answered as {content_type!r}, not JSON")
    body = json.loads(response.content)
    assert isinstance(body, dict), f"error body is not an object: {body!r}"
    assert isinstance(body.get("error"), str) and body["error"], f"no error code: {body!r}"
    assert isinstance(body.get("message"), str) and body["message"], f"no message: {body!r}"
    return True
