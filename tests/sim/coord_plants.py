"""Deliberately broken parts for ``coord_sim``: each must be caught by the checker named in
``test_coord_sim``. The machine's own negative-space assertions (``SharedNames._check``)
would stop a run at the first bad grant, so the broken grant rules switch them off: the
simulated clients' conservative clocks are what must catch them."""

from __future__ import annotations

import msgspec

from paxlock.coordinator.core.coord_commands import (
    AcquireShared,
    Permit,
    Session,
    SessionEnded,
)
from paxlock.coordinator.core.lease_commands import LeaseCommand, Refused, Result
from paxlock.coordinator.core.leases import LeaseMachine
from paxlock.coordinator.core.shared import Key, SharedNames


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
