"""The invariants of the lease-level simulation (see ``lease_sim`` for the whole picture):
the expected snapshot model that the log-level ``prefix`` check compares every snapshot with,
and the lease checkers — ``tokens``, ``deposed``, ``overlap``, ``release`` and the end-of-run
``office`` check. They see what the simulation and its clients report, hold the state they
need, and report violations into the simulation's ``Checker``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from paxlock.coordinator.core.ballot import Ballot
from paxlock.coordinator.core.keeper_effects import RequestKey
from paxlock.coordinator.core.lease_commands import (
    Acquire,
    Expire,
    Expired,
    Lease,
    Refused,
    Released,
)
from paxlock.coordinator.core.leases import LeaseMachine
from paxlock.coordinator.core.messages import Accept, Batch, Envelope
from paxlock.coordinator.core.proposal import decode_proposal
from paxlock.coordinator.core.replica_io import Applied
from paxlock.coordinator.simulation.checkers import Checker, ChosenAt, Violation


class LeaseModel:
    """The lease machine folded over the ground-truth chosen log: what a snapshot must be."""

    def __init__(self, machine_factory: Callable[[], LeaseMachine]) -> None:
        self.machine_factory = machine_factory
        self.machine = machine_factory()
        self.slot = 0
        self.snapshots: dict[int, bytes] = {0: self.machine.snapshot()}

    def snapshot(self, slot: int, chosen_at: ChosenAt) -> bytes | int:
        known = self.snapshots.get(slot)
        if known is not None:
            return known
        if slot < self.slot:  # an old slot nobody asked about before: fold again
            self.machine, self.slot = self.machine_factory(), 0
        while self.slot < slot:
            value = chosen_at(self.slot + 1)
            if value is None:
                return self.slot + 1
            if isinstance(value, Batch):
                for raw in value.commands:
                    self.machine.apply(decode_proposal(raw).command)
            self.slot += 1
        data = self.snapshots[slot] = self.machine.snapshot()
        return data


class LeaseChecks:
    """The lease checkers' state and logic. A grant is the list a client trusts,
    ``[name, token, holder, start, end, ttl]`` in real times, shared with the client so that
    a renewal or a release moves its ``end``."""

    def __init__(self, checker: Checker, names: Iterable[str]) -> None:
        self.checker = checker
        self.phase1_done: list[tuple[float, Ballot]] = []
        """When each ballot completed phase 1 (its node became primary)."""
        self.first_issue: dict[bytes, Ballot] = {}
        """The ballot at which each command was first sent in an Accept."""
        self.arrived: dict[RequestKey, float] = {}
        """When each request reached the node that runs it (the ``deposed`` renewal check)."""
        self.renewed_under: dict[tuple[str, int], Ballot] = {}
        """The highest ballot under which a client had each grant (name, token) renewed."""
        self.intervals: dict[str, list[list[Any]]] = {name: [] for name in names}
        self.last_token: dict[str, int] = {}

    def fail(self, check: str, detail: str) -> None:
        self.checker.violations.append(Violation(check, self.checker.step, detail))

    # -- what the simulation reports ---------------------------------------------------------

    def on_send(self, envelope: Envelope) -> None:
        msg = envelope.msg
        if isinstance(msg, Accept) and isinstance(msg.value, Batch):
            for raw in msg.value.commands:
                self.first_issue.setdefault(raw, msg.ballot)

    def on_phase1(self, now: float, ballot: Ballot) -> None:
        self.phase1_done.append((now, ballot))

    def on_arrival(self, key: RequestKey, now: float) -> None:
        self.arrived[key] = now

    def on_applied(self, node_id: str, incarnation: int, raw: bytes, applied: Applied) -> None:
        """``tokens``, and ``deposed`` for an Expire issued below a renewal's ballot."""
        command, result = applied.command, applied.result
        if isinstance(command, Acquire) and isinstance(result, Lease) and applied.changed:
            key = f"{node_id}/{incarnation}/{result.name}"
            last = self.last_token.get(key, 0)
            if result.token <= last:
                self.fail("tokens", f"{node_id} granted {result.name} with token "
                                    f"{result.token} after token {last}")  # fmt: skip
            self.last_token[key] = result.token
        if isinstance(command, Expire) and isinstance(result, Expired):
            issued = self.first_issue.get(raw)
            renewed = self.renewed_under.get((result.name, result.token))
            if issued is not None and renewed is not None and issued < renewed:
                self.fail("deposed", f"{node_id} applied an Expire of {result.name} "
                                     f"(token {result.token}) issued at {issued}, after a "
                                     f"renewal under {renewed}")  # fmt: skip

    def on_confirmed(self, node_id: str, ballot: Ballot, sent_at: float) -> None:
        """``deposed``: a round is confirmed only if sent before any higher phase 1 ended."""
        for done_at, higher in self.phase1_done:
            if higher > ballot and done_at < sent_at - 1e-9:
                self.fail("deposed", f"{node_id} at {ballot} confirmed a round sent at "
                                     f"{sent_at:.4f}, after {higher} completed phase 1 at "
                                     f"{done_at:.4f}")  # fmt: skip

    def on_renewal(self, node_id: str, ballot: Ballot, key: RequestKey) -> None:
        """A renewal needs a quorum round sent after it arrived; none can be confirmed once
        a majority promised a higher ballot, so no higher phase 1 may end before arrival."""
        arrived_at = self.arrived[key]
        for done_at, higher in self.phase1_done:
            if higher > ballot and done_at < arrived_at:
                self.fail("deposed", f"{node_id} at {ballot} renewed a lease for a request "
                                     f"that arrived at {arrived_at:.4f}, after {higher} "
                                     f"completed phase 1 at {done_at:.4f}")  # fmt: skip

    # -- what the clients report -------------------------------------------------------------

    def on_grant(self, grant: list[Any], now: float) -> None:
        self.intervals[grant[0]].append(grant)
        self.overlap(grant, now)

    def on_renewed(self, name: str, token: int, ballot: Ballot) -> None:
        grant_key = (name, token)
        self.renewed_under[grant_key] = max(ballot, self.renewed_under.get(grant_key, ballot))

    def overlap(self, grant: list[Any], now: float) -> None:
        """``overlap``: no other grant of the name is valid at once (from ``now`` on)."""
        name, token, holder, start, end, _ = grant
        for other in self.intervals[name]:
            if other is grant or other[1] == token:
                continue
            if other[3] < end and max(start, now) < other[4]:
                self.fail("overlap", f"{name}: {holder} (token {token}) valid "
                                     f"[{start:.4f}, {end:.4f}] while {other[2]} (token "
                                     f"{other[1]}) valid [{other[3]:.4f}, {other[4]:.4f}]")  # fmt: skip
        self.intervals[name] = [g for g in self.intervals[name] if g[4] > now - 2.0]

    def on_release_answer(self, outcome: object) -> None:
        if not isinstance(outcome, Released | Refused):
            self.fail("release", f"unexpected answer to a release: {outcome}")

    # -- at the end of the run ---------------------------------------------------------------

    def office(self, serving: bool, primaries: list[str], answered_after_heal: int) -> None:
        """``office``: some primary's keeper is in office at the end, and the state machine
        answered a request after the faults stopped."""
        if not serving:
            self.fail("office", f"no keeper in office at the end (primaries: {primaries})")
        elif answered_after_heal == 0:
            self.fail("office", "no request was answered after the faults stopped")
