"""The SDK's sessions, semaphores, read/write locks and groups (DESIGN.md §7): a mixin of
``AsyncClient`` (``aio`` stays about leases), over the same transport and recipe base.

Context managers keep what they grant alive (``session()``, ``semaphore()``,
``rwlock(name).read()``/``.write()``); the plain calls do one request each, retried with one
request id, as ``AsyncClient.acquire`` does. A grant may be bound to a session (``session=``,
a ``HeldSession`` — or its id for plain calls) instead of carrying a ttl of its own: it then
needs no renewal and ends with the session at the latest.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Literal
from urllib.parse import quote

from paxlock.api.client.coord_session import HeldSession, SessionHolding, open_session
from paxlock.api.client.coord_types import (
    GroupChanges, GroupInfo, GroupMember, Hold, Permit, SessionInfo, SharedState,
)  # fmt: skip
from paxlock.api.client.errors import NotFound, PaxlockError
from paxlock.api.client.holding import HeldPermit, Holding
from paxlock.api.client.keepalive import (
    RWLOCKS, SEMAPHORES, Kind, abandon, end_grant, new_request_id, path_of,
)  # fmt: skip
from paxlock.api.client.session import Session, bound_ttl
from paxlock.api.client.transport import Transport
from paxlock.api.client.types import Leader, Verification

__all__ = ["CoordinationCalls", "RWLock", "SessionLike"]

SessionLike = HeldSession | str
"""A session for a plain call: the object ``session()`` yields, or its id."""
OBSERVE_POLL_S = 25.0


def session_id(session: SessionLike) -> str:
    return session if isinstance(session, str) else session.id


def _list_of(raw: Any, key: str) -> builtins.list[Any]:
    items = raw.get(key) if isinstance(raw, dict) else None
    if not isinstance(items, builtins.list):
        raise PaxlockError(f"malformed {key} list from the server: {raw!r:.200}")
    return items


def _group_path(group: str, rest: str = "") -> str:
    return f"/v1/groups/{quote(group, safe='/')}{rest}"


def _member_path(group: str, member: str, verb: str | None = None) -> str:
    return _group_path(group, f"/members/{quote(member, safe='/')}" + (f":{verb}" if verb else ""))


class RWLock:
    """``client.rwlock(name)``: ``read()`` and ``write()`` hold it (many readers, or one
    writer; a waiting writer is not overtaken by readers that come after it)."""

    def __init__(self, hold: Callable[..., Holding[HeldPermit]], name: str) -> None:
        self._hold = hold
        self.name = name

    def read(self, **options: Any) -> Holding[HeldPermit]:
        """``async with lock.read() as hold:``; options as ``AsyncClient.semaphore``."""
        return self._hold(self.name, "read", **options)

    def write(self, **options: Any) -> Holding[HeldPermit]:
        return self._hold(self.name, "write", **options)

    def __repr__(self) -> str:
        return f"RWLock({self.name!r})"


class CoordinationCalls:
    """Mixed into ``AsyncClient``; see the module docstring."""

    _transport: Transport
    _session: Session

    @property
    def identity(self) -> str:
        return self._session.identity

    def _deadline(self, extra_s: float = 0.0) -> float:
        return self._transport.deadline(extra_s)

    async def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None,
                    params: Mapping[str, str] | None = None) -> Any:  # fmt: skip
        return await self._transport.call(method, path, body=body, params=params,
                                          deadline=self._deadline())  # fmt: skip

    # -- sessions --------------------------------------------------------------------------

    def session(self, ttl: float | None = None, *, margin: float | None = None) -> SessionHolding:
        """``async with client.session(ttl=10) as s:`` — one session of this client's
        identity, renewed every ttl/3 in the background, ``s.lost`` set by the client's
        conservative clock, closed on exit (ending everything bound to it at once). Bind
        grants with ``session=s``: ``lock``, ``campaign``, ``semaphore``, ``rwlock``,
        ``join_group``."""
        return self._session.session(ttl, margin)

    async def open_session(self, ttl: float | None = None, *,
                           request_id: str | None = None) -> SessionInfo:  # fmt: skip
        """Open a session nothing renews (``session()`` does): renew it yourself."""
        ttl_s = self._session.ttl_margin(ttl, None)[0]
        raw, _ = await open_session(self._transport, self.identity, ttl_s, request_id)
        return SessionInfo.from_json(raw)

    async def renew_session(self, session: SessionLike) -> SessionInfo:
        raw = await self._call("POST", f"/v1/sessions/{session_id(session)}:renew",
                               {"holder": self.identity})  # fmt: skip
        return SessionInfo.from_json(raw)

    async def close_session(self, session: SessionLike) -> builtins.list[Hold]:
        """End the session and everything bound to it; what that freed."""
        raw = await self._call("POST", f"/v1/sessions/{session_id(session)}:close",
                               {"holder": self.identity, "request_id": new_request_id()})
        return [Hold.from_json(item) for item in _list_of(raw, "freed")]

    async def get_session(self, session: SessionLike) -> SessionInfo | None:
        """The session with what it holds (``holds``), or None when it is gone."""
        try:
            raw = await self._call("GET", f"/v1/sessions/{session_id(session)}")
        except NotFound:
            return None
        return SessionInfo.from_json(raw)

    async def list_sessions(self, holder: str | None = None) -> builtins.list[SessionInfo]:
        raw = await self._call("GET", "/v1/sessions", params={"holder": holder} if holder else None)
        return [SessionInfo.from_json(item) for item in _list_of(raw, "sessions")]

    # -- semaphores and read/write locks ---------------------------------------------------

    def _hold_shared(self, kind: Kind, name: str, extra: Mapping[str, Any], *,
                     session: HeldSession | None, ttl: float | None, wait: float | None,
                     lock_delay: float, margin: float | None, holder: str | None,
                     cancel_on_loss: bool) -> Holding[HeldPermit]:  # fmt: skip
        if wait is not None and not wait >= 0:
            raise ValueError(f"wait must be >= 0 seconds or None, not {wait!r}")
        body: dict[str, Any] = {"holder": holder or self.identity, "lock_delay": lock_delay,
                                **extra}  # fmt: skip
        ttl_s, margin_f = bound_ttl(self._session, body, ttl, margin, session)
        return self._session.hold(kind, name, body, parse=Permit.from_json, wrap=HeldPermit,
                                  ttl_s=ttl_s, margin=margin_f, wait_s=wait,
                                  cancel_on_loss=cancel_on_loss, bound=session)  # fmt: skip

    def semaphore(self, name: str, limit: int, *, session: HeldSession | None = None,
                  ttl: float | None = None, wait: float | None = None, lock_delay: float = 0.0,
                  margin: float | None = None, holder: str | None = None,
                  cancel_on_loss: bool = False) -> Holding[HeldPermit]:  # fmt: skip
        """``async with client.semaphore("pool", 5) as permit:`` — one of ``limit`` permits
        (the first acquirer fixes the limit; another is ``LimitMismatch`` while permits are
        held). Waits like ``lock`` (``wait`` None: for ever), renewed in the background
        unless bound to ``session``, released on exit. Not reentrant: a second permit for the
        same holder waits for the first; give another ``holder`` to take two."""
        return self._hold_shared(SEMAPHORES, name, {"limit": limit}, session=session, ttl=ttl,
                                 wait=wait, lock_delay=lock_delay, margin=margin, holder=holder,
                                 cancel_on_loss=cancel_on_loss)  # fmt: skip

    def rwlock(self, name: str) -> RWLock:
        """``async with client.rwlock(name).read() as hold:`` (or ``.write()``)."""

        def hold(name: str, mode: str, *, session: HeldSession | None = None,
                 ttl: float | None = None, wait: float | None = None, lock_delay: float = 0.0,
                 margin: float | None = None, holder: str | None = None,
                 cancel_on_loss: bool = False) -> Holding[HeldPermit]:  # fmt: skip
            return self._hold_shared(RWLOCKS, name, {"mode": mode}, session=session, ttl=ttl,
                                     wait=wait, lock_delay=lock_delay, margin=margin,
                                     holder=holder, cancel_on_loss=cancel_on_loss)  # fmt: skip

        return RWLock(hold, name)

    async def acquire_shared(self, kind: Literal["semaphore", "rwlock"], name: str, *,
                             mode: str = "permit", limit: int = 0,
                             session: SessionLike | None = None, ttl: float | None = None,
                             wait: float = 0.0, lock_delay: float = 0.0,
                             holder: str | None = None,
                             request_id: str | None = None) -> Permit:  # fmt: skip
        """One acquire of a permit (``kind`` "semaphore", ``limit``) or a read/write hold
        (``mode`` "read"/"write"), waiting up to ``wait`` s; ``LeaseHeld`` after. Nothing
        renews it unless bound to a session: prefer the context managers."""
        target = SEMAPHORES if kind == "semaphore" else RWLOCKS
        body: dict[str, Any] = {"holder": holder or self.identity, "wait": wait,
                                "lock_delay": lock_delay,
                                "request_id": request_id or new_request_id()}  # fmt: skip
        body.update({"limit": limit} if kind == "semaphore" else {"mode": mode})
        if session is not None:
            body["session"] = session_id(session)
        else:
            body["ttl"] = self._session.ttl_margin(ttl, None)[0]
        transport = self._transport
        try:
            raw = await transport.call(
                "POST", path_of(target, name, "acquire"), body=body,
                wait_until=transport.now() + max(0.0, wait), deadline=transport.deadline(wait),
            )  # fmt: skip
        except asyncio.CancelledError:
            self._session.tasks.spawn(abandon(transport, target, name, body))
            raise
        return Permit.from_json(raw)

    async def release_shared(self, kind: Literal["semaphore", "rwlock"], name: str, token: int,
                             *, holder: str | None = None) -> None:  # fmt: skip
        target = SEMAPHORES if kind == "semaphore" else RWLOCKS
        await end_grant(self._transport, target, name, holder or self.identity, token)

    async def get_shared(self, kind: Literal["semaphore", "rwlock"],
                         name: str) -> SharedState | None:  # fmt: skip
        """Who holds the semaphore or read/write lock now; None when nobody does."""
        try:
            raw = await self._call("GET", path_of(SEMAPHORES if kind == "semaphore"
                                                  else RWLOCKS, name))  # fmt: skip
        except NotFound:
            return None
        return SharedState.from_json(raw)

    async def verify_shared(self, kind: Literal["semaphore", "rwlock"], name: str,
                            token: int) -> Verification:  # fmt: skip
        """Is ``token`` still one of the current holds of ``name``?"""
        target = SEMAPHORES if kind == "semaphore" else RWLOCKS
        return Verification.from_json(
            await self._call("POST", path_of(target, name, "verify"), {"token": token}))

    # -- groups ----------------------------------------------------------------------------

    async def create_group(self, group: str) -> GroupInfo:
        """``Exists`` when it does."""
        raw = await self._call("PUT", _group_path(group),
                               {"holder": self.identity, "request_id": new_request_id()})
        return GroupInfo.from_json(raw)

    async def delete_group(self, group: str) -> None:
        """``NotFound`` without it; ``NotEmpty`` while it has members."""
        await self._call("DELETE", _group_path(group),
                         {"holder": self.identity, "request_id": new_request_id()})

    async def groups(self, prefix: str = "") -> builtins.list[str]:
        raw = await self._call("GET", "/v1/groups", params={"prefix": prefix} if prefix else None)
        return [name for name in _list_of(raw, "groups") if isinstance(name, str)]

    async def group(self, group: str) -> GroupInfo:
        """The group and its members; ``NotFound`` without it."""
        return GroupInfo.from_json(await self._call("GET", _group_path(group)))

    async def group_members(self, group: str) -> builtins.list[GroupMember]:
        raw = await self._call("GET", _group_path(group, "/members"))
        return [GroupMember.from_json(item) for item in _list_of(raw, "members")]

    async def member(self, group: str, member: str) -> GroupMember:
        """``NotFound`` without the group, ``NotMember`` when ``member`` is not in it."""
        return GroupMember.from_json(await self._call("GET", _member_path(group, member)))

    async def join_group(self, group: str, member: str | None = None,
                         capabilities: bytes = b"", *, session: SessionLike) -> GroupMember:  # fmt: skip
        """Join as ``member`` (default: this client's identity) while ``session`` lives;
        ``Exists`` when the member is in the group, ``NotFound`` without group or session."""
        body = {"session": session_id(session), "request_id": new_request_id(),
                "capabilities": base64.b64encode(capabilities).decode("ascii")}  # fmt: skip
        raw = await self._call("POST", _member_path(group, member or self.identity, "join"), body)
        return GroupMember.from_json(raw)

    async def leave_group(self, group: str, member: str | None = None) -> None:
        """``NotMember`` when not in it (a retry whose first attempt left counts as done)."""
        await self._call("POST", _member_path(group, member or self.identity, "leave"),
                         {"request_id": new_request_id()})

    async def update_capabilities(self, group: str, capabilities: bytes,
                                  member: str | None = None) -> GroupMember:  # fmt: skip
        body = {"capabilities": base64.b64encode(capabilities).decode("ascii"),
                "request_id": new_request_id()}  # fmt: skip
        raw = await self._call("PATCH", _member_path(group, member or self.identity), body)
        return GroupMember.from_json(raw)

    async def observe_group(self, group: str, *, after: int = 0,
                            timeout: float = OBSERVE_POLL_S) -> GroupChanges | None:  # fmt: skip
        """One long poll: the changes after revision ``after`` (joins, leaves, updates) and
        the members now, or None when ``timeout`` passed without any."""
        transport = self._transport
        raw = await transport.call(
            "GET", _group_path(group, ":observe"),
            params={"after": str(after), "timeout": f"{timeout:g}"},
            deadline=transport.deadline(timeout), server_wait_s=timeout,
        )  # fmt: skip
        return None if raw is None else GroupChanges.from_json(raw)

    async def watch_group(self, group: str, *, after: int = 0,
                          poll_s: float = OBSERVE_POLL_S) -> AsyncIterator[GroupChanges]:  # fmt: skip
        """Yield each batch of changes, for ever (cancel, or ``break``, to stop)."""
        while True:
            changes = await self.observe_group(group, after=after, timeout=poll_s)
            if changes is not None and changes.revision > after:
                after = changes.revision
                yield changes

    # -- a group's leader ------------------------------------------------------------------

    async def group_leader(self, group: str) -> Leader | None:
        """The leader (None when nobody leads); ``NotFound`` without the group."""
        raw = await self._call("GET", _group_path(group, "/leader"))
        return Leader.maybe_from_json(raw)[0]

    async def campaign_group(self, group: str, value: str | None = None, *,
                             candidate: str | None = None, session: SessionLike | None = None,
                             ttl: float | None = None, wait: float = 0.0) -> Leader:  # fmt: skip
        """One campaign for the group's leadership (no membership needed), waiting up to
        ``wait`` s; ``LeaseHeld`` after. Bound to ``session`` it lasts as long as the
        session; with a ttl nothing renews it (``renew_group_leader``)."""
        body: dict[str, Any] = {"candidate": candidate or self.identity, "value": value,
                                "wait": wait, "request_id": new_request_id()}  # fmt: skip
        if session is not None:
            body["session"] = session_id(session)
        else:
            body["ttl"] = self._session.ttl_margin(ttl, None)[0]
        transport = self._transport
        raw = await transport.call("POST", _group_path(group, "/leader:campaign"), body=body,
                                   wait_until=transport.now() + max(0.0, wait),
                                   deadline=transport.deadline(wait))  # fmt: skip
        return Leader.from_json(raw)

    async def renew_group_leader(self, group: str, token: int, *,
                                 candidate: str | None = None) -> Leader:  # fmt: skip
        raw = await self._call("POST", _group_path(group, "/leader:renew"),
                               {"candidate": candidate or self.identity, "token": token})
        return Leader.from_json(raw)

    async def resign_group(self, group: str, token: int, *, candidate: str | None = None) -> None:
        """Stand down (``NotHolder`` when term ``token`` is not current)."""
        await self._call("POST", _group_path(group, "/leader:resign"),
                         {"candidate": candidate or self.identity, "token": token,
                          "request_id": new_request_id()})  # fmt: skip
