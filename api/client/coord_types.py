"""Typed results of sessions, semaphores, read/write locks and groups (DESIGN.md §7), built
from the server's JSON like ``types``: unknown fields ignored, a wrong type a
``PaxlockError``. Capabilities travel as base64 and are ``bytes`` here."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from paxlock.api.client.errors import PaxlockError
from paxlock.api.client.types import _int, _obj, _opt_float, _opt_int, _opt_str, _str

__all__ = ["GroupChanges", "GroupEvent", "GroupInfo", "GroupMember", "Hold", "Permit",
           "SessionInfo", "SharedHolder", "SharedState"]  # fmt: skip


def _list(raw: dict[str, Any], key: str) -> list[Any]:
    value = raw.get(key) or []
    if not isinstance(value, list):
        raise PaxlockError(f"malformed server answer: {key!r} is {value!r:.100}")
    return value


@dataclass(frozen=True, slots=True)
class Hold:
    """One hold bound to a session (``kind``: lease, semaphore, rwlock or member; for a
    member ``name`` is the group and ``holder`` the member)."""

    kind: str
    name: str
    holder: str
    token: int

    @classmethod
    def from_json(cls, raw: Any) -> Hold:
        obj = _obj(raw, "hold")
        return cls(_str(obj, "kind"), _str(obj, "name"), _str(obj, "holder"), _int(obj, "token"))


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A session as the cluster answered it; ``holds`` only from ``get_session``."""

    id: str
    holder: str
    ttl: float
    token: int
    revision: int
    expires_in: float | None
    holds: tuple[Hold, ...] = ()

    @classmethod
    def from_json(cls, raw: Any) -> SessionInfo:
        obj = _obj(raw, "session")
        return cls(
            id=_str(obj, "id"), holder=_str(obj, "holder"), ttl=_opt_float(obj, "ttl") or 0.0,
            token=_int(obj, "token"), revision=_opt_int(obj, "revision") or 0,
            expires_in=_opt_float(obj, "expires_in"),
            holds=tuple(Hold.from_json(h) for h in _list(obj, "holds")),
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Permit:
    """A semaphore permit or a read/write hold: ``token`` is its fencing token, ``holders``
    every holder of the name right after the grant (oldest first)."""

    name: str
    holder: str
    token: int
    revision: int
    mode: str
    """``permit`` (a semaphore), ``read`` or ``write``."""
    limit: int
    """The semaphore's limit (0 for a read/write lock)."""
    ttl: float
    expires_in: float | None
    session: str | None
    holders: tuple[str, ...]

    @classmethod
    def from_json(cls, raw: Any) -> Permit:
        obj = _obj(raw, "permit")
        return cls(
            name=_str(obj, "name"), holder=_str(obj, "holder"), token=_int(obj, "token"),
            revision=_int(obj, "revision"), mode=_opt_str(obj, "mode") or "permit",
            limit=_opt_int(obj, "limit") or 0, ttl=_opt_float(obj, "ttl") or 0.0,
            expires_in=_opt_float(obj, "expires_in"), session=_opt_str(obj, "session"),
            holders=tuple(h for h in _list(obj, "holders") if isinstance(h, str)),
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class SharedHolder:
    holder: str
    mode: str
    token: int
    expires_in: float | None
    session: str | None


@dataclass(frozen=True, slots=True)
class SharedState:
    """A semaphore (``limit`` > 0) or read/write lock and who holds it, oldest first."""

    name: str
    limit: int
    revision: int
    holders: tuple[SharedHolder, ...]

    @classmethod
    def from_json(cls, raw: Any) -> SharedState:
        obj = _obj(raw, "semaphore or rwlock")
        holders = tuple(
            SharedHolder(_str(h, "holder"), _opt_str(h, "mode") or "permit", _int(h, "token"),
                         _opt_float(h, "expires_in"), _opt_str(h, "session"))  # fmt: skip
            for h in (_obj(item, "holder") for item in _list(obj, "holders"))
        )
        return cls(_str(obj, "name"), _opt_int(obj, "limit") or 0,
                   _opt_int(obj, "revision") or 0, holders)  # fmt: skip


def _capabilities(obj: dict[str, Any]) -> bytes:
    text = obj.get("capabilities") or ""
    if not isinstance(text, str):
        raise PaxlockError(f"malformed server answer: capabilities is {text!r:.100}")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise PaxlockError(f"malformed server answer: capabilities {text!r:.100}") from None


@dataclass(frozen=True, slots=True)
class GroupMember:
    group: str
    member: str
    capabilities: bytes
    session: str
    token: int
    """The revision of its join: a member that left and joined again has a new one."""
    revision: int

    @classmethod
    def from_json(cls, raw: Any) -> GroupMember:
        obj = _obj(raw, "member")
        return cls(_str(obj, "group"), _str(obj, "member"), _capabilities(obj),
                   _opt_str(obj, "session") or "", _int(obj, "token"),
                   _int(obj, "revision"))  # fmt: skip


@dataclass(frozen=True, slots=True)
class GroupInfo:
    name: str
    revision: int
    members: tuple[GroupMember, ...]

    @classmethod
    def from_json(cls, raw: Any) -> GroupInfo:
        obj = _obj(raw, "group")
        return cls(_str(obj, "name"), _int(obj, "revision"),
                   tuple(GroupMember.from_json(m) for m in _list(obj, "members")))  # fmt: skip


@dataclass(frozen=True, slots=True)
class GroupEvent:
    """``joined``, ``left``, ``updated`` (capabilities), ``created`` or ``deleted``."""

    type: str
    member: str | None
    revision: int


@dataclass(frozen=True, slots=True)
class GroupChanges:
    """What one observe answered: the events after the revision asked for, oldest first, and
    the members now. ``complete`` False: the node could not give every event since then
    (its history is bounded), so ``members`` is the state to go by."""

    group: str
    revision: int
    events: tuple[GroupEvent, ...]
    members: tuple[GroupMember, ...]
    complete: bool

    @classmethod
    def from_json(cls, raw: Any) -> GroupChanges:
        obj = _obj(raw, "group changes")
        events = tuple(
            GroupEvent(_str(e, "type"), _opt_str(e, "member"), _int(e, "revision"))
            for e in (_obj(item, "event") for item in _list(obj, "events"))
        )
        return cls(_str(obj, "group"), _int(obj, "revision"), events,
                   tuple(GroupMember.from_json(m) for m in _list(obj, "members")),
                   obj.get("complete") is not False)  # fmt: skip
