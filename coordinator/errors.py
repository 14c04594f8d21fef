"""The errors of lease operations, shared by the runtime, the HTTP API and embedded use.

Each maps to one error code of DESIGN.md §4; the HTTP layer turns them into
``{"error": CODE, "message": TEXT}`` with the matching status.
"""

from __future__ import annotations

from typing import Any


class LeaseError(Exception):
    code = "internal"
    status = 500

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        """Extra JSON fields of the error body (e.g. ``holder`` and ``expires_in``)."""


class BadRequest(LeaseError):
    code = "bad_request"
    status = 400


class NotFound(LeaseError):
    code = "not_found"
    status = 404


class NotMember(LeaseError):
    """404: the member is not in the group (the group exists)."""

    code = "not_member"
    status = 404


class Held(LeaseError):
    """409: the name is held (or blocked by lock-delay); details carry holder, expires_in."""

    code = "held"
    status = 409


class NotHolder(LeaseError):
    code = "not_holder"
    status = 409


class Exists(LeaseError):
    """409: the group exists already, or the member already joined it."""

    code = "exists"
    status = 409


class NotEmpty(LeaseError):
    """409: a group with members cannot be deleted."""

    code = "not_empty"
    status = 409


class LimitMismatch(LeaseError):
    """409: a semaphore's permits are held (or blocked) under another ``limit``; details
    carry the ``limit`` in force."""

    code = "limit_mismatch"
    status = 409


class RequestExpired(LeaseError):
    """409: a retry whose first result the cluster no longer remembers (DESIGN.md §3): it
    is never applied as new; the caller reads the current state instead."""

    code = "request_expired"
    status = 409


class PayloadTooLarge(LeaseError):
    code = "payload_too_large"
    status = 413


class Unauthenticated(LeaseError):
    """401: the API requires a bearer token (``--auth``) and the request had no valid one."""

    code = "unauthenticated"
    status = 401


class Forbidden(LeaseError):
    """403: the principal's roles do not cover this name or route, or the hold belongs to
    another principal (DESIGN.md §8)."""

    code = "forbidden"
    status = 403


class TooMany(LeaseError):
    """429 with Retry-After: a limit is reached (holds, waiters, streams, request rate);
    ``limit`` names which. The answer is immediate: a limit never slows other clients."""

    code = "too_many"
    status = 429

    def __init__(self, message: str, retry_after_s: float = 1.0, **details: Any) -> None:
        super().__init__(message, **details)
        self.retry_after_s = retry_after_s


class Unavailable(LeaseError):
    """503 with Retry-After: no primary, no quorum, or the outcome is unknown (retry with
    the same request id)."""

    code = "unavailable"
    status = 503

    def __init__(self, message: str, retry_after_s: float = 0.2, **details: Any) -> None:
        super().__init__(message, **details)
        self.retry_after_s = retry_after_s


class NotPrimary(LeaseError):
    """Raised by a node that is not the primary: the API forwards the request to
    ``primary`` (a node id), or answers 503 when no primary is known."""

    code = "unavailable"
    status = 503

    def __init__(self, primary: str | None) -> None:
        super().__init__(f"this node is not the primary (primary: {primary or 'unknown'})")
        self.primary = primary
