"""The JSON the HTTP API answers with, as msgspec Structs: the response half of the OpenAPI
document (``openapi``), whose request half is the bodies the server validates with (``wire``,
``coord_wire``, ``members``).

The handlers do not encode these (they send the views' ``as_*`` dicts); a unit test decodes
each view's real JSON strictly into its Struct here, so the two cannot drift apart. Fields
that are sometimes absent are ``UNSET`` (not required); fields that may be null say ``| None``.
"""

from __future__ import annotations

from typing import Literal

import msgspec
from msgspec import UNSET, UnsetType


class _Out(msgspec.Struct, forbid_unknown_fields=True):
    pass


# -- leases and elections ------------------------------------------------------------------


class Lease(_Out):
    """A lease: ``holder``/``token`` null when nobody holds the name (an observe, a read).
    Lists show a group's leader election as ``group:GROUP`` (read it at
    ``/v1/groups/{group}/leader``; lease routes take no ``:`` in a name)."""

    name: str
    holder: str | None
    token: int | None
    revision: int
    ttl: float | None
    expires_in: float | None
    value: str | None
    lock_delay: float
    session: str | None
    waiters: int
    """Acquires with ``wait`` > 0 waiting for the name at the node that answered."""


class Leader(_Out):
    """An election's leader; ``leader`` null when nobody leads (an observe, a read). Lists
    show a group's leader election as ``group:GROUP``."""

    name: str
    leader: str | None
    value: str | None
    token: int | None
    revision: int
    ttl: float | None
    expires_in: float | None
    session: str | None
    waiters: int


class LeaseList(_Out):
    leases: list[Lease]


class LeaderList(_Out):
    elections: list[Leader]


class Released(_Out):
    released: bool


class Verified(_Out):
    """Whether the token is the name's current grant, and the current grant's token."""

    current: bool
    token: int | None


# -- the cluster and its operation ---------------------------------------------------------


class ClusterMember(_Out):
    id: str
    url: str
    reachable: bool
    chosen_index: int | None
    lag: int | None
    heard_s_ago: float | None
    heard_via: str | None


class PrimaryChange(_Out):
    at: float
    """Unix seconds."""
    primary: str | None
    ballot: str | None


class Cluster(_Out):
    """``primary_changes``: the last changes of the primary this node saw since it started,
    oldest first (the first is what it saw at start)."""

    node: str
    primary: str | None
    ballot: str | None
    learn_mode: str
    chosen_index: int
    applied_index: int
    revision: int
    members: list[ClusterMember]
    primary_changes: list[PrimaryChange]
    role: Literal["voter", "learner"] | UnsetType = UNSET
    """This node's (a ``paxlock serve`` member always says)."""


class Changes(_Out):
    """The cluster-wide revision this node has applied, once past ``after``."""

    revision: int


class Health(_Out):
    status: Literal["ok"]
    node: str


class Ready(_Out):
    ready: bool
    reason: str


class KnownMember(_Out):
    id: str
    url: str
    incarnation: str
    role: Literal["voter", "learner"]
    primary: bool
    reachable: bool
    chosen_index: int | None
    lag: int | None


class PendingChange(_Out):
    first_slot: int
    voters: list[str]
    learners: list[str]


class Membership(_Out):
    """``GET /v1/members``: the configuration as this node knows it."""

    cluster_id: str | None
    epoch: int
    members: list[KnownMember]
    pending: PendingChange | None


class ConfigMember(_Out):
    id: str
    incarnation: str
    url: str


class Configuration(_Out):
    """A membership change's answer: the configuration it makes."""

    epoch: int
    voters: list[ConfigMember]
    learners: list[ConfigMember]


# -- sessions, semaphores, read/write locks ----------------------------------------------


class Hold(_Out):
    kind: str
    name: str
    holder: str
    token: int


class Session(_Out):
    id: str
    holder: str
    ttl: float
    token: int
    revision: int
    expires_in: float | None
    holds: list[Hold] | UnsetType = UNSET
    """``GET /v1/sessions/{id}`` only."""


class SessionList(_Out):
    sessions: list[Session]


class SessionClosed(_Out):
    closed: bool
    freed: list[Hold]


class _Grant(_Out):
    name: str
    holder: str
    token: int
    revision: int
    ttl: float | None
    expires_in: float | None
    session: str | None
    lock_delay: float
    holders: list[str]


class Permit(_Grant):
    """A semaphore permit; ``holders`` every holder after the grant, oldest first."""

    limit: int


class RwHold(_Grant):
    mode: Literal["read", "write"]


class SemaphoreHolder(_Out):
    holder: str
    token: int
    expires_in: float | None
    session: str | None


class RwlockHolder(SemaphoreHolder):
    mode: Literal["read", "write"]


class Semaphore(_Out):
    name: str
    revision: int
    blocked: int
    holders: list[SemaphoreHolder]
    limit: int


class Rwlock(_Out):
    name: str
    revision: int
    blocked: int
    holders: list[RwlockHolder]


class SemaphoreList(_Out):
    semaphores: list[Semaphore]


class RwlockList(_Out):
    rwlocks: list[Rwlock]


# -- groups ----------------------------------------------------------------------------------


class GroupMember(_Out):
    group: str
    member: str
    capabilities: bytes
    session: str
    token: int
    revision: int


class Group(_Out):
    name: str
    revision: int
    members: list[GroupMember]


class GroupList(_Out):
    groups: list[str]


class GroupMembers(_Out):
    members: list[GroupMember]
    revision: int


class GroupEvent(_Out):
    type: Literal["joined", "left", "updated", "created", "deleted"]
    member: str | None
    revision: int


class GroupChanges(_Out):
    """An observe answer; ``complete`` false when ``members`` is the truth to resync from."""

    group: str
    revision: int
    complete: bool
    events: list[GroupEvent]
    members: list[GroupMember]


class Deleted(_Out):
    deleted: bool


class Left(_Out):
    left: bool


# -- errors ----------------------------------------------------------------------------------


class Error(msgspec.Struct):
    """Every failure: ``error`` a code, ``message`` for people; details vary by code (a
    ``held`` names the ``holder`` and ``expires_in``; 429 and 503 carry ``retry_after_s``,
    a 503 the ``primary`` it knows of)."""

    error: str
    message: str
    retry_after_s: float | UnsetType = UNSET
    primary: str | None | UnsetType = UNSET
    holder: str | None | UnsetType = UNSET
    expires_in: float | None | UnsetType = UNSET


RESPONSES: tuple[type[msgspec.Struct], ...] = (
    Lease, Leader, LeaseList, LeaderList, Released, Verified, Cluster, Changes, Health, Ready,
    Membership, Configuration, Session, SessionList, SessionClosed, Permit, RwHold,
    Semaphore, Rwlock, SemaphoreList, RwlockList, Group, GroupList, GroupMembers,
    GroupChanges, Deleted, Left, Error,
)  # fmt: skip
"""Every response Struct (the document's components, in this order)."""
