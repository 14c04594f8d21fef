"""The workload of ``coord_sim``: clients that open sessions and renew them (or go silent),
and acquire, renew and release semaphore permits, read/write holds and leases — each bound
to the client's session or carrying its own ttl — with waits, over the lease simulation's
delayed network, like the SDK.

A client trusts by its own clock, conservatively: an unbound hold from the grant's reply
until its acquire's (or last renewal's) *first* send + ttl × (1 − margin); a session the
same way; a bound hold as long as the session it is bound to. It has one request in flight
at a time, retries an unknown outcome with the same ``request_id`` (possibly elsewhere),
and reports what it trusts to ``CoordChecks`` as ``Hold`` and ``SessionView`` objects.

A *silent* client stops sending anything for a while (a hung process): its session and
bound holds run out by its own clock, and the primary's session timer must free them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from paxlock.coordinator.core.ballot import Ballot
from paxlock.coordinator.core.coord_commands import (
    AcquireShared,
    CloseSession,
    CreateGroup,
    Group,
    JoinGroup,
    LeaveGroup,
    Member,
    OpenSession,
    Permit,
    ReleaseShared,
    Session,
    SessionEnded,
    SharedMode,
    SharedReleased,
)
from paxlock.coordinator.core.keeper_effects import (
    Reply,
    RequestKey,
    TooMany,
)
from paxlock.coordinator.core.lease_commands import Acquire, Lease, Refused, Release, Released
from paxlock.coordinator.core.replica_io import (
    AcquireOp,
    CommandOp,
    ReleaseOp,
    RenewOp,
    RenewSessionOp,
    RenewSharedOp,
)
from paxlock.coordinator.simulation.coord_checks import CoordChecks, Hold, SessionView
from paxlock.coordinator.simulation.lease_clients import (
    MARGIN,
    REQUEST_TIMEOUT_S,
    TTLS_S,
    LeaseWorld,
    Requests,
    _Clock,
    skewed_clock,
)

SEMAPHORES = {"pool": 2, "licences": 3}
"""Semaphore names and the limit every client asks for."""
RWLOCKS = ("cache", "index")
LEASES = ("alpha", "group:fleet")
"""A plain lease, and the leader election of group ``GROUP`` (a lease on a reserved name,
refused ``not_found`` until the group exists)."""
GROUP = "fleet"
JOIN_P = 0.3
"""The chance, per move of a client with a session it has not joined ``GROUP`` under, that
it joins (bound to that session; the first joiner creates the group)."""
LEAVE_P = 0.02
NAMES = {"semaphore": tuple(SEMAPHORES), "rwlock": RWLOCKS, "lease": LEASES}
KINDS: tuple[Literal["semaphore", "rwlock", "lease"], ...] = (
    "semaphore", "semaphore", "rwlock", "rwlock", "lease")
RW_MODES: tuple[SharedMode, ...] = ("read", "read", "write")
SESSION_TTLS_S = (0.1, 0.2, 0.4)
WAITS_S = (0.0, 0.0, 0.05, 0.15)
HOLDS_MAX = 3
"""Holds a client keeps at once (so a session's end frees several)."""
SILENT_P = 0.03
"""The chance, per move of a client with a session, that it goes silent."""
BOUND_P = 0.8
"""The chance that an acquire made while a session is open binds to it."""
OPEN_P = 0.5
"""The chance, per move of a client without a session, that it opens one."""
CLOSE_P = 0.03
"""The chance, per move of a client with a session, that it closes it."""
HOLD_S = (0.05, 0.6)
BOUND_HOLD_S = (0.1, 1.2)
"""How long a client means to keep an unbound and a bound hold (seconds, uniform)."""


@dataclass(slots=True)
class _Request:
    client: int
    op: Any
    first_sent_local: float
    session: SessionView | None = None
    """The session the request names (open: the view it will fill)."""
    wait_s: float = 0.0


@dataclass(slots=True)
class _Client:
    holder: str
    clock: _Clock
    hint: str | None = None
    request: RequestKey | None = None
    session: SessionView | None = None
    holds: list[tuple[Hold, float]] = field(default_factory=list)
    """What it trusts, each with when it means to release it (real time)."""
    silent_until: float = 0.0
    member: SessionView | None = None
    """The session its membership of ``GROUP`` is bound to (it ends with it)."""


class CoordClients(Requests):
    """Same events and interface as ``lease_clients.LeaseClients``."""

    checks: CoordChecks

    def __init__(self, world: LeaseWorld, checks: CoordChecks, count: int) -> None:
        super().__init__(world)
        self.checks = checks
        self.clients = [_Client(f"c{i}", skewed_clock(world.lease_rng)) for i in range(count)]
        self.grants = self.renewals = 0
        self.bound_grants = self.sessions = self.session_renewals = self.silences = 0
        self.refused: dict[str, int] = {}
        self.group_made = False
        self.joins = 0

    def start(self) -> None:
        for index in range(len(self.clients)):
            self.world._at(0.03 * index, ("lc-act", index))

    # -- sending -------------------------------------------------------------------------------

    def act(self, index: int) -> None:
        world, draw = self.world, self.world.lease_rng
        now = world.now
        client = self.clients[index]
        world._at(now + world.rng.uniform(0.01, 0.04), ("lc-act", index))
        if client.request is not None or now < client.silent_until:
            return
        client.holds = [(h, at) for h, at in client.holds if h.until > now]
        session = client.session
        if session is not None and session.end <= now:
            client.session = session = None  # lost by its own clock
        if session is not None and draw.random() < SILENT_P:
            self.silences += 1
            client.silent_until = now + draw.uniform(1.0, 3.0) * session.ttl_s
            return
        if session is not None and now >= session.end - session.ttl_s * (1 - MARGIN) / 2:
            self._send_op(index, RenewSessionOp(session.id, client.holder), session)
            return
        for hold, release_at in client.holds:
            if now >= release_at:
                self._release(index, hold)
                return
            if hold.session is None and now >= hold.end - hold.ttl_s * (1 - MARGIN) / 2:
                if hold.kind == "lease":
                    self._send_op(index, RenewOp(hold.name, client.holder, hold.token))
                else:
                    self._send_op(index, RenewSharedOp(hold.kind, hold.name, client.holder,
                                                    hold.token))  # fmt: skip
                return
        if session is None and draw.random() < OPEN_P:
            view = SessionView("", 0, draw.choice(SESSION_TTLS_S), now, now, [])
            opening = OpenSession(client.holder, view.ttl_s, request_id=self._request_id())
            self._send_op(index, CommandOp(opening), view)
        elif session is not None and draw.random() < CLOSE_P:
            session.end = min(session.end, now)  # its holds are trusted no more
            client.session = None
            command = CloseSession(session.id, client.holder, request_id=self._request_id())
            self._send_op(index, CommandOp(command), session)
        elif session is not None and client.member is not session and draw.random() < JOIN_P:
            self._join(index, client, session)
        elif session is not None and client.member is session and draw.random() < LEAVE_P:
            leave = LeaveGroup(GROUP, client.holder, client.holder, self._request_id())
            self._send_op(index, CommandOp(leave), session)
        elif len(client.holds) < HOLDS_MAX:
            self._acquire(index, client)

    def _join(self, index: int, client: _Client, session: SessionView) -> None:
        if not self.group_made:
            create = CreateGroup(GROUP, client.holder, self._request_id())
            self._send_op(index, CommandOp(create))
            return
        join = JoinGroup(GROUP, client.holder, client.holder, client.holder.encode(),
                         session.id, self._request_id())  # fmt: skip
        self._send_op(index, CommandOp(join), session)

    def _acquire(self, index: int, client: _Client) -> None:
        draw = self.world.lease_rng
        kind = draw.choice(KINDS)
        held = {(h.kind, h.name) for h, _ in client.holds}
        free = [n for n in NAMES[kind] if (kind, n) not in held]
        if not free:
            return
        name = draw.choice(free)
        session = client.session if draw.random() < BOUND_P else None
        ttl = 0.0 if session is not None else draw.choice(TTLS_S)
        lock_delay = draw.choice((0.0, 0.0, 0.05))
        wait = draw.choice(WAITS_S)
        sid = session.id if session is not None else None
        if kind == "lease":
            lease = Acquire(name, client.holder, ttl, lock_delay_s=lock_delay,
                            request_id=self._request_id(), session=sid)  # fmt: skip
            self._send_op(index, AcquireOp(lease, wait), session, wait)
            return
        mode: SharedMode = "permit" if kind == "semaphore" else draw.choice(RW_MODES)
        limit = SEMAPHORES.get(name, 0)
        command = AcquireShared(kind, name, client.holder, mode, limit, ttl, sid, lock_delay,
                                request_id=self._request_id())  # fmt: skip
        self._send_op(index, CommandOp(command, wait), session, wait)

    def _release(self, index: int, hold: Hold) -> None:
        client = self.clients[index]
        hold.end = min(hold.end, self.world.now)  # trusted no more from now on
        client.holds = [(h, at) for h, at in client.holds if h is not hold]
        if hold.kind == "lease":
            self._send_op(index, ReleaseOp(Release(hold.name, client.holder, hold.token,
                                                self._request_id())))  # fmt: skip
        else:
            command = ReleaseShared(hold.kind, hold.name, client.holder, hold.token,
                                    request_id=self._request_id())  # fmt: skip
            self._send_op(index, CommandOp(command))

    def _send_op(self, index: int, op: Any, session: SessionView | None = None,
                 wait_s: float = 0.0) -> None:  # fmt: skip
        local = self.clients[index].clock.local(self.world.now)
        self._send(_Request(index, op, local, session, wait_s))

    def _timeout_s(self, request: _Request) -> float:
        return REQUEST_TIMEOUT_S + request.wait_s

    def _gives_up(self, request: _Request) -> bool:
        """A renewal is retried only while what it renews is still trusted."""
        renewing = self._renewing(request)
        return renewing is not None and renewing <= self.world.now

    def _renewing(self, request: _Request) -> float | None:
        """Until when what a renewal renews is trusted (None: not a renewal)."""
        op = request.op
        if isinstance(op, RenewSessionOp):
            return request.session.end if request.session is not None else 0.0
        if isinstance(op, RenewOp | RenewSharedOp):
            hold = self._hold(request.client, op.token)
            return hold.until if hold is not None else 0.0
        return None

    def _hold(self, index: int, token: int) -> Hold | None:
        return next((h for h, _ in self.clients[index].holds if h.token == token), None)

    # -- receiving -----------------------------------------------------------------------------

    @staticmethod
    def _renews(op: Any, outcome: object) -> bool:
        return (isinstance(op, RenewOp) and isinstance(outcome, Lease)
                or isinstance(op, RenewSessionOp) and isinstance(outcome, Session)
                or isinstance(op, RenewSharedOp) and isinstance(outcome, Permit))  # fmt: skip

    def reply_arrives(self, key: RequestKey, reply: Reply, node_id: str,
                      ballot: Ballot) -> None:  # fmt: skip
        request = self._answer(key, reply, node_id)
        if request is None:
            return
        client = self.clients[request.client]
        client.hint = node_id
        outcome = reply.outcome
        if isinstance(outcome, Refused | TooMany):
            code = outcome.code if isinstance(outcome, Refused) else "too_many"
            self.refused[code] = self.refused.get(code, 0) + 1
        self._answered(request, client, outcome, ballot)

    def _answered(self, request: _Request, client: _Client, outcome: object,
                  ballot: Ballot) -> None:  # fmt: skip
        now = self.world.now
        op = request.op
        sent = client.clock.real(request.first_sent_local)
        command = op.command if isinstance(op, CommandOp | AcquireOp) else None
        if isinstance(command, OpenSession) and isinstance(outcome, Session):
            view = request.session
            assert view is not None
            view.id, view.token, view.start = outcome.id, outcome.token, now
            view.end = sent + self._trusted(view.ttl_s, client)
            if view.end > now and client.session is None:
                self.sessions += 1
                client.session = view
                self.checks.on_session(view)
        elif isinstance(op, RenewSessionOp) and isinstance(outcome, Session):
            view = request.session
            assert view is not None
            self.session_renewals += 1
            self.checks.on_renewed_under(view.id, ballot)
            until = sent + self._trusted(view.ttl_s, client)
            if until > view.end and client.session is view:
                view.end = until
                self.checks.on_session_renewed(view, now)
        elif isinstance(op, RenewSessionOp) and client.session is request.session:
            client.session = None  # refused: renew no more (trusted until its end still)
        elif isinstance(command, Acquire) and isinstance(outcome, Lease):
            self._granted(request, client, "lease", outcome.name, "write", outcome.holder,
                          outcome.token, 1, command.ttl_s)  # fmt: skip
        elif isinstance(command, AcquireShared) and isinstance(outcome, Permit):
            self._granted(request, client, outcome.kind, outcome.name, outcome.mode,
                          outcome.holder, outcome.token, command.limit, command.ttl_s)  # fmt: skip
        elif isinstance(op, RenewOp | RenewSharedOp):
            self._renewed(request, client, outcome, ballot)
        elif isinstance(command, CreateGroup | JoinGroup | LeaveGroup):
            self._grouped(request, client, outcome)
        elif isinstance(op, ReleaseOp) or isinstance(command, ReleaseShared | CloseSession):
            if not isinstance(outcome, Released | SharedReleased | SessionEnded | Refused):
                self.checks.fail("release", f"unexpected answer to {op}: {outcome}")

    def _grouped(self, request: _Request, client: _Client, outcome: object) -> None:
        op = request.op
        assert isinstance(op, CommandOp)
        exists = isinstance(outcome, Refused) and outcome.code == "exists"
        if isinstance(op.command, CreateGroup) and (isinstance(outcome, Group) or exists):
            self.group_made = True
        elif isinstance(op.command, JoinGroup) and (isinstance(outcome, Member) or exists):
            self.joins += isinstance(outcome, Member)
            if request.session is client.session:
                client.member = request.session
        elif isinstance(op.command, LeaveGroup) and client.member is request.session:
            client.member = None

    def _granted(self, request: _Request, client: _Client,
                 kind: Literal["lease", "semaphore", "rwlock"], name: str, mode: SharedMode,
                 holder: str, token: int, limit: int, ttl_s: float) -> None:  # fmt: skip
        now, draw = self.world.now, self.world.lease_rng
        if holder != client.holder:
            return
        session = request.session
        if session is not None:
            if session is not client.session or session.end <= now:
                return  # its session is lost by the client's clock: never used
            hold = Hold(kind, name, mode, holder, token, limit, now, math.inf,
                        session.ttl_s, session)  # fmt: skip
            session.holds.append(hold)
            self.bound_grants += 1
        else:
            sent = client.clock.real(request.first_sent_local)
            hold = Hold(kind, name, mode, holder, token, limit, now,
                        sent + self._trusted(ttl_s, client), ttl_s)  # fmt: skip
            if hold.end <= now:
                return
        self.grants += 1
        client.holds.append((hold, now + draw.uniform(*(BOUND_HOLD_S if session else HOLD_S))))
        self.checks.on_hold(hold, now)

    def _renewed(self, request: _Request, client: _Client, outcome: object,
                 ballot: Ballot) -> None:  # fmt: skip
        op = request.op
        hold = self._hold(request.client, op.token)
        if hold is None or isinstance(outcome, Refused):
            return
        if isinstance(outcome, Lease):
            self.checks.on_renewed(outcome.name, outcome.token, ballot)
        elif isinstance(outcome, Permit):
            self.checks.on_renewed_under((outcome.kind, outcome.name, outcome.token), ballot)
        else:
            return
        self.renewals += 1
        sent = client.clock.real(request.first_sent_local)
        until = sent + self._trusted(hold.ttl_s, client)
        if until > hold.end:
            hold.end = until
            self.checks.on_hold_renewed(hold, self.world.now)

    @staticmethod
    def _trusted(ttl_s: float, client: _Client) -> float:
        """Real seconds from a first send that ``ttl_s`` lets the client trust."""
        return ttl_s * (1 - MARGIN) / client.clock.rate
