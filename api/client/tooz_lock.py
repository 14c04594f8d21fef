"""The tooz driver's lock (``PaxlockLock``), and what driver and lock share: tooz ids as
paxlock names, paxlock errors as tooz exceptions.

A tooz lock is a paxlock read/write lock bound to the coordinator's session (``shared=True``
takes a read hold), each acquisition with a fresh holder, so that two lock objects of one
coordinator exclude each other as tooz expects, and one object may hold several shared
acquisitions at once (tooz's suite takes the same shared lock twice).
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Coroutine
from typing import Any, NoReturn, Protocol, TypeVar

import tooz
from tooz import coordination, locking, utils

from paxlock.api.client.errors import LeaseHeld, NotHolder, PaxlockError, Unavailable
from paxlock.api.client.keepalive import RWLOCKS, TaskSet, end_grant, obtain, path_of
from paxlock.api.client.transport import Transport

__all__ = ["LockHost", "PaxlockLock", "decode_id", "encode_id", "raise_tooz"]

T = TypeVar("T")
HEX_PREFIX = "hex."
NAME_CHARS_MAX = 256
ONE_SEGMENT = re.compile(r"[A-Za-z0-9._-]{1,256}")
MANY_SEGMENTS = re.compile(r"[A-Za-z0-9._/-]{1,256}")
MARGIN = 0.2
"""Share of a session's ttl the client does not count on (the SDK's default margin)."""


def encode_id(raw: bytes | str, *, slashes: bool = False) -> str:
    """A tooz id (bytes; str is taken as UTF-8) as a paxlock name, reversibly: as it is when
    it matches the name pattern (without ``/`` unless ``slashes``: a group or member id is
    one path segment), else ``hex.`` and its hex digits — so are ids starting with ``hex.``,
    which keeps decoding unambiguous."""
    data = raw.encode() if isinstance(raw, str) else bytes(raw)
    text = data.decode("ascii", errors="replace")
    pattern = MANY_SEGMENTS if slashes else ONE_SEGMENT
    plain = (pattern.fullmatch(text) is not None and not text.startswith(HEX_PREFIX)
             and not any(part in ("", ".", "..") for part in text.split("/")))  # fmt: skip
    if plain:
        return text
    encoded = HEX_PREFIX + data.hex()
    if len(encoded) > NAME_CHARS_MAX:
        raise tooz.ToozError(f"id too long for paxlock ({len(data)} bytes; at most "
                             f"{(NAME_CHARS_MAX - len(HEX_PREFIX)) // 2} unless it matches "
                             f"{pattern.pattern})")  # fmt: skip
    return encoded


def decode_id(name: str) -> bytes:
    """The tooz id (bytes) of a paxlock name made by ``encode_id``."""
    if name.startswith(HEX_PREFIX):
        with contextlib.suppress(ValueError):
            return bytes.fromhex(name[len(HEX_PREFIX):])
    return name.encode()


def raise_tooz(error: PaxlockError, group_id: bytes | None = None,
               member_id: bytes | None = None) -> NoReturn:  # fmt: skip
    """The tooz exception of a paxlock error (group errors only when a group is named)."""
    if group_id is not None:
        code = error.code
        if code == "not_found":
            raise coordination.GroupNotCreated(group_id) from error
        if code == "not_member":
            raise coordination.MemberNotJoined(group_id, member_id or b"") from error
        if code == "not_empty":
            raise coordination.GroupNotEmpty(group_id) from error
        if code == "exists" and member_id is not None:
            raise coordination.MemberAlreadyExist(group_id, member_id) from error
        if code == "exists":
            raise coordination.GroupAlreadyExist(group_id) from error
    if isinstance(error, Unavailable):
        utils.raise_with_cause(coordination.ToozConnectionError, error.message, cause=error)
    utils.raise_with_cause(tooz.ToozError, f"{error.code}: {error.message}", cause=error)


class LockHost(Protocol):
    """What a lock needs of its coordinator (``PaxlockDriver``; private there: they are no
    part of tooz's driver API)."""

    timeout_s: float
    _held_locks: set[PaxlockLock]

    def _run(self, coro: Coroutine[Any, Any, T]) -> T: ...
    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any: ...
    def _plumbing(self) -> tuple[Transport, TaskSet]: ...
    def _new_holder(self) -> str: ...
    def _session(self) -> str: ...
    def _session_known(self, session: str) -> bool: ...
    def _session_lost(self, lost: str) -> str: ...


class PaxlockLock(locking.Lock):
    """A tooz lock on paxlock (module docstring). Thread-safe: its acquisitions are a list
    under a lock; ``release`` ends the latest."""

    def __init__(self, host: LockHost, name: bytes) -> None:
        super().__init__(name)
        self._host = host
        self._path_name = encode_id(name, slashes=True)
        self._guard = threading.Lock()
        self._holds: list[tuple[str, int]] = []
        """(holder, token) of each acquisition, oldest first."""

    @property
    def acquired(self) -> bool:
        return bool(self._holds)

    def acquire(self, blocking: bool | float = True, shared: bool = False,
                timeout: float | None = None) -> bool:  # fmt: skip
        """``blocking``: False tries once, True waits (up to ``timeout`` if given), a number
        waits that many seconds. The wait is the server's FIFO queue, in chunks."""
        waits, wait_s = utils.convert_blocking(blocking, timeout)
        holder = self._host._new_holder()
        token = self._obtain(holder, "read" if shared else "write", wait_s if waits else 0.0)
        if token is None:
            return False
        with self._guard:
            self._holds.append((holder, token))
        self._host._held_locks.add(self)
        return True

    def _obtain(self, holder: str, mode: str, wait_s: float | None) -> int | None:
        """The token of a new hold, or None once ``wait_s`` (None: for ever) elapsed. A lost
        session (it expired unbeaten) is replaced once, and the acquire tried on the new."""
        transport, tasks = self._host._plumbing()
        for _ in range(2):
            session = self._host._session()
            body = {"holder": holder, "mode": mode, "session": session}
            try:
                raw, _ = self._host._run(obtain(
                    transport, tasks, RWLOCKS, self._path_name, body,
                    ttl_s=self._host.timeout_s, margin=MARGIN, wait_s=wait_s,
                ))  # fmt: skip
            except LeaseHeld:
                return None
            except PaxlockError as error:
                if error.code != "not_found" or self._host._session_known(session):
                    raise_tooz(error)
                self._host._session_lost(session)
                continue
            return int(raw["token"])
        raise tooz.ToozError(f"lock {self._path_name}: the session was lost twice in a row")

    def release(self) -> bool:
        """End the latest acquisition; False if there is none or the cluster no longer has
        it (broken, or its session expired)."""
        with self._guard:
            if not self._holds:
                return False
            holder, token = self._holds.pop()
            if not self._holds:
                self._host._held_locks.discard(self)
        return self._end(holder, token)

    def _end(self, holder: str, token: int) -> bool:
        transport, _ = self._host._plumbing()
        try:
            self._host._run(end_grant(transport, RWLOCKS, self._path_name, holder, token))
        except NotHolder:
            return False
        except PaxlockError as error:
            raise_tooz(error)
        return True

    def break_(self) -> bool:
        """Release every hold on the name, whoever has it; True if there was one."""
        try:
            raw = self._host._call("GET", path_of(RWLOCKS, self._path_name))
        except PaxlockError as error:
            if error.code == "not_found":
                return False
            raise_tooz(error)
        broken = False
        holds = (raw.get("holders") or []) if isinstance(raw, dict) else []
        for hold in holds:
            broken |= self._end(str(hold["holder"]), int(hold["token"]))
        return broken

    def heartbeat(self) -> bool:
        """Renew the latest acquisition (that is, its session); False if not held."""
        latest = self._latest()
        if latest is None:
            return False
        holder, token = latest
        try:
            self._host._call("POST", path_of(RWLOCKS, self._path_name, "renew"),
                            {"holder": holder, "token": token})  # fmt: skip
        except NotHolder:
            return False
        except PaxlockError as error:
            raise_tooz(error)
        return True

    def is_still_owner(self) -> bool:
        """Is the latest acquisition still the cluster's (a linearizable ``:verify``)?"""
        latest = self._latest()
        if latest is None:
            return False
        try:
            raw = self._host._call("POST", path_of(RWLOCKS, self._path_name, "verify"),
                                  {"token": latest[1]})  # fmt: skip
        except PaxlockError as error:
            raise_tooz(error)
        return isinstance(raw, dict) and raw.get("current") is True

    def _latest(self) -> tuple[str, int] | None:
        with self._guard:
            return self._holds[-1] if self._holds else None

    def forget(self) -> None:
        """The session ended: every acquisition ended with it."""
        with self._guard:
            self._holds.clear()
