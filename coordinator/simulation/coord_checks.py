"""The invariants of sessions, semaphores and read/write locks in the lease-level simulation
(``coord_sim``), on top of the lease checkers (``lease_checks``). Every check is evaluated
when what it looks at changes (a grant, a renewal, an applied entry), so after every step:

- ``limit``     at no instant do more than N clients hold a permit of an N-permit semaphore,
                each by its own conservative clock (a hold counts from the grant's reply until
                first send + ttl × (1 − margin); a bound hold until its session's such end);
- ``exclusive`` at no instant does a writer of a rwlock (or the holder of a lease) hold it
                together with any other holder, by the same clocks;
- ``tokens``    in log order, every grant (lease, permit, read/write hold, membership, session)
                has a token above every earlier grant's, cluster-wide;
- ``expiry``    no session, unbound permit or hold, or lease ends by expiry while its client
                still trusts it by its conservative clock (checked where the expiry is applied,
                and again when a renewal's answer extends the trust);
- ``results``   every replica applies the same command with the same result in each slot;
- ``session``   a session's end frees, in its one entry, exactly the holds bound to it (folded
                from the applied results in log order), and the machine keeps none after it;
- ``deposed``   (also) an ``ExpireSession``/``ExpireShared`` first issued at ballot b never
                ends a session or permit a client had renewed under a ballot above b.

A ``Hold`` is shared between the client that trusts it and these checks, so a renewal, a
release or its session's renewal moves its end where both see it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from paxlock.coordinator.core.ballot import Ballot
from paxlock.coordinator.core.coord_commands import (
    AcquireShared,
    ExpireSession,
    ExpireShared,
    Freed,
    JoinGroup,
    Left,
    Member,
    Permit,
    Session,
    SessionEnded,
    SharedExpired,
    SharedMode,
    SharedReleased,
)
from paxlock.coordinator.core.lease_commands import Acquire, Expired, Lease, Release, Released
from paxlock.coordinator.core.messages import Batch
from paxlock.coordinator.core.replica_io import Applied
from paxlock.coordinator.simulation.checkers import Checker
from paxlock.coordinator.simulation.lease_checks import LeaseChecks

KEEP_S = 2.0
"""Holds that ended this long ago can overlap nothing new (TTLs are far shorter)."""

_Bound = tuple[str, str, str, int]
"""(kind, name, holder, token) of a hold bound to a session, as ``Freed`` names it."""


@dataclass(slots=True, eq=False)
class SessionView:
    """A session as its client trusts it (real times)."""

    id: str
    token: int
    ttl_s: float
    start: float
    end: float
    """First send of the last renewal (or the open) + ttl × (1 − margin), by its clock."""
    holds: list[Hold]


@dataclass(slots=True, eq=False)
class Hold:
    """A grant as its client trusts it: valid from ``start`` (the reply) until ``until``."""

    kind: Literal["lease", "semaphore", "rwlock"]
    name: str
    mode: SharedMode
    """A lease's: "write"."""
    holder: str
    token: int
    limit: int
    start: float
    end: float
    """Unbound: first send + ttl × (1 − margin); bound: until released (else infinite)."""
    ttl_s: float
    session: SessionView | None = None

    @property
    def until(self) -> float:
        return self.end if self.session is None else min(self.end, self.session.end)


class CoordChecks(LeaseChecks):
    def __init__(self, checker: Checker, machine_of: Callable[[str], Any],
                 clock: Callable[[], float]) -> None:  # fmt: skip
        """``machine_of(node_id)``: that node's replica's machine now (for ``session``);
        ``clock()``: the simulation's real time."""
        super().__init__(checker, ())
        self.machine_of = machine_of
        self.clock = clock
        self.trusted: dict[object, SessionView | Hold] = {}
        """What clients trust, by session id or (kind, name, token) of an unbound hold."""
        self.expired_at: dict[object, float] = {}
        self.holds: dict[tuple[str, str], list[Hold]] = {}
        self.reported: set[object] = set()
        self.reference: dict[int, list[tuple[object, object, bool]]] = {}
        """Per slot, the (command, result, changed) its first applier got."""
        self.position: dict[tuple[str, int], tuple[int, int]] = {}
        """Per node incarnation, the (slot, index) of the next command it applies."""
        self.folded = 0
        """The log is folded (``tokens``, ``session``) up to this slot."""
        self.log_token = 0
        self.bound: dict[str, set[_Bound]] = {}
        self.session_renewed: dict[object, Ballot] = {}
        """The highest ballot under which a client renewed a session (by id) or an unbound
        permit (by (kind, name, token))."""
        self.sessions_ended = 0
        self.freed_at_end = 0
        self.freed_kinds: dict[str, int] = {}

    # -- the clients' side ---------------------------------------------------------------------

    def on_session(self, session: SessionView) -> None:
        self.trusted[session.id] = session

    def on_hold(self, hold: Hold, now: float) -> None:
        self.holds.setdefault((hold.kind, hold.name), []).append(hold)
        if hold.session is None:
            self.trusted[(hold.kind, hold.name, hold.token)] = hold
        self.overlap_of(hold.kind, hold.name, now)

    def on_hold_renewed(self, hold: Hold, now: float) -> None:
        self._trusted_past_expiry((hold.kind, hold.name, hold.token), hold.until)
        self.overlap_of(hold.kind, hold.name, now)

    def overlap_of(self, kind: str, name: str, now: float) -> None:
        """``limit`` and ``exclusive`` for one name, from ``now`` on (the past was checked
        when it was the future: ends only move later by a renewal, which checks again)."""
        holds = [h for h in self.holds.get((kind, name), ()) if h.until > now - KEEP_S]
        self.holds[(kind, name)] = holds
        live = [h for h in holds if h.until > now and h.until > h.start]
        if kind == "semaphore":
            self._count(name, live, now)
            return
        for i, one in enumerate(live):
            for other in live[i + 1:]:
                if one.mode != "write" and other.mode != "write":
                    continue
                if one.start < other.until and other.start < one.until:
                    self._report("exclusive", one, other,
                                 f"{kind} {name}: {self._show(one)} and {self._show(other)}")

    def _count(self, name: str, live: list[Hold], now: float) -> None:
        """Sweep the instants where a hold starts: at each, count the holds valid then."""
        for at in sorted({max(h.start, now) for h in live}):
            valid = [h for h in live if h.start <= at < h.until]
            limit = min((h.limit for h in valid), default=0)
            if len(valid) > limit:
                first, second = valid[0], valid[-1]
                shown = ", ".join(self._show(h) for h in valid)
                self._report("limit", first, second,
                             f"semaphore {name} (limit {limit}) held {len(valid)} times at "
                             f"{at:.4f}: {shown}")

    def on_session_renewed(self, session: SessionView, now: float) -> None:
        self._trusted_past_expiry(session.id, session.end)
        for hold in session.holds:
            self.overlap_of(hold.kind, hold.name, now)

    def on_renewed_under(self, key: object, ballot: Ballot) -> None:
        self.session_renewed[key] = max(ballot, self.session_renewed.get(key, ballot))

    def _expired(self, key: object) -> None:
        """``expiry``: what just ended by expiry must not be trusted any more."""
        now = self.clock()
        self.expired_at.setdefault(key, now)
        trusted = self.trusted.get(key)
        if trusted is not None:
            self._trusted_past_expiry(key, trusted.end if isinstance(trusted, SessionView)
                                      else trusted.until)  # fmt: skip

    def _trusted_past_expiry(self, key: object, until: float) -> None:
        expired = self.expired_at.get(key)
        if expired is not None and until > expired and ("expiry", key) not in self.reported:
            self.reported.add(("expiry", key))
            self.fail("expiry", f"{key} ended by expiry at {expired:.4f}, but its client "
                                f"trusts it until {until:.4f}")  # fmt: skip

    def _report(self, check: str, one: Hold, other: Hold, detail: str) -> None:
        pair = (min(id(one), id(other)), max(id(one), id(other)))
        if pair not in self.reported:
            self.reported.add(pair)
            self.fail(check, detail)

    @staticmethod
    def _show(hold: Hold) -> str:
        bound = f" in {hold.session.id}" if hold.session is not None else ""
        return (f"{hold.holder} {hold.mode} (token {hold.token}{bound}) valid "
                f"[{hold.start:.4f}, {hold.until:.4f}]")

    # -- the replicas' side --------------------------------------------------------------------

    def on_applied(self, node_id: str, incarnation: int, raw: bytes, applied: Applied) -> None:
        super().on_applied(node_id, incarnation, raw, applied)
        command, result = applied.command, applied.result
        self._compare(node_id, incarnation, applied)
        if isinstance(command, ExpireSession | ExpireShared):
            self._deposed(node_id, raw, command, result)
        if isinstance(result, SessionEnded) and result.expired and applied.changed:
            self._expired(result.id)
        elif isinstance(result, SharedExpired) and applied.changed:
            self._expired((result.kind, result.name, result.token))
        elif isinstance(result, Expired) and applied.changed:
            self._expired(("lease", result.name, result.token))
        if isinstance(result, SessionEnded) and applied.changed:
            left = self.machine_of(node_id).bound(result.id)
            if left:
                self.fail("session", f"{node_id} still holds {left} for {result.id} after "
                                     f"its end at slot {applied.slot}")  # fmt: skip
        self._fold()

    def _compare(self, node_id: str, incarnation: int, applied: Applied) -> None:
        """``results``: the first applier of a slot sets what every other must get."""
        key = (node_id, incarnation)
        slot, index = self.position.get(key, (0, 0))
        if slot != applied.slot:
            slot, index = applied.slot, 0
        self.position[key] = (slot, index + 1)
        got = (applied.command, applied.result, applied.changed)
        reference = self.reference.setdefault(slot, [])
        if index == len(reference):
            reference.append(got)
        elif reference[index] != got:
            self.fail("results", f"{node_id} applied slot {slot}[{index}] as {got[:2]}, "
                                 f"another replica as {reference[index][:2]}")  # fmt: skip

    def _deposed(self, node_id: str, raw: bytes, command: object, result: object) -> None:
        if isinstance(result, SessionEnded) and result.expired:
            key: object = result.id
        elif isinstance(result, SharedExpired):
            key = (result.kind, result.name, result.token)
        else:
            return
        issued = self.first_issue.get(raw)
        renewed = self.session_renewed.get(key)
        if issued is not None and renewed is not None and issued < renewed:
            self.fail("deposed", f"{node_id} applied {command} issued at {issued}, after a "
                                 f"renewal under {renewed}")  # fmt: skip

    def _fold(self) -> None:
        """Advance through the log in slot order, as far as the ground truth and the
        appliers allow: ``tokens`` and ``session``."""
        while True:
            slot = self.folded + 1
            truth = self.checker.first_chosen(slot)
            if truth is None:
                return
            value = truth[1]
            if isinstance(value, Batch):
                entries = self.reference.get(slot)
                if entries is None or len(entries) < len(value.commands):
                    return
                for command, result, changed in entries:
                    self._fold_one(slot, command, result, changed)
            self.folded = slot

    def _fold_one(self, slot: int, command: object, result: object, changed: bool) -> None:
        token: int | None = None
        bound: tuple[str | None, _Bound] | None = None
        if isinstance(command, Acquire) and isinstance(result, Lease) and changed:
            token, bound = result.token, (result.session, ("lease", result.name,
                                                           result.holder, result.token))
        elif isinstance(command, AcquireShared) and isinstance(result, Permit) and changed:
            token, bound = result.token, (result.session, (result.kind, result.name,
                                                           result.holder, result.token))
        elif isinstance(command, JoinGroup) and isinstance(result, Member) and changed:
            token, bound = result.token, (result.session, ("member", result.group,
                                                           result.member, result.token))
        elif isinstance(result, Session) and changed:
            token = result.token
            self.bound.setdefault(result.id, set())
        if token is not None:
            if token <= self.log_token:
                self.fail("tokens", f"slot {slot}: {result} has token {token}, not above "
                                    f"{self.log_token}")  # fmt: skip
            self.log_token = max(self.log_token, token)
        if bound is not None and bound[0] is not None:
            self.bound.setdefault(bound[0], set()).add(bound[1])
        ended = self._ended(command, result)
        if ended is not None:
            for holds in self.bound.values():
                holds.discard(ended)
        if isinstance(result, SessionEnded) and changed:
            expected = self.bound.pop(result.id, set())
            freed = {self._key(f) for f in result.freed}
            self.sessions_ended += 1
            self.freed_at_end += len(freed)
            for f in result.freed:
                self.freed_kinds[f.kind] = self.freed_kinds.get(f.kind, 0) + 1
            if freed != expected:
                self.fail("session", f"slot {slot}: the end of {result.id} freed "
                                     f"{sorted(freed)}, but bound were {sorted(expected)}")

    @staticmethod
    def _key(freed: Freed) -> _Bound:
        return (freed.kind, freed.name, freed.holder, freed.token)

    @staticmethod
    def _ended(command: object, result: object) -> _Bound | None:
        """The bound hold a result ends on its own (not by a session's end)."""
        if isinstance(command, Release) and isinstance(result, Released):
            return ("lease", result.name, command.holder, result.token)
        match result:
            case SharedReleased(kind=kind, name=name, holder=holder, token=token):
                return (kind, name, holder, token)
            case SharedExpired(kind=kind, name=name, holder=holder, token=token):
                return (kind, name, holder, token)
            case Expired(name=name, holder=holder, token=token):
                return ("lease", name, holder, token)
            case Left(group=group, member=member, token=token):
                return ("member", group, member, token)
        return None
