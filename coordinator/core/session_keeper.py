"""The primary's side of sessions (DESIGN.md §7): one expiry timer per session, restarted at
the full ttl when a keeper takes office and when a confirmation round renews it.

A part of ``LeaseKeeper``, sharing its ``Timers`` (so its heap). Holds bound to a session have
no timer of their own: renewing one renews the session, and the session's end (one log
entry) frees them all; handing the freed names on is the ``LeaseKeeper``'s part.
"""

from __future__ import annotations

from collections.abc import Callable

from paxlock.coordinator.core.ballot import Ballot
from paxlock.coordinator.core.coord_commands import (
    CloseSession,
    ExpireSession,
    OpenSession,
    Session,
    SessionEnded,
)
from paxlock.coordinator.core.keeper_timers import Key, Kind, Timers
from paxlock.coordinator.core.lease_commands import Refused, Result
from paxlock.coordinator.core.leases import LeaseMachine


class SessionKeeper:
    def __init__(self, machine: Callable[[], LeaseMachine], clock: Timers) -> None:
        """``machine``: the applied machine of the keeper in office."""
        self._machine = machine
        self._clock = clock

    def take_office(self, now: float) -> list[tuple[Key, int, float]]:
        """Every session's timer, at its full ttl (the old primary's timers are unknown: a
        session may outlive its ttl, never end early)."""
        return [((Kind.SESSION, session.id), session.token, now + session.ttl_s)
                for session in self._machine().sessions()]  # fmt: skip

    def applied(self, command: OpenSession | CloseSession | ExpireSession, result: Result,
                now: float) -> SessionEnded | None:  # fmt: skip
        """Start the timer of a session opened, stop that of one ended; returns the end, whose
        freed holds the caller hands on."""
        if isinstance(result, Session):
            timer = self._clock.get(Kind.SESSION, result.id)
            current = self._machine().session(result.id)
            if current is not None and current.token == result.token \
                    and (timer is None or timer.token != result.token):  # a grant, not a replay
                self._clock.start(Kind.SESSION, result.id, result.token, now + result.ttl_s)
            return None
        if isinstance(result, SessionEnded):
            timer = self._clock.get(Kind.SESSION, result.id)
            if timer is not None and timer.token == result.token:
                self._clock.stop(Kind.SESSION, result.id)
            return result  # (a replayed close's holds are handed on again: a no-op)
        return None

    def decision(self, ident: str, token: int, ballot: Ballot) -> ExpireSession:
        return ExpireSession(ident, token, ballot)

    def running(self, ident: str) -> bool:
        """The session exists and its timer runs (its expiry not yet proposed)."""
        session = self._machine().session(ident)
        return session is not None and self._clock.running(Kind.SESSION, ident, session.token)

    def left(self, ident: str, now: float) -> float | None:
        """Seconds left of session ``ident`` by its timer (None: no such session)."""
        return self._clock.left(Kind.SESSION, ident, now)

    def renew_refusal(self, ident: str, holder: str, principal: str) -> Refused | None:
        """Why session ``ident`` cannot be renewed by ``holder`` of ``principal`` now."""
        session = self._machine().session(ident)
        if session is None:
            return Refused("not_found", ident, message=f"no session {ident}")
        if session.holder != holder:
            return Refused("not_holder", ident, session.holder, session.token)
        if session.owner != principal:
            return Refused("forbidden", ident,
                           message=f"the session {ident} belongs to another principal")
        if not self.running(ident):
            return Refused("not_found", ident, message=f"the session {ident} is expiring")
        return None

    def restart(self, ident: str, now: float, token: int | None = None) -> Session | None:
        """A confirmation round renewed session ``ident`` (grant ``token``, if given): its
        timer starts again at the full ttl. None when it ended or started expiring meanwhile."""
        session = self._machine().session(ident)
        if session is None or token not in (None, session.token) or not self.running(ident):
            return None
        self._clock.start(Kind.SESSION, ident, session.token, now + session.ttl_s)
        return session
