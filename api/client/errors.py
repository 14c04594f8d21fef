"""The SDK's errors: one class per error code of the HTTP API (DESIGN.md §4), keeping the
server's message and the details of the body (``holder``, ``expires_in``, ``token`` ...).

The hierarchy is small on purpose, so that ``except`` clauses stay obvious::

    PaxlockError
    ├── BadRequest        400 bad_request, 413 payload_too_large (a bug of the caller)
    ├── NotFound          404 not_found (an unknown route, session or group; a missing
    │   │                 lease is ``None``)
    │   └── NotMember     404 not_member: not a member of the group
    ├── LeaseHeld         409 held: ``wait`` elapsed with the name held by someone else
    ├── NotHolder         409 not_holder: the grant named by (holder, token) is not current
    ├── Conflict          409 of a membership change: ``conflict``, ``not_caught_up``,
    │                     ``change_in_progress`` (``retry_after_s`` says when to try again)
    ├── Exists            409 exists: the group exists, or the member already joined
    ├── NotEmpty          409 not_empty: a group with members cannot be deleted
    ├── LimitMismatch     409 limit_mismatch: the semaphore's permits are held under
    │                     another limit (``limit``)
    ├── LeaseLost         the client's conservative clock gave up on a lease it held
    ├── Unauthenticated   401 unauthenticated: no valid bearer token (``token=``)
    ├── Forbidden         403 forbidden: outside the token's roles, or another's hold
    ├── TooMany           429 too_many: a limit is reached; ``retry_after_s`` says when
    └── Unavailable       503 / connection errors that outlived the retry deadline

Importing nothing of the server: the SDK talks HTTP only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "BadRequest", "Conflict", "Exists", "Forbidden", "LeaseHeld", "LeaseLost", "LimitMismatch",
    "NotEmpty", "NotFound", "NotHolder", "NotMember", "PaxlockError", "TooMany",
    "Unauthenticated", "Unavailable", "error_from_response",
]  # fmt: skip


class PaxlockError(Exception):
    """Base of every SDK error. ``code`` is the API's error code, ``status`` the HTTP status
    (None when no server answered), ``details`` the other fields of the error body."""

    code: str = "error"

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 details: Mapping[str, Any] | None = None) -> None:  # fmt: skip
        super().__init__(message)
        self.message = message
        self.status = status
        if code is not None:
            self.code = code
        self.details: dict[str, Any] = dict(details or {})
        self.retried = False
        """An earlier attempt of the same call may have taken effect (its answer was lost):
        this error may describe the state *after* the call's own first attempt."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status={self.status}, code={self.code!r})"


class BadRequest(PaxlockError):
    """The request was malformed (400) or too large (413): retrying cannot help."""

    code = "bad_request"


class NotFound(PaxlockError):
    code = "not_found"


class NotMember(NotFound):
    """The member is not in the group (the group exists)."""

    code = "not_member"


class Exists(PaxlockError):
    """The group exists already, or the member already joined it (409)."""

    code = "exists"


class NotEmpty(PaxlockError):
    """The group has members: it cannot be deleted (409)."""

    code = "not_empty"


class LimitMismatch(PaxlockError):
    """The semaphore's permits are held (or blocked) under another limit (409)."""

    code = "limit_mismatch"

    @property
    def limit(self) -> int | None:
        value = self.details.get("limit")
        return value if isinstance(value, int) else None


class LeaseHeld(PaxlockError):
    """The name is held by another holder (or blocked by lock-delay) and ``wait`` elapsed.

    ``holder`` is None while the name sits in lock-delay after an expiry."""

    code = "held"

    @property
    def holder(self) -> str | None:
        holder = self.details.get("holder")
        return holder if isinstance(holder, str) else None

    @property
    def expires_in(self) -> float | None:
        """Seconds until the current grant (or lock-delay) ends, as the primary saw it."""
        value = self.details.get("expires_in")
        return float(value) if isinstance(value, int | float) else None

    @property
    def token(self) -> int | None:
        value = self.details.get("token")
        return value if isinstance(value, int) else None


class NotHolder(PaxlockError):
    """(holder, token) is not the current grant: it expired, was released, or never was."""

    code = "not_holder"

    @property
    def holder(self) -> str | None:
        holder = self.details.get("holder")
        return holder if isinstance(holder, str) else None

    @property
    def token(self) -> int | None:
        value = self.details.get("token")
        return value if isinstance(value, int) else None


class RequestExpired(PaxlockError):
    """A retry came so late that the cluster no longer remembers its first result (409
    ``request_expired``). The first attempt *was* applied — only its answer is forgotten —
    and the retry was not applied again: read the lease to learn where things stand."""

    code = "request_expired"


class Conflict(PaxlockError):
    """A membership change the cluster refused as it stands (409): the member is already
    there or not where the change needs it (``conflict``), a learner to promote lags behind
    (``not_caught_up``), or the previous change has not taken effect yet
    (``change_in_progress``: try again after ``retry_after_s``)."""

    code = "conflict"

    @property
    def retry_after_s(self) -> float | None:
        value = self.details.get("retry_after_s")
        return float(value) if isinstance(value, int | float) else None


class LeaseLost(PaxlockError):
    """Raised by ``lock(..., cancel_on_loss=True)`` (and ``campaign``) when the body was
    cancelled because the lease could no longer be trusted; also by ``check()``."""

    code = "lease_lost"


class Unauthenticated(PaxlockError):
    """The cluster requires a bearer token (``--auth``) and none valid was given (401)."""

    code = "unauthenticated"


class Forbidden(PaxlockError):
    """The token's roles do not cover this name or operation, or the hold belongs to another
    principal (403): retrying cannot help."""

    code = "forbidden"


class TooMany(PaxlockError):
    """A limit is reached (429 ``too_many``; ``details["limit"]`` names it). Retry after
    ``retry_after_s``; the SDK's blocking calls do so by themselves within their deadline."""

    code = "too_many"

    @property
    def retry_after_s(self) -> float | None:
        value = self.details.get("retry_after_s")
        return float(value) if isinstance(value, int | float) else None


class Unavailable(PaxlockError):
    """No primary, no quorum, or no endpoint answered before the retry deadline. The outcome
    of a mutating call is then unknown: retrying it with the same ``request_id`` is safe."""

    code = "unavailable"

    @property
    def retry_after_s(self) -> float | None:
        value = self.details.get("retry_after_s")
        return float(value) if isinstance(value, int | float) else None


_BY_CODE: dict[str, type[PaxlockError]] = {
    "bad_request": BadRequest,
    "payload_too_large": BadRequest,
    "not_found": NotFound,
    "not_member": NotMember,
    "exists": Exists,
    "not_empty": NotEmpty,
    "limit_mismatch": LimitMismatch,
    "held": LeaseHeld,
    "not_holder": NotHolder,
    "request_expired": RequestExpired,
    "conflict": Conflict,
    "not_caught_up": Conflict,
    "change_in_progress": Conflict,
    "unavailable": Unavailable,
    "unauthenticated": Unauthenticated,
    "forbidden": Forbidden,
    "too_many": TooMany,
}
_BY_STATUS: dict[int, type[PaxlockError]] = {
    400: BadRequest, 401: Unauthenticated, 403: Forbidden, 404: NotFound, 409: Conflict,
    413: BadRequest, 429: TooMany, 503: Unavailable,
}  # fmt: skip


def error_from_response(status: int, body: Any, fallback_text: str = "") -> PaxlockError:
    """Map an error answer to its class. A body that is not the API's JSON shape (a proxy's
    page, say) still gives a typed error by status, with the raw text as message."""
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        code = body["error"]
        message = body.get("message")
        text = message if isinstance(message, str) else code
        details = {k: v for k, v in body.items() if k not in ("error", "message")}
        kind = _BY_CODE.get(code) or _BY_STATUS.get(status, PaxlockError)
        return kind(text, status=status, code=code, details=details)
    kind = _BY_STATUS.get(status, PaxlockError)
    text = fallback_text.strip()[:500] or f"HTTP {status} without a paxlock error body"
    return kind(text, status=status)
