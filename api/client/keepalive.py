"""Holding a grant: obtaining it (waiting as long as asked) and keeping it alive.

The client keeps its own view of a grant (DESIGN.md §3): a grant is trusted until
``t_sent + ttl × (1 − margin)``, where ``t_sent`` is when the request that last proved it —
the acquire, or a successful renewal — was *sent*, read from ``clock.now()`` (a clock that
keeps counting while the host is suspended, as the servers' clocks do). The server starts
or restarts its timer at the full TTL only after that request arrived, and a new primary
restarts every timer in full, so no server can expire the grant before the client gives up
on it, whatever the network delay; ``margin`` covers the drift between the two clocks. A
timer marks the grant lost at that instant unless a renewal moved it; nothing the server
says afterwards can un-lose it.

Leases and elections differ only in paths and in the holder's field name (``Kind``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

from paxlock.api.client import clock
from paxlock.api.client.errors import (
    LeaseHeld,
    NotHolder,
    PaxlockError,
    RequestExpired,
    Unavailable,
)
from paxlock.api.client.transport import Transport

log = logging.getLogger("paxlock.client")

WAIT_CHUNK_S = 30.0
"""A long wait is a series of server-side waits of at most this (each a fresh request id):
the server bounds ``wait``, and proxies dislike hour-long requests."""
RENEWALS_PER_TTL = 3
"""Renew every ttl / 3: two more tries fit before the (ttl × (1 − margin)) window closes."""
LOSS_CHECK_S_MAX = 1.0
"""The loss timer reads ``clock.now()`` at least this often. The event loop's timers run on
``CLOCK_MONOTONIC``, which stops while the host is suspended: after a resume, a grant whose
window closed during the suspend is marked lost within this, not after the rest of its
window by the loop's clock."""


@dataclass(frozen=True, slots=True)
class Kind:
    collection: str
    holder_field: str
    grant_verb: str
    end_verb: str


LEASES = Kind("leases", "holder", "acquire", "release")
ELECTIONS = Kind("elections", "candidate", "campaign", "resign")
SEMAPHORES = Kind("semaphores", "holder", "acquire", "release")
RWLOCKS = Kind("rwlocks", "holder", "acquire", "release")
SESSIONS = Kind("sessions", "holder", "open", "close")
"""A session is opened by ``POST /v1/sessions`` (not ``obtain``); renewed and closed like
a grant, its token being the one in its id."""


class Keeping(Protocol):
    """What a held grant (``holding._Held``) needs of whatever keeps it: a ``Keepalive``
    that renews it, or a grant bound to a session (``coord_session.Bound``) that lives as
    long as the session's keepalive."""

    transport: Transport
    name: str
    holder: str
    token: int
    lost: asyncio.Event
    lost_reason: str | None

    def remaining_s(self) -> float: ...

    def add_lost_callback(self, callback: Callable[[], None]) -> None: ...

    def mark_lost(self, reason: str) -> None: ...

    async def stop(self, *, release: bool) -> None: ...


def path_of(kind: Kind, name: str, verb: str | None = None) -> str:
    """``/v1/leases/NAME:verb``; the name is percent-encoded except ``/`` (names may hold
    slashes), so a bad name reaches the server and comes back as its own 400."""
    return f"/v1/{kind.collection}/{quote(name, safe='/')}" + (f":{verb}" if verb else "")


def new_request_id() -> str:
    return uuid.uuid4().hex


class TaskSet:
    """The background tasks of one client (renewals, clean-ups): cancelled on close."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def tasks(self) -> frozenset[asyncio.Task[None]]:
        return frozenset(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("paxlock background task failed", exc_info=task.exception())

    async def close(self, grace_s: float) -> None:
        """Let tasks finish for ``grace_s`` (clean-ups have their own deadlines), then cancel."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace_s)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task


class Keepalive:
    """Renews one grant in the background and decides, by the client's clock alone, when it
    can no longer be trusted (``lost``, sticky). ``on_renewed`` gets each renewal's JSON."""

    def __init__(self, transport: Transport, tasks: TaskSet, kind: Kind, name: str,
                 holder: str, token: int, ttl_s: float, margin: float, sent_at: float,
                 on_renewed: Callable[[Any], None]) -> None:  # fmt: skip
        assert ttl_s > 0 and 0 <= margin < 1, (ttl_s, margin)
        self.transport, self.kind, self.name = transport, kind, name
        self.holder, self.token, self.ttl_s = holder, token, ttl_s
        self.window_s = ttl_s * (1 - margin)
        self.valid_until = sent_at + self.window_s
        self.lost = asyncio.Event()
        self.lost_reason: str | None = None
        self._on_renewed = on_renewed
        self._callbacks: list[Callable[[], None]] = []
        self._last_sent = sent_at
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._stopped = False
        self._arm()
        self._task = tasks.spawn(self._renew_loop())

    def remaining_s(self) -> float:
        """Seconds of trust left by the client's clock (0 once lost)."""
        return 0.0 if self.lost.is_set() else max(0.0, self.valid_until - clock.now())

    def add_lost_callback(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (on the event loop) when the grant is lost; at once if it is."""
        if self.lost.is_set():
            self._loop.call_soon(callback)
        else:
            self._callbacks.append(callback)

    def mark_lost(self, reason: str) -> None:
        if self.lost.is_set():
            return
        self.lost_reason = reason
        self.lost.set()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if reason != "released":
            log.warning("paxlock: %s %s (token %d) lost: %s", self.kind.collection[:-1],
                        self.name, self.token, reason)  # fmt: skip
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_later(
            min(max(0.0, self.valid_until - clock.now()), LOSS_CHECK_S_MAX), self._on_timer
        )

    def _on_timer(self) -> None:
        self._timer = None
        if not self._lost_if_window_closed():
            self._arm()  # not yet (a periodic look, or the loop's clock ran ahead)

    def _lost_if_window_closed(self) -> bool:
        """Mark the grant lost once the client's clock passed its window; True when lost."""
        if clock.now() >= self.valid_until:
            self.mark_lost(f"not renewed within ttl × (1 − margin) = {self.window_s:.3g}s "
                           "by the client's clock")  # fmt: skip
        return self.lost.is_set()

    def proven(self, sent_at: float, raw: Any) -> None:
        """A request sent at ``sent_at`` found the grant current: move the window."""
        if self.lost.is_set():
            return
        until = sent_at + self.window_s
        if self.valid_until <= clock.now():
            self.mark_lost("the window closed before the renewal's answer (the host was "
                           "suspended, or the process paused)")  # fmt: skip
            return
        if until <= clock.now():
            self.mark_lost("a renewal succeeded too late to be trusted (the process was "
                           "paused or the answer slow)")  # fmt: skip
            return
        self._last_sent = max(self._last_sent, sent_at)
        if until > self.valid_until:
            self.valid_until = until
            self._arm()
        self._on_renewed(raw)

    async def _renew_loop(self) -> None:
        interval_s = self.ttl_s / RENEWALS_PER_TTL
        while not self.lost.is_set():
            await asyncio.sleep(max(0.0, self._last_sent + interval_s - clock.now()))
            sent_at = clock.now()
            if self._lost_if_window_closed():  # meanwhile, or the loop slept through a suspend
                return
            try:
                raw = await renew_once(self.transport, self.kind, self.name, self.holder,
                                       self.token, self.valid_until)  # fmt: skip
            except NotHolder as error:
                self.mark_lost(f"the cluster no longer has this grant ({error.message})")
                return
            except Unavailable as error:
                if clock.now() >= self.valid_until:
                    self.mark_lost(f"renewals failed until the window closed ({error.message})")
                    return
                continue
            except PaxlockError as error:
                self.mark_lost(f"renewal refused: {error!r}")
                return
            self.proven(sent_at, raw)

    async def stop(self, *, release: bool) -> None:
        """Stop renewing; with ``release``, end the grant on the cluster. A failure to release
        is raised unless the grant was already lost (then nobody can rely on it anyway)."""
        if self._stopped:
            return
        self._stopped = True
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        if not release:
            self.mark_lost("stopped")
            return
        try:
            await end_grant(self.transport, self.kind, self.name, self.holder, self.token)
        except PaxlockError:
            was_lost = self.lost.is_set() or clock.now() >= self.valid_until
            self.mark_lost("released")
            if not was_lost:
                raise
        self.mark_lost("released")


async def end_grant(transport: Transport, kind: Kind, name: str, holder: str, token: int,
                    request_id: str | None = None) -> None:
    """Release (or resign) grant ``token``. ``NotHolder`` after an attempt whose answer was
    lost counts as done: the grant is gone either way. So does ``RequestExpired``: the first
    attempt was applied (released, or refused because the grant was already over); only its
    answer is forgotten."""
    body = {kind.holder_field: holder, "token": token, "request_id": request_id or new_request_id()}
    try:
        await transport.call("POST", path_of(kind, name, kind.end_verb), body=body,
                             deadline=transport.deadline())  # fmt: skip
    except NotHolder as error:
        if not error.retried:
            raise
    except RequestExpired:
        pass


async def renew_once(transport: Transport, kind: Kind, name: str, holder: str, token: int,
                     valid_until: float) -> Any:  # fmt: skip
    """One renewal, retried until the grant's window closes; each attempt gets at most half
    of what is left, so a paused or dead node leaves time to try another."""
    left_s = valid_until - clock.now()
    attempt_s = max(0.1, min(transport.policy.request_timeout_s, left_s / 2))
    return await transport.call(
        "POST", path_of(kind, name, "renew"), body={kind.holder_field: holder, "token": token},
        deadline=valid_until, attempt_timeout_s=attempt_s,
    )  # fmt: skip


async def obtain(transport: Transport, tasks: TaskSet, kind: Kind, name: str,
                 body: Mapping[str, Any], *, ttl_s: float, margin: float,
                 wait_s: float | None) -> tuple[Any, float]:  # fmt: skip
    """Acquire (or campaign for) ``name``, waiting up to ``wait_s`` (None: for ever).

    Returns the grant's JSON and a send time that proves it. A grant that arrives late (after
    a long server-side wait, or retries) is only known to date from the *first* send of its
    request id, which may leave no window at all; one renewal then dates it afresh (or shows
    it already expired, and the wait goes on). A cancelled call may still be granted later
    at the primary: ``abandon`` cleans that up in the background.
    """
    holder = str(body[kind.holder_field])
    wait_deadline = None if wait_s is None else clock.now() + wait_s
    while True:
        now = clock.now()
        chunk_until = now + WAIT_CHUNK_S
        if wait_deadline is not None:
            chunk_until = min(chunk_until, wait_deadline)
        sent = {**body, "request_id": new_request_id(), "wait": 0.0}
        try:
            raw = await transport.call(
                "POST", path_of(kind, name, kind.grant_verb), body=sent,
                wait_until=chunk_until, deadline=transport.deadline(max(0.0, chunk_until - now)),
            )  # fmt: skip
        except LeaseHeld:
            if wait_deadline is not None and clock.now() >= wait_deadline - 0.05:
                raise
            continue
        except asyncio.CancelledError:
            tasks.spawn(abandon(transport, kind, name, sent))
            raise
        token = raw.get("token") if isinstance(raw, dict) else None
        if not isinstance(token, int):
            raise PaxlockError(f"malformed grant from the server: {raw!r:.200}")
        if now + ttl_s * (1 - margin) / 2 > clock.now():
            return raw, now
        renewed_at = clock.now()
        try:
            renewed = await renew_once(transport, kind, name, holder, token,
                                       renewed_at + ttl_s * (1 - margin))  # fmt: skip
        except NotHolder:
            continue  # granted, then expired before we heard of it: still waiting
        except (asyncio.CancelledError, PaxlockError):
            tasks.spawn(abandon(transport, kind, name, sent))  # do not leave it held
            raise
        return renewed, renewed_at


async def abandon(transport: Transport, kind: Kind, name: str, sent: Mapping[str, Any]) -> None:
    """Undo a cancelled acquire: the same request id with ``wait`` 0 either replays its
    result or takes the parked request's place and is answered at once; a grant that comes
    back is released. Best effort within the retry deadline."""
    holder = sent[kind.holder_field]
    try:
        raw = await transport.call(
            "POST", path_of(kind, name, kind.grant_verb), body={**sent, "wait": 0.0},
            deadline=transport.deadline(),
        )  # fmt: skip
        token = raw.get("token") if isinstance(raw, dict) else None
        if isinstance(token, int):
            await end_grant(transport, kind, name, str(holder), token)
    except PaxlockError:
        pass  # held by someone else (nothing to undo), or the grant will simply expire
