"""Request bodies of sessions, semaphores, read/write locks and groups (DESIGN.md §7), on
the conventions of ``wire``: every check is a 400 naming the field.

- a grant takes ``ttl`` (seconds, as a lease's) or ``session`` (an id), exactly one;
- a semaphore's ``limit``: 1..100,000; a read/write hold's ``mode``: ``read`` or ``write``;
- ``capabilities``: base64 in JSON, at most 4096 bytes once decoded;
- group and member names follow the lease name pattern; a group name may not have a path
  segment ``members`` or ``leader`` (``group_routes`` splits the path there).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from paxlock.api.server.wire import (
    Ident, LockDelay, SessionId, Token, Ttl, Wait, _Body, check_ttl_or_session,
)  # fmt: skip

SEMAPHORE_LIMIT_MAX = 100_000
CAPABILITIES_BYTES_MAX = 4096

Limit = Annotated[int, msgspec.Meta(ge=1, le=SEMAPHORE_LIMIT_MAX)]
Capabilities = Annotated[bytes, msgspec.Meta(max_length=CAPABILITIES_BYTES_MAX,
                                             description="base64 in JSON")]  # fmt: skip


class OpenSessionBody(_Body):
    holder: Ident
    ttl: Ttl
    request_id: Ident | None = None


class SessionHolderBody(_Body):
    """``:renew`` and ``:close``. ``token``, when given, must be the session's (the number
    in its id): the SDK keeps a session as it keeps any grant, by its token."""

    holder: Ident
    token: Token | None = None
    request_id: Ident | None = None


class SemaphoreAcquireBody(_Body):
    holder: Ident
    limit: Limit
    ttl: Ttl | None = None
    session: SessionId | None = None
    wait: Wait = 0.0
    lock_delay: LockDelay = 0.0
    request_id: Ident | None = None

    def __post_init__(self) -> None:
        check_ttl_or_session(self.ttl, self.session)


class RwlockAcquireBody(_Body):
    holder: Ident
    mode: Literal["read", "write"]
    ttl: Ttl | None = None
    session: SessionId | None = None
    wait: Wait = 0.0
    lock_delay: LockDelay = 0.0
    request_id: Ident | None = None

    def __post_init__(self) -> None:
        check_ttl_or_session(self.ttl, self.session)


class GroupBody(_Body):
    """``PUT`` and ``DELETE`` of a group: the body is optional (``holder`` keys retries)."""

    holder: Ident = "anonymous"
    request_id: Ident | None = None


class JoinBody(_Body):
    session: SessionId
    capabilities: Capabilities = b""
    holder: Ident | None = None
    """Defaults to the member's name."""
    request_id: Ident | None = None


class LeaveBody(_Body):
    holder: Ident | None = None
    request_id: Ident | None = None


class CapabilitiesBody(_Body):
    capabilities: Capabilities
    holder: Ident | None = None
    request_id: Ident | None = None
