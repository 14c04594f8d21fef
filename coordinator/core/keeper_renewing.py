"""The renewals and expiry answers of the primary's keeper (DESIGN.md §3 and §7), apart from
``keeper`` to keep it small: a mixin of ``LeaseKeeper``, which owns every attribute declared
here.

A renewal writes nothing to the log. It is checked when it arrives (holder, token, owner, and
that its timer still runs) and answered once a confirmation round that started after it
confirmed this node still primary; that round restarts the timer at the full ttl. Renewing a
hold bound to a session renews the session: one round keeps everything bound to it alive.
"""

from __future__ import annotations

from paxlock.coordinator.core.coord_commands import (
    AcquireShared,
    Permit,
    Session,
    SharedKind,
)
from paxlock.coordinator.core.keeper_effects import (
    KeeperReady,
    Propose,
    Reply,
    RequestKey,
    Unavailable,
)
from paxlock.coordinator.core.keeper_timers import Kind, Timer, Timers
from paxlock.coordinator.core.lease_commands import (
    Acquire,
    LeaseCommand,
    Proclaim,
    Refused,
    Release,
    Result,
)
from paxlock.coordinator.core.leases import LeaseMachine
from paxlock.coordinator.core.renewals import Renewal, Renewals
from paxlock.coordinator.core.session_keeper import SessionKeeper
from paxlock.coordinator.core.shared_keeper import SharedKeeper


class Renewing:
    _renewals: Renewals
    _sessions: SessionKeeper
    _shared: SharedKeeper
    _clock: Timers
    _timers: dict[tuple[int, str | int], Timer]

    @property
    def machine(self) -> LeaseMachine:
        raise NotImplementedError

    def _start(self, kind: int, ident: str | int, token: int, deadline: float) -> None:
        raise NotImplementedError

    def _ready(self, proposals: list[Propose] | None = None,
               replies: list[Reply] | None = None) -> KeeperReady:  # fmt: skip
        raise NotImplementedError

    def renew(self, name: str, holder: str, token: int, key: RequestKey, now: float,
              principal: str = "") -> KeeperReady:  # fmt: skip
        """Every answer waits for one confirmation round, a refusal too: a primary deposed
        unawares knows neither the grants nor the renewals made since, and must not refuse a
        current grant ``not_holder`` from its stale machine (the fault tests' linearizability
        checker caught one doing so). ``forbidden`` alone is answered at once: a grant's
        owner never changes, so it is true of ``token`` whatever came after."""
        if self._renewable(name, holder, token) \
                and not self._renewable(name, holder, token, principal):  # fmt: skip
            return self._ready(replies=[Reply(key, self._forbidden(name))])
        return self._wait_for_round(key, name, holder, token, "lease", principal)

    def _forbidden(self, name: str) -> Refused:
        return Refused("forbidden", name,
                       message=f"the lease on {name} belongs to another principal")

    def renew_session(self, ident: str, holder: str, key: RequestKey, now: float,
                      principal: str = "") -> KeeperReady:  # fmt: skip
        """A session's renewal, answered after one confirmation round (no log write) with the
        ``Session``; it keeps every hold bound to it alive. Another holder or principal is
        refused at once (a session's are fixed); a session missing or expiring here is
        refused only once the round confirms it (as a lease's renewal)."""
        refused = self._sessions.renew_refusal(ident, holder, principal)
        if refused is not None and refused.code in ("not_holder", "forbidden"):
            return self._ready(replies=[Reply(key, refused)])
        session = self.machine.session(ident)
        token = session.token if session is not None else 0  # 0: none known when asked
        return self._wait_for_round(key, ident, holder, token, "session", principal)

    def renew_shared(self, kind: SharedKind, name: str, holder: str, token: int,
                     key: RequestKey, now: float, principal: str = "") -> KeeperReady:  # fmt: skip
        """A permit's (or read/write hold's) renewal, like a lease's; a bound one renews its
        session."""
        refused = self._shared.renew_refusal(kind, name, holder, token, principal)
        if refused is not None and refused.code == "forbidden":  # the rest: after the round
            return self._ready(replies=[Reply(key, refused)])
        return self._wait_for_round(key, name, holder, token, kind, principal)

    def _wait_for_round(self, key: RequestKey, name: str, holder: str, token: int,
                        kind: str, principal: str) -> KeeperReady:  # fmt: skip
        if not self._renewals.add(key, name, holder, token, kind, principal):
            return self._ready(replies=[Reply(key, Unavailable("too many renewals"))])
        return self._ready()

    def expires_in(self, name: str, now: float) -> float | None:
        """Seconds left of the lease on ``name`` (or of its lock-delay; of its session when it
        is bound), None if neither."""
        timer = self._timers.get((Kind.EXPIRE, name)) or self._timers.get((Kind.UNBLOCK, name))
        if timer is None:
            lease = self.machine.get(name)
            if lease is not None and lease.session is not None:
                return self._sessions.left(lease.session, now)
        return None if timer is None else max(0.0, timer.deadline - now)

    def session_expires_in(self, ident: str, now: float) -> float | None:
        """Seconds left of session ``ident`` by its timer, None if there is no such session."""
        return self._sessions.left(ident, now)

    def shared_expires_in(self, kind: SharedKind, name: str, holder: str, now: float
                          ) -> float | None:  # fmt: skip
        """Seconds left of ``holder``'s hold on a shared name (its session's when bound)."""
        return self._shared.expires_in(kind, name, holder, now)

    def reply_expires_in(self, command: LeaseCommand, result: Result, now: float
                         ) -> float | None:  # fmt: skip
        """The ``expires_in`` of the reply carrying ``result``, the applied result of a
        client's ``command``: seconds left of the grant (or session) it names."""
        if isinstance(command, Acquire | Release | Proclaim):
            return self.expires_in(command.name, now)
        if isinstance(result, Session):
            return self._sessions.left(result.id, now) if self.machine.session(result.id) \
                is not None else 0.0  # fmt: skip
        if isinstance(result, Permit):
            return self._shared.reply_expires_in(result, now)
        if isinstance(result, Refused) and result.code == "held" \
                and isinstance(command, AcquireShared) and result.holder is not None:  # fmt: skip
            return self._shared.expires_in(command.kind, command.name, result.holder, now)
        return None

    # -- confirmation rounds ----------------------------------------------------------------

    def needs_confirmation(self) -> bool:
        return self._renewals.needs_round()

    def start_round(self, now: float) -> int:
        return self._renewals.start_round(now)

    def on_round_failed(self, round_id: int) -> None:
        self._renewals.round_failed(round_id)

    def on_confirmed(self, round_id: int, now: float) -> KeeperReady:
        """This node was still primary after round ``round_id`` started: every renewal that
        arrived before restarts its timer at the full TTL."""
        replies = [self._renewed(renewal, now) for renewal in self._renewals.served_by(round_id)]
        return self._ready(replies=replies)

    def _renewed(self, renewal: Renewal, now: float) -> Reply:
        """Restart what ``renewal`` renews (a bound grant: its session) and answer it."""
        name, holder, token, key = renewal.name, renewal.holder, renewal.token, renewal.key
        if renewal.kind == "session":
            refused = self._sessions.renew_refusal(name, holder, renewal.principal)
            if refused is not None and refused.code in ("not_holder", "forbidden"):
                return Reply(key, refused)  # a session learned since it was asked
            session = self._sessions.restart(name, now, token or None)
            if session is None:
                return Reply(key, Refused("not_found", name, message=f"no session {name}"))
            return Reply(key, session, session.ttl_s)
        if renewal.kind == "lease":
            lease = self.machine.get(name)
            if lease is None or not self._renewable(name, holder, token):
                return Reply(key, self._not_holder(name))
            if not self._renewable(name, holder, token, renewal.principal):
                return Reply(key, self._forbidden(name))
            if lease.session is None:
                self._start(Kind.EXPIRE, lease.name, lease.token, now + lease.ttl_s)
                return Reply(key, lease, lease.ttl_s)
            session = self._sessions.restart(lease.session, now)
            return Reply(key, lease, None if session is None else session.ttl_s)
        kind: SharedKind = "semaphore" if renewal.kind == "semaphore" else "rwlock"
        refused = self._shared.renew_refusal(kind, name, holder, token, renewal.principal)
        if refused is not None and refused.code == "forbidden":
            return Reply(key, refused)  # a hold learned since it was asked
        hold = self._shared.hold(kind, name, holder)
        if hold is not None and hold.token == token and hold.session is not None:
            session = self._sessions.restart(hold.session, now)
            if session is not None:
                return Reply(key, hold, session.ttl_s)
        elif self._shared.restart(kind, name, holder, token, now) is not None:
            assert hold is not None
            return Reply(key, hold, hold.ttl_s)
        return Reply(key, Refused("not_holder", name,
                                  message=f"{holder} holds no {kind} {name} under token {token}"))

    def _renewable(self, name: str, holder: str, token: int, principal: str | None = None
                   ) -> bool:  # fmt: skip
        """Holder and token name the current grant, whose timer (a bound lease: its
        session's) runs; with ``principal``, also owned by it."""
        lease = self.machine.get(name)
        if lease is None or lease.holder != holder or lease.token != token \
                or (principal is not None and lease.owner != principal):  # fmt: skip
            return False
        if lease.session is not None:
            return self._sessions.running(lease.session)
        # Not renewable once its Expire is on the way to the log.
        return self._clock.running(Kind.EXPIRE, name, token)

    def _not_holder(self, name: str) -> Refused:
        lease = self.machine.get(name)
        if lease is None:
            return Refused("not_holder", name)
        timer = self._timers.get((Kind.EXPIRE, name))
        if timer is not None and timer.token == lease.token and timer.proposed:
            # Its Expire is on the way to the log: the grant is over, though not yet applied.
            # Naming it as the current grant would contradict the refusal.
            return Refused("not_holder", name, message=f"the lease on {name} is expiring")
        if lease.session is not None and not self._sessions.running(lease.session):
            return Refused("not_holder", name, message=f"the lease on {name} is ending with "
                           f"its session {lease.session}")  # fmt: skip
        return Refused("not_holder", name, lease.holder, lease.token)
