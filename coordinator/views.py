"""What the service returns to the edges (HTTP, SDK, embedded callers): the objects of
DESIGN.md §4 and §7, as plain frozen dataclasses with their JSON shapes."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class LeaseView:
    name: str
    holder: str | None
    token: int | None
    revision: int
    ttl: float | None
    expires_in: float | None
    value: str | None
    lock_delay: float
    session: str | None = None
    """The session the lease is bound to (it then has no ttl of its own: ``ttl`` is the
    session's), None for a lease with its own ttl."""
    waiters: int = 0
    """Acquires (campaigns) with ``wait`` > 0 waiting for the name at the node that answered:
    the primary for linearizable reads, as followers hand it their waiting acquires."""

    def as_lease(self) -> dict[str, Any]:
        return {
            "name": self.name, "holder": self.holder, "token": self.token,
            "revision": self.revision, "ttl": self.ttl, "expires_in": self.expires_in,
            "value": self.value, "lock_delay": self.lock_delay, "session": self.session,
            "waiters": self.waiters,
        }  # fmt: skip

    def as_leader(self) -> dict[str, Any]:
        return {
            "name": self.name, "leader": self.holder, "value": self.value, "token": self.token,
            "revision": self.revision, "ttl": self.ttl, "expires_in": self.expires_in,
            "session": self.session, "waiters": self.waiters,
        }  # fmt: skip


# -- sessions --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HoldView:
    """One hold bound to a session (a lease, a permit, a read/write hold, a membership:
    for a membership ``name`` is the group and ``holder`` the member)."""

    kind: str
    name: str
    holder: str
    token: int

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "holder": self.holder, "token": self.token}


@dataclass(frozen=True, slots=True)
class SessionView:
    id: str
    holder: str
    ttl: float
    token: int
    revision: int
    expires_in: float | None
    holds: tuple[HoldView, ...] | None = None
    """What the session holds (``GET /v1/sessions/{id}`` only; None elsewhere)."""

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id, "holder": self.holder, "ttl": self.ttl, "token": self.token,
            "revision": self.revision, "expires_in": self.expires_in,
        }  # fmt: skip
        if self.holds is not None:
            out["holds"] = [hold.as_json() for hold in self.holds]
        return out


# -- semaphores and read/write locks -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PermitView:
    """A grant of a shared name: a semaphore permit (mode ``permit``) or a read/write hold."""

    kind: str
    name: str
    holder: str
    mode: str
    token: int
    revision: int
    limit: int
    ttl: float | None
    expires_in: float | None
    session: str | None
    lock_delay: float
    holders: tuple[str, ...]
    """Every holder of the name after the grant, oldest first."""

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name, "holder": self.holder, "token": self.token,
            "revision": self.revision, "ttl": self.ttl, "expires_in": self.expires_in,
            "session": self.session, "lock_delay": self.lock_delay,
            "holders": list(self.holders),
        }  # fmt: skip
        if self.kind == "semaphore":
            out["limit"] = self.limit
        else:
            out["mode"] = self.mode
        return out


@dataclass(frozen=True, slots=True)
class SharedHolderView:
    holder: str
    mode: str
    token: int
    expires_in: float | None
    session: str | None

    def as_json(self, kind: str) -> dict[str, Any]:
        out: dict[str, Any] = {"holder": self.holder, "token": self.token,
                               "expires_in": self.expires_in, "session": self.session}  # fmt: skip
        if kind == "rwlock":
            out["mode"] = self.mode
        return out


@dataclass(frozen=True, slots=True)
class SharedView:
    """A semaphore or read/write lock with its current holders (oldest first)."""

    kind: str
    name: str
    limit: int
    revision: int
    holders: tuple[SharedHolderView, ...]
    blocked: int = 0
    """Holds in lock-delay after an expiry: they count against the limit until unblocked."""

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name, "revision": self.revision, "blocked": self.blocked,
            "holders": [holder.as_json(self.kind) for holder in self.holders],
        }  # fmt: skip
        if self.kind == "semaphore":
            out["limit"] = self.limit
        return out


# -- groups ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MemberView:
    group: str
    member: str
    capabilities: bytes
    session: str
    token: int
    revision: int

    def as_json(self) -> dict[str, Any]:
        return {
            "group": self.group, "member": self.member,
            "capabilities": base64.b64encode(self.capabilities).decode("ascii"),
            "session": self.session, "token": self.token, "revision": self.revision,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class GroupView:
    name: str
    revision: int
    members: tuple[MemberView, ...]

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "revision": self.revision,
                "members": [member.as_json() for member in self.members]}  # fmt: skip


@dataclass(frozen=True, slots=True)
class GroupEvent:
    """One change of a group: ``joined``, ``left``, ``updated`` (capabilities), ``created``
    or ``deleted`` (``member`` None for the last two)."""

    type: str
    member: str | None
    revision: int

    def as_json(self) -> dict[str, Any]:
        return {"type": self.type, "member": self.member, "revision": self.revision}


@dataclass(frozen=True, slots=True)
class GroupChanges:
    """An observe answer: the events after ``after`` (oldest first), and the members now.
    ``complete`` is False when this node no longer holds (or never saw, having started
    later) every event after ``after``: ``members`` is then the truth to resync from."""

    group: str
    revision: int
    events: tuple[GroupEvent, ...]
    members: tuple[MemberView, ...]
    complete: bool = True

    def as_json(self) -> dict[str, Any]:
        return {
            "group": self.group, "revision": self.revision, "complete": self.complete,
            "events": [event.as_json() for event in self.events],
            "members": [member.as_json() for member in self.members],
        }  # fmt: skip
