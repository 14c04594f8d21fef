"""Deliberately broken parts for ``coord_sim``: each must be caught by the checker named in
``test_coord_sim``. The machine's own negative-space assertions (``SharedNames._check``)
would stop a run at the first bad grant, so the broken grant rules switch them off: the
simulated clients' conservative clocks are what must catch them."""

from __future__ import annotations

import msgspec

from paxlock.coordinator.core.coord_commands import (
    AcquireShared,
    CloseSession,
    ExpireSession,
    OpenSession,
    Permit,
    Session,
    SessionEnded,
)
from paxlock.coordinator.core.keeper import LeaseKeeper
from paxlock.coordinator.core.keeper_timers import Key as TimerKey
from paxlock.coordinator.core.keeper_timers import Kind
from paxlock.coordinator.core.lease_commands import LeaseCommand, Refused, Result
from paxlock.coordinator.core.leases import LeaseMachine
from paxlock.coordinator.core.session_keeper import SessionKeeper
from paxlock.coordinator.core.shared import Key, SharedNames
from paxlock.coordinator.core.shared_keeper import SharedKeeper
from paxlock.coordinator.simulation.lease_sim import sim_keeper


class _UncheckedNames(SharedNames):
    def _check(self, key: Key) -> None:
        """(Negative space off: the plants below break it on purpose.)"""


class _NoLimit(_UncheckedNames):
    def refusal(self, command: AcquireShared) -> Refused | None:
        """One permit more than the limit: a full semaphore still grants a newcomer."""
        refused = super().refusal(command)
        entry = self._names.get((command.kind, command.name))
        if refused is None or refused.code != "held" or entry is None \
                or command.kind != "semaphore" or command.limit != entry.limit:  # fmt: skip
            return refused
        if any(p.holder == command.holder for p in entry.holds.values()):
            return refused  # not reentrant still
        return None if len(entry.holds) + len(entry.blocks) <= entry.limit else refused


class _ReadsBesideWrites(_UncheckedNames):
    def refusal(self, command: AcquireShared) -> Refused | None:
        """A read is granted whatever holds the rwlock (a writer too)."""
        refused = super().refusal(command)
        entry = self._names.get((command.kind, command.name))
        if refused is None or command.kind != "rwlock" or command.mode != "read" \
                or entry is None:  # fmt: skip
            return refused
        if any(p.holder == command.holder for p in entry.holds.values()):
            return refused
        return None if refused.code == "held" else refused


class IgnoresSemaphoreLimit(LeaseMachine):
    def __init__(self, **kwargs: int) -> None:
        super().__init__(**kwargs)
        self._shared = _NoLimit(self._ledger, self._sessions)


class ReadBesideWrite(LeaseMachine):
    def __init__(self, **kwargs: int) -> None:
        super().__init__(**kwargs)
        self._shared = _ReadsBesideWrites(self._ledger, self._sessions)


class ReusesPermitTokens(LeaseMachine):
    """Answers permits (and sessions) with a token that does not increase."""

    def apply(self, command: LeaseCommand) -> Result:
        result = super().apply(command)
        if isinstance(result, Permit | Session):
            return msgspec.structs.replace(result, token=1)
        return result


class SessionEndFreesOne(LeaseMachine):
    """A session's end frees every bound hold but reports only the first (so nobody hands the
    others on: their waiters wait on a free name)."""

    def apply(self, command: LeaseCommand) -> Result:
        result = super().apply(command)
        if isinstance(result, SessionEnded) and len(result.freed) > 1:
            return msgspec.structs.replace(result, freed=result.freed[:1])
        return result


class RestoresAheadRevision(LeaseMachine):
    """Restores a snapshot one revision ahead: a member that restarted or caught up by
    snapshot hands out other tokens than its peers for the same entries."""

    @classmethod
    def restore(cls, data: bytes) -> LeaseMachine:
        machine = super().restore(data)
        machine._ledger.revision += 1
        return machine


class _HalfTtlSessions(SessionKeeper):
    """Starts and restarts every session timer at half the session's ttl."""

    def applied(self, command: OpenSession | CloseSession | ExpireSession, result: Result,
                now: float) -> SessionEnded | None:  # fmt: skip
        ended = super().applied(command, result, now)
        if isinstance(result, Session) and self._clock.running(Kind.SESSION, result.id,
                                                               result.token):  # fmt: skip
            self._clock.start(Kind.SESSION, result.id, result.token, now + result.ttl_s / 2)
        return ended

    def restart(self, ident: str, now: float, token: int | None = None) -> Session | None:
        session = super().restart(ident, now, token)
        if session is not None:
            self._clock.start(Kind.SESSION, ident, session.token, now + session.ttl_s / 2)
        return session


class _ForgetfulSessions(SessionKeeper):
    """Taking office, every session's timer runs out at once (not restarted at the full ttl:
    as if the old primary's deadlines still held)."""

    def take_office(self, now: float) -> list[tuple[TimerKey, int, float]]:
        return [(key, token, now) for key, token, _ in super().take_office(now)]


class _SessionKeeperPlant(LeaseKeeper):
    sessions_class: type[SessionKeeper] = SessionKeeper

    def _reset(self) -> None:
        super()._reset()
        self._sessions = self.sessions_class(lambda: self.machine, self._clock)
        self._shared = SharedKeeper(lambda: self.machine, self._clock, self._waiters,
                                    self._sessions.left)  # fmt: skip


class EarlySessionExpiry(_SessionKeeperPlant):
    sessions_class = _HalfTtlSessions

    def __init__(self) -> None:
        super().__init__(sim_keeper().config)


class ForgetsSessionTimers(_SessionKeeperPlant):
    sessions_class = _ForgetfulSessions

    def __init__(self) -> None:
        super().__init__(sim_keeper().config)
