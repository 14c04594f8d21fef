"""Typed results of the SDK: the lease, leader and cluster objects of the HTTP API.

Frozen dataclasses built from the server's JSON with ``from_json``: unknown fields are
ignored (a newer server may add some), missing optional ones default, and a field of the
wrong type raises ``PaxlockError`` rather than surfacing as a ``KeyError`` far away.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from paxlock.api.client.errors import PaxlockError

__all__ = ["Cluster", "Configuration", "Leader", "Lease", "Member", "MemberIncarnation",
           "MemberStatus", "Membership", "PendingChange", "Verification"]


def _obj(raw: Any, what: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise PaxlockError(f"malformed {what} from the server: {raw!r:.200}")
    return raw


def _str(raw: dict[str, Any], key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str):
        raise PaxlockError(f"malformed server answer: {key!r} is {value!r:.100}")
    return value


def _opt_str(raw: dict[str, Any], key: str) -> str | None:
    value = raw.get(key)
    return value if isinstance(value, str) else None


def _int(raw: dict[str, Any], key: str) -> int:
    value = raw.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise PaxlockError(f"malformed server answer: {key!r} is {value!r:.100}")
    return value


def _opt_int(raw: dict[str, Any], key: str) -> int | None:
    value = raw.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _opt_float(raw: dict[str, Any], key: str) -> float | None:
    value = raw.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True, slots=True)
class Lease:
    """A grant of ``name`` to ``holder``. ``token`` is the fencing token (strictly increasing
    across the cluster); ``expires_in`` is the primary's view when it answered, not a promise
    to the client (the client keeps its own, more conservative clock)."""

    name: str
    holder: str
    token: int
    revision: int
    ttl: float
    expires_in: float | None
    value: str | None
    lock_delay: float
    session: str | None = None
    """The session the lease is bound to (its ``ttl`` is then the session's)."""
    waiters: int = 0
    """Acquires waiting for the name when the server answered (0 from older servers)."""

    @classmethod
    def from_json(cls, raw: Any) -> Lease:
        obj = _obj(raw, "lease")
        return cls(
            name=_str(obj, "name"), holder=_str(obj, "holder"), token=_int(obj, "token"),
            revision=_int(obj, "revision"), ttl=_opt_float(obj, "ttl") or 0.0,
            expires_in=_opt_float(obj, "expires_in"), value=_opt_str(obj, "value"),
            lock_delay=_opt_float(obj, "lock_delay") or 0.0, session=_opt_str(obj, "session"),
            waiters=_opt_int(obj, "waiters") or 0,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Leader:
    """The leader of an election: who (``leader``), what it proclaimed (``value``), its term's
    fencing token, and ``revision``, the cluster revision of the last change of the name."""

    name: str
    leader: str
    value: str | None
    token: int
    revision: int
    ttl: float
    expires_in: float | None
    session: str | None = None
    waiters: int = 0
    """Campaigns waiting for the name when the server answered (0 from older servers)."""

    @classmethod
    def from_json(cls, raw: Any) -> Leader:
        obj = _obj(raw, "leader")
        return cls(
            name=_str(obj, "name"), leader=_str(obj, "leader"), value=_opt_str(obj, "value"),
            token=_int(obj, "token"), revision=_int(obj, "revision"),
            ttl=_opt_float(obj, "ttl") or 0.0, expires_in=_opt_float(obj, "expires_in"),
            session=_opt_str(obj, "session"), waiters=_opt_int(obj, "waiters") or 0,
        )  # fmt: skip

    @staticmethod
    def maybe_from_json(raw: Any) -> tuple[Leader | None, int]:
        """An observed state: (the leader or None when nobody leads, its revision)."""
        obj = _obj(raw, "leader")
        revision = _int(obj, "revision")
        if obj.get("leader") is None:
            return None, revision
        return Leader.from_json(obj), revision


@dataclass(frozen=True, slots=True)
class Verification:
    """A resource server's fencing check: is ``token`` still the current grant?"""

    current: bool
    token: int | None
    """The current grant's token, None when nobody holds the name."""

    @classmethod
    def from_json(cls, raw: Any) -> Verification:
        obj = _obj(raw, "verification")
        return cls(current=obj.get("current") is True, token=_opt_int(obj, "token"))


@dataclass(frozen=True, slots=True)
class Member:
    id: str
    url: str
    reachable: bool
    """Heard from (by the node that answered) within twice the election timeout."""
    chosen_index: int | None
    """The chosen index the member last reported (None: unknown)."""
    lag: int | None = None
    """Slots behind the highest chosen index the answering node knows of."""
    heard_s_ago: float | None = None


@dataclass(frozen=True, slots=True)
class Cluster:
    """One node's view of the cluster (``GET /v1/cluster``)."""

    node: str
    primary: str | None
    learn_mode: str
    chosen_index: int
    applied_index: int
    members: tuple[Member, ...]
    revision: int = 0
    """The cluster-wide revision the answering node has applied (0 from older servers)."""

    @classmethod
    def from_json(cls, raw: Any) -> Cluster:
        obj = _obj(raw, "cluster object")
        members = tuple(
            Member(_str(m, "id"), _str(m, "url"), m.get("reachable") is True,
                   _opt_int(m, "chosen_index"), _opt_int(m, "lag"),
                   _opt_float(m, "heard_s_ago"))  # fmt: skip
            for m in (_obj(item, "member") for item in obj.get("members") or [])
        )
        return cls(
            node=_str(obj, "node"), primary=_opt_str(obj, "primary"),
            learn_mode=_opt_str(obj, "learn_mode") or "",
            chosen_index=_opt_int(obj, "chosen_index") or 0,
            applied_index=_opt_int(obj, "applied_index") or 0, members=members,
            revision=_opt_int(obj, "revision") or 0,
        )  # fmt: skip


# -- membership (GET /v1/members and the changes) -------------------------------------------


def _ids(raw: Any) -> tuple[str, ...]:
    return tuple(item for item in raw if isinstance(item, str)) if isinstance(raw, list) else ()


@dataclass(frozen=True, slots=True)
class MemberStatus:
    """One member of ``GET /v1/members``: a voter or a learner, as the answering node sees it."""

    id: str
    url: str
    incarnation: str
    """The random id its store was made with: a member whose store was lost and recreated
    has a new one, which no configuration lists until it is removed and added again."""
    role: str
    """``voter`` or ``learner`` (follows the log, never counted in a quorum)."""
    primary: bool
    reachable: bool
    chosen_index: int | None
    lag: int | None
    """Slots behind the highest chosen index the answering node knows of (None: unknown)."""


@dataclass(frozen=True, slots=True)
class PendingChange:
    """A configuration chosen but not in effect yet: it governs slots from ``first_slot``."""

    first_slot: int
    voters: tuple[str, ...]
    learners: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Membership:
    """``GET /v1/members``: the configuration in effect and the one pending, if any."""

    cluster_id: str | None
    epoch: int
    """The slot whose change made the configuration in effect (0: the genesis one)."""
    members: tuple[MemberStatus, ...]
    pending: PendingChange | None

    def member(self, member_id: str) -> MemberStatus | None:
        return next((m for m in self.members if m.id == member_id), None)

    @classmethod
    def from_json(cls, raw: Any) -> Membership:
        obj = _obj(raw, "membership")
        members = tuple(
            MemberStatus(_str(m, "id"), _str(m, "url"), _opt_str(m, "incarnation") or "",
                         _str(m, "role"), m.get("primary") is True, m.get("reachable") is True,
                         _opt_int(m, "chosen_index"), _opt_int(m, "lag"))  # fmt: skip
            for m in (_obj(item, "member") for item in obj.get("members") or [])
        )
        pending = None
        if obj.get("pending") is not None:
            p = _obj(obj["pending"], "pending change")
            pending = PendingChange(_int(p, "first_slot"), _ids(p.get("voters")),
                                    _ids(p.get("learners")))  # fmt: skip
        return cls(_opt_str(obj, "cluster_id"), _int(obj, "epoch"), members, pending)


@dataclass(frozen=True, slots=True)
class MemberIncarnation:
    id: str
    incarnation: str
    url: str


@dataclass(frozen=True, slots=True)
class Configuration:
    """What a membership change answers: the configuration it made (in effect
    ``ALPHA`` = 64 slots after ``epoch``, the slot it was chosen in)."""

    epoch: int
    voters: tuple[MemberIncarnation, ...]
    learners: tuple[MemberIncarnation, ...]

    @classmethod
    def from_json(cls, raw: Any) -> Configuration:
        obj = _obj(raw, "configuration")

        def members(key: str) -> tuple[MemberIncarnation, ...]:
            items = obj.get(key) or []
            return tuple(MemberIncarnation(_str(m, "id"), _opt_str(m, "incarnation") or "",
                                           _opt_str(m, "url") or "")
                         for m in (_obj(item, "member") for item in items))  # fmt: skip

        return cls(_int(obj, "epoch"), members("voters"), members("learners"))
