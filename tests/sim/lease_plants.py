"""Deliberately broken parts for the lease simulation: each must be caught by a checker.

Two of them are the code as it stood before office entries (commit a42051a), planted into
the shipped ``LeaseReplica`` by overriding exactly the glue that changed, so the simulator
shows it finds the two faults of issue 10 within the CI seeds.
"""

from __future__ import annotations

import random

from paxlock.coordinator.core.ballot import Ballot
from paxlock.coordinator.core.keeper import KeeperReady, LeaseKeeper
from paxlock.coordinator.core.lease_commands import (
    Lease,
    LeaseCommand,
    PrimaryDecision,
    Result,
)
from paxlock.coordinator.core.leases import LeaseMachine
from paxlock.coordinator.core.messages import ChosenEntry
from paxlock.coordinator.core.node import CoreConfig, Node
from paxlock.coordinator.core.proposer import Role
from paxlock.coordinator.core.ready import BecamePrimary, DurableState, Ready
from paxlock.coordinator.core.replica import LeaseReplica
from paxlock.coordinator.core.replica_io import ReplicaReady


class NoOfficeEntry(LeaseReplica):
    """Fault 2 as it stood: no office entry; the keeper takes office once the log is applied
    up to the slot before the new ballot's first proposal — from ``apply`` only, so a primary
    that catches up by snapshot (nothing left to apply) never takes office. Without an office
    entry the machine never learns which ballot governs, so fault 1 is back as well: a
    deposed primary's Expire is applied whenever P2c(b) brings it into the log."""

    office_slot: int | None = None

    def tick(self, now: float) -> ReplicaReady:
        """The keeper's timer was its own asyncio timer: after a SIGSTOP it could run before
        the core's tick noticed (check-quorum) that this node had lost its majority."""
        out = ReplicaReady()
        if self.keeper.in_office:
            self._run(self.keeper.tick(now), now, out)
        ready = super().tick(now)
        ready.records[:0], ready.messages[:0] = out.records, out.messages
        ready.replies[:0], ready.events[:0] = out.replies, out.events
        ready.learned[:0], ready.applied[:0] = out.learned, out.applied
        return ready

    def _became_primary(self, event: BecamePrimary, now: float, out: ReplicaReady) -> None:
        self._fail_reads(out, "a new primary took over")
        self.office_slot = self.node.proposer.next_slot - 1
        if self.node.chosen_index >= self.office_slot:
            self.office_slot = None
            self._take_office(event.ballot, self.applied_slot, now, out)

    def _apply(self, entry: ChosenEntry, now: float, out: ReplicaReady) -> None:
        super()._apply(entry, now, out)
        if (self.office_slot is not None and entry.slot >= self.office_slot
                and self.node.role is Role.PRIMARY and not self.keeper.in_office):  # fmt: skip
            self.office_slot = None
            self._take_office(self.node.ballot, entry.slot, now, out)

    def _leave_office(self, out: ReplicaReady) -> None:
        self.office_slot = None
        super()._leave_office(out)

    def _check_office(self) -> None:
        """(The machine names no office here: only the role checks apply.)"""
        if self.keeper.in_office:
            assert self.node.role is Role.PRIMARY and self.keeper.ballot == self.node.ballot


class OfficeOnlyFromApply(LeaseReplica):
    """Office entries, but the keeper takes office only when it applies its own entry, never
    when that entry arrives inside a snapshot (the bug the new simulator found in the first
    version of ``LeaseReplica``): the primary stays "recovering" for ever."""

    def _install(self, slot: int, data: bytes, now: float, out: ReplicaReady) -> None:
        primary, self.node.proposer.role = self.node.proposer.role, Role.FOLLOWER
        try:  # hide the role so the install does not take office
            super()._install(slot, data, now, out)
        finally:
            self.node.proposer.role = primary


class TrustsEveryDecision(LeaseMachine):
    """Fault 1 alone: applies a primary's decision whatever ballot it was made under."""

    def _deposed(self, decision: PrimaryDecision) -> bool:
        return False


class ForgetfulKeeper(LeaseKeeper):
    """Breaks "a new primary restarts every lease timer at the full TTL": its timers run out
    the moment it takes office."""

    def take_office(self, machine: LeaseMachine, now: float, ballot: Ballot) -> KeeperReady:
        ready = super().take_office(machine, now, ballot)
        for (kind, name), timer in list(self._timers.items()):
            self._start(kind, name, timer.token, now)
        return ready


class ReusesTokens(LeaseMachine):
    """Hands out grant tokens that do not increase."""

    def apply(self, command: LeaseCommand) -> Result:
        result = super().apply(command)
        if isinstance(result, Lease):
            return Lease(result.name, result.holder, 1, result.revision, result.ttl_s,
                         result.value, result.lock_delay_s)  # fmt: skip
        return result


class NeverChecksQuorum(Node):
    """A primary that never notices it lost touch with the majority (no check-quorum)."""

    def tick(self, now: float) -> Ready:
        if self.role is Role.PRIMARY:
            self.rounds.confirmed_sent_at = now
        return super().tick(now)


def never_checks_quorum(config: CoreConfig, durable: DurableState, rng: random.Random) -> Node:
    return NeverChecksQuorum(config, durable, rng)


class RenewsWithoutARound(LeaseReplica):
    """A primary that answers renewals from what it last knew instead of a fresh quorum
    round (the stale-read bug): it "confirms" at once, as of now. (Check-quorum alone would
    depose it in time, so run it with ``never_checks_quorum``.)"""

    def _maybe_start_round(self, now: float, out: ReplicaReady) -> None:
        if self.keeper.in_office and self.keeper.needs_confirmation():
            round_id = self.keeper.start_round(now)
            self._run(self.keeper.on_confirmed(round_id, now), now, out)
        super()._maybe_start_round(now, out)


__all__ = [
    "ForgetfulKeeper", "NoOfficeEntry", "OfficeOnlyFromApply", "RenewsWithoutARound",
    "ReusesTokens", "TrustsEveryDecision", "never_checks_quorum",
]
