"""A cluster session held by the client (DESIGN.md §7): ``async with client.session(ttl=10)
as s:`` opens one, renews it every ttl/3 — one request, whatever is bound to it — and closes
it on exit, which ends everything bound to it at once.

The session is kept by an ordinary ``Keepalive`` (the conservative clock of ``keepalive``:
lost at ``t_sent + ttl × (1 − margin)`` unless a renewal moved it). A grant bound to it
(``lock(name, session=s)``, a permit, a group leader's term) is kept by a ``Bound``: no
renewal of its own, trusted exactly as long as the session is, lost the moment the session is.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from types import TracebackType
from typing import Any

from paxlock.api.client import clock
from paxlock.api.client.coord_types import SessionInfo
from paxlock.api.client.errors import LeaseLost, PaxlockError
from paxlock.api.client.keepalive import (
    SESSIONS, Keepalive, Kind, TaskSet, end_grant, new_request_id,
)  # fmt: skip
from paxlock.api.client.transport import Transport

__all__ = ["Bound", "HeldSession", "SessionHolding", "open_session"]

log = logging.getLogger("paxlock.client")


async def open_session(transport: Transport, holder: str, ttl_s: float,
                       request_id: str | None = None) -> tuple[Any, float]:  # fmt: skip
    """``POST /v1/sessions``: the session's JSON, and when the request was first sent."""
    sent_at = clock.now()
    raw = await transport.call(
        "POST", "/v1/sessions",
        body={"holder": holder, "ttl": ttl_s, "request_id": request_id or new_request_id()},
        deadline=transport.deadline(),
    )  # fmt: skip
    return raw, sent_at


class HeldSession:
    """A session this client keeps alive (``client.session()`` yields it)."""

    def __init__(self, info: SessionInfo, keepalive: Keepalive) -> None:
        self.info = info
        """The session as the cluster last answered (open or renewal)."""
        self._keepalive = keepalive

    @property
    def id(self) -> str:
        """What bound grants name: ``lock(name, session=s)`` takes the object or its id."""
        return self.info.id

    @property
    def token(self) -> int:
        return self.info.token

    @property
    def ttl(self) -> float:
        return self._keepalive.ttl_s

    @property
    def lost(self) -> asyncio.Event:
        """Set once the session can no longer be trusted by the client's clock (or the
        cluster no longer has it, or it was closed). Never cleared: open another."""
        return self._keepalive.lost

    @property
    def lost_reason(self) -> str | None:
        return self._keepalive.lost_reason

    def remaining_s(self) -> float:
        return self._keepalive.remaining_s()

    def check(self) -> None:
        """Raise ``LeaseLost`` unless the session (and so all bound to it) is still trusted."""
        if self.remaining_s() <= 0:
            raise LeaseLost(f"session {self.id} is no longer held: "
                            f"{self.lost_reason or 'its window closed'}",
                            details={"session": self.id})  # fmt: skip

    def add_lost_callback(self, callback: Callable[[], None]) -> None:
        self._keepalive.add_lost_callback(callback)

    def _renewed(self, raw: Any) -> None:
        self.info = SessionInfo.from_json(raw)

    def __repr__(self) -> str:
        return f"HeldSession(id={self.id!r}, lost={self.lost.is_set()})"


class Bound:
    """Keeps a grant bound to a session (``keepalive.Keeping``): trusted while the session
    is; ``stop(release=True)`` releases the grant alone, the session lives on."""

    def __init__(self, session: HeldSession, transport: Transport, kind: Kind, name: str,
                 holder: str, token: int) -> None:  # fmt: skip
        self.session, self.transport, self.kind = session, transport, kind
        self.name, self.holder, self.token = name, holder, token
        self.lost = asyncio.Event()
        self.lost_reason: str | None = None
        self._callbacks: list[Callable[[], None]] = []
        self._loop = asyncio.get_running_loop()
        self._stopped = False
        session.add_lost_callback(self._session_lost)

    def _session_lost(self) -> None:
        self.mark_lost(f"its session {self.session.id} was lost: {self.session.lost_reason}")

    def remaining_s(self) -> float:
        return 0.0 if self.lost.is_set() else self.session.remaining_s()

    def add_lost_callback(self, callback: Callable[[], None]) -> None:
        if self.lost.is_set():
            self._loop.call_soon(callback)
        else:
            self._callbacks.append(callback)

    def mark_lost(self, reason: str) -> None:
        if self.lost.is_set():
            return
        self.lost_reason = reason
        self.lost.set()
        if reason != "released":
            log.warning("paxlock: %s %s (token %d) lost: %s", self.kind.collection[:-1],
                        self.name, self.token, reason)  # fmt: skip
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    async def stop(self, *, release: bool) -> None:
        """Release the grant (unless the session is gone, which took it along)."""
        if self._stopped:
            return
        self._stopped = True
        was_lost = self.lost.is_set() or self.session.remaining_s() <= 0
        if release and not was_lost:
            try:
                await end_grant(self.transport, self.kind, self.name, self.holder, self.token)
            except PaxlockError:
                self.mark_lost("released")
                if self.session.remaining_s() > 0:
                    raise  # else the session's end took the grant along anyway
        self.mark_lost("released" if release else "stopped")


class SessionHolding:
    """``async with``: open a session, keep it alive, close it on exit (see the module
    docstring). Single use."""

    def __init__(self, transport: Transport, tasks: TaskSet, holder: str, ttl_s: float,
                 margin: float, on_open: Callable[[Keepalive], None]) -> None:  # fmt: skip
        self._transport, self._tasks, self._holder = transport, tasks, holder
        self._ttl_s, self._margin, self._on_open = ttl_s, margin, on_open
        self._held: HeldSession | None = None

    async def __aenter__(self) -> HeldSession:
        if self._held is not None:
            raise RuntimeError("this context manager is single-use: call session() again")
        raw, sent_at = await open_session(self._transport, self._holder, self._ttl_s)
        info = SessionInfo.from_json(raw)
        held: HeldSession | None = None

        def renewed(raw_renewal: Any) -> None:
            if held is not None:
                held._renewed(raw_renewal)

        keepalive = Keepalive(self._transport, self._tasks, SESSIONS, info.id, self._holder,
                              info.token, self._ttl_s, self._margin, sent_at, renewed)  # fmt: skip
        self._on_open(keepalive)
        held = self._held = HeldSession(info, keepalive)
        return held

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:  # fmt: skip
        held = self._held
        assert held is not None, "__aexit__ without __aenter__"
        try:
            await held._keepalive.stop(release=True)
        except PaxlockError as error:
            if exc is None:
                raise
            exc.add_note(f"paxlock: closing {held!r} failed too: {error!r}")
