"""The lease-level simulation with sessions, semaphores and read/write locks: the same
shipped ``LeaseReplica`` under the same faults as ``lease_sim`` (crashes, pauses, stops,
drops, partitions, skew, compaction, retries), driven by ``coord_clients`` (sessions that
are renewed or fall silent; permits, read/write holds and leases bound to a session or
with their own ttl; waits) and checked by ``coord_checks`` (``limit``, ``exclusive``,
``tokens``, ``results``, ``session``, ``deposed``) besides the log-level checks.
"""

from __future__ import annotations

from typing import Any

from paxlock.coordinator.core.replica import LeaseReplica
from paxlock.coordinator.simulation.coord_checks import CoordChecks
from paxlock.coordinator.simulation.coord_clients import CoordClients
from paxlock.coordinator.simulation.lease_sim import LeaseSimulation

CLIENTS = 6


class CoordSimulation(LeaseSimulation):
    snapshot_bytes_typical = 20_000
    """Midway through a run (the idempotency window holds ~100 results by then): seeds that
    send snapshots in a few chunks then do, not in a hundred (a transfer that outlasts two
    of the sender's compactions starts again, and would never end)."""

    def __init__(self, *args: Any, clients: int = CLIENTS, **kwargs: Any) -> None:
        super().__init__(*args, clients=clients, **kwargs)

    def _parts(self, clients: int) -> tuple[CoordChecks, CoordClients]:
        checks = CoordChecks(self.checker, self._machine_of, lambda: self.now)
        return checks, CoordClients(self, checks, clients)

    def _machine_of(self, node_id: str) -> Any:
        return self.lease_nodes[node_id].replica.machine

    def _timers_left(self, replica: LeaseReplica, local: float) -> list[float]:
        """Leases' and sessions' timers: a stopped primary may wake with a session expired."""
        left = super()._timers_left(replica, local)
        for session in replica.machine.sessions():
            left.append(replica.session_expires_in(session.id, local) or 0.0)
        return left

    # -- the workload's counters, for tests and scripts -----------------------------------

    @property
    def coord(self) -> CoordClients:
        workload = self.workload
        assert isinstance(workload, CoordClients)
        return workload

    @property
    def coord_checks(self) -> CoordChecks:
        checks = self.checks
        assert isinstance(checks, CoordChecks)
        return checks

    def counters(self) -> dict[str, int]:
        coord, checks = self.coord, self.coord_checks
        return dict(grants=coord.grants, bound=coord.bound_grants, renewals=coord.renewals,
                    sessions=coord.sessions, session_renewals=coord.session_renewals,
                    silences=coord.silences, retries=coord.retries, joins=coord.joins,
                    sessions_ended=checks.sessions_ended, freed=checks.freed_at_end)  # fmt: skip
