"""The simulation at the lease level: every node is the product's own ``LeaseReplica`` —
consensus node, lease machine and keeper joined by the glue that ships — and simulated lease
clients acquire, renew and release over a delayed network while faults strike. The simulator
only delivers messages, requests and replies, runs timers and injects faults; it keeps no
wiring of its own.

Faults, besides those of the log-level simulation (crashes, crashes between persist and
send, drops, duplicates, delays, partitions): *pauses* (a node's inbox frozen while its
timers keep firing, then drained in order — a SIGSTOP'd process whose buffered Prepare is
read after its timers ran), per-node *clock-rate skew* (nodes and clients, within the SDK's
margin), TTLs from below 2T to many T, compaction every few slots (so snapshots are
installed by catch-up), and clients that retry with the same ``request_id`` after an
unknown outcome, trusting a grant from their *first* attempt's send time.

The three parts of the simulated system: this module builds and drives the system (boots
replicas, steps them — persist, then send —, delivers messages, requests and replies, pauses,
stops and injects faults, settles); ``lease_clients`` is the workload (the lease clients);
``lease_checks`` holds the invariants below and the snapshot model.

Checkers (in ``lease_checks``), after every step (besides the log-level ones, whose ``prefix``
check compares every snapshot with the lease machine folded over the ground truth):

- ``overlap``   at no instant do two clients hold a valid lease on one name by their own
                conservative clocks (valid from the reply until sent + ttl × (1 − margin));
- ``tokens``    the fencing tokens of successive grants of a name strictly increase;
- ``deposed``   no proposal of a deposed primary takes effect against a lease renewed under a
                newer ballot: an ``Expire`` first issued at ballot b never ends a grant that a
                client had renewed under a ballot above b; and a renewal is confirmed only by
                a round sent before any higher ballot completed phase 1;
- ``office``    after the faults stop, the cluster serves again: some primary's keeper is in
                office at the end, and the state machine answered a request after the faults
                stopped.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from paxlock.coordinator.core.ballot import Ballot
from paxlock.coordinator.core.keeper import LeaseKeeper
from paxlock.coordinator.core.keeper_effects import KeeperConfig, Reply, RequestKey
from paxlock.coordinator.core.leases import LeaseMachine
from paxlock.coordinator.core.messages import Batch, Envelope, Reconfigure, Record, SnapshotRecord
from paxlock.coordinator.core.node import Node
from paxlock.coordinator.core.ready import BecamePrimary, Confirmed, leaves_before_durable
from paxlock.coordinator.core.replica import LeaseReplica
from paxlock.coordinator.core.replica_io import ReconfigureOp, ReplicaReady
from paxlock.coordinator.simulation.lease_checks import LeaseChecks, LeaseModel
from paxlock.coordinator.simulation.lease_clients import (
    MARGIN,
    NAMES,
    REQUEST_TIMEOUT_S,
    SKEW_MAX,
    TTLS_S,
    LeaseClients,
    Workload,
    _Clock,
    skewed_clock,
)
from paxlock.coordinator.simulation.sim import EarlySend, NodeFactory, Result, SimConfig, Simulation
from paxlock.coordinator.simulation.sim import SETTLE_STEPS_MAX, SimNode, default_node

SNAPSHOT_EVERY = (3, 12)


def sim_keeper() -> LeaseKeeper:
    """The keeper with its retry and round timeouts scaled to the simulation's T."""
    return LeaseKeeper(KeeperConfig(retry_s=0.05, confirm_timeout_s=0.1))


ReplicaFactory = Callable[..., LeaseReplica]


@dataclass(slots=True)
class _Node:
    replica: LeaseReplica
    clock: _Clock
    paused: bool = False
    """Its inbox is frozen (messages and requests wait in ``inbox``)."""
    stopped: bool = False
    """SIGSTOP: timers wait too; on resume the overdue timer runs first, then the inbox."""
    inbox: list[tuple[object, ...]] = field(default_factory=list)


class LeaseSimulation(Simulation):
    snapshot_bytes_typical = 1024  # the lease machine's, midway through a run

    def __init__(self, config: SimConfig, seed: int, *, clients: int = 5,
                 stop_on_violation: bool = True, trace: bool = False,
                 node_factory: NodeFactory = default_node,
                 replica_factory: ReplicaFactory = LeaseReplica,
                 keeper_factory: Callable[[], LeaseKeeper] = sim_keeper,
                 machine_factory: Callable[[], LeaseMachine] = LeaseMachine,
                 leaves_early: EarlySend = leaves_before_durable) -> None:  # fmt: skip
        """The factories (and ``leaves_early``) let tests substitute deliberately broken
        parts."""
        super().__init__(config, seed, node_factory=node_factory,
                         stop_on_violation=stop_on_violation, trace=trace,
                         leaves_early=leaves_early)  # fmt: skip
        self.replica_factory = replica_factory
        self.keeper_factory = keeper_factory
        self.machine_factory = machine_factory
        self.checker.every_command_retried = False
        self.checker.model = LeaseModel(machine_factory)
        self.lease_rng = random.Random(f"paxlock-sim/{seed}/leases")
        """The lease draws: node and client clocks, then the clients' workload."""
        self.lease_nodes: dict[str, _Node] = {}
        self.checks, self.workload = self._parts(clients)
        self.pauses = 0
        self.handovers = 0

    def _parts(self, clients: int) -> tuple[LeaseChecks, Workload]:
        """The checkers and the workload (a subclass drives other clients, ``coord_sim``)."""
        checks = LeaseChecks(self.checker, NAMES)
        return checks, LeaseClients(self, checks, clients)

    # -- the parts' counters and state, for tests and scripts --------------------------------

    @property
    def clients(self) -> list[Any]:
        return self.workload.clients

    @property
    def requests(self) -> dict[RequestKey, Any]:
        return self.workload.requests

    @property
    def grants(self) -> int:
        return self.workload.grants

    @property
    def renewals(self) -> int:
        return self.workload.renewals

    @property
    def retries(self) -> int:
        return self.workload.retries

    @property
    def phase1_done(self) -> list[tuple[float, Ballot]]:
        return self.checks.phase1_done

    @property
    def first_issue(self) -> dict[bytes, Ballot]:
        return self.checks.first_issue

    @property
    def renewed_under(self) -> dict[tuple[str, int], Ballot]:
        return self.checks.renewed_under

    # -- the run -----------------------------------------------------------------------------

    def run(self) -> Result:
        self.workload.start()
        result = super().run()
        if not result.violations or not self.stop_on_violation:
            self._settle()
            self.checks.office(self._serving(), self.primaries(),
                               self.workload.answered_after_heal)  # fmt: skip
            result.violations = list(self.checker.violations)
        return result

    def _settle(self) -> None:
        """Liveness is "eventually": past the last step, run on (no faults) until a keeper is
        in office and a request was answered, or ``SETTLE_STEPS_MAX`` more steps pass."""
        for _ in range(SETTLE_STEPS_MAX):
            if self._serving() and self.workload.answered_after_heal > 0 or not self.queue:
                return
            self.now, _, event = heapq.heappop(self.queue)
            self._handle(event)

    def _serving(self) -> bool:
        return any(self.nodes[n].node is not None and s.replica.keeper.in_office
                   for n, s in self.lease_nodes.items())  # fmt: skip

    def _client_submit(self) -> None:
        return  # the generic workload is replaced by lease clients

    def _client_retry(self) -> None:
        return

    # -- nodes -------------------------------------------------------------------------------

    def _boot(self, sim_node: SimNode) -> None:
        sim_node.incarnation += 1
        sim_node.tick_at = float("inf")
        seed = f"paxlock-sim/{self.seed}/{sim_node.id}/{sim_node.incarnation}"
        rng = random.Random(seed)
        config = self._core_config(sim_node)
        node = self._recording(self.node_factory(config, sim_node.disk.copy(), rng))
        replica = self.replica_factory(
            config, sim_node.disk, rng, origin=f"{sim_node.id}/{sim_node.incarnation}",
            snapshot_every=random.Random(seed).randint(*SNAPSHOT_EVERY), node=node,
            keeper=self.keeper_factory(), machine_factory=self.machine_factory,
        )  # fmt: skip
        previous = self.lease_nodes.get(sim_node.id)
        clock = previous.clock if previous is not None else skewed_clock(self.lease_rng)
        state = self.lease_nodes[sim_node.id] = _Node(replica, clock)
        sim_node.node = node
        self._log(f"{sim_node.id} starts (incarnation {sim_node.incarnation})")
        self._step(sim_node, replica.start(state.clock.local(self.now)))

    def _recording(self, node: Node) -> Node:
        """Every command the replica submits counts as proposed for the ``proposed`` check."""
        submit = node.submit

        def recorded(command: Any, now: float) -> Any:
            self.checker.on_submit(command)
            return submit(command, now)

        node.submit = recorded  # type: ignore[method-assign]
        return node

    def _crash(self, sim_node: SimNode) -> None:
        state = self.lease_nodes.get(sim_node.id)
        if state is not None:
            state.paused, state.stopped, state.inbox = False, False, []
        super()._crash(sim_node)

    def _step(self, sim_node: SimNode, ready: ReplicaReady) -> None:
        """Send what may leave early (maybe crash), persist, then (unless crashed in between)
        send the rest; then report to the checkers,
        deliver replies, and arm the timer (in real time, from the node's skewed clock)."""
        checker = self.checker
        late = self._send_early(sim_node, ready.records, ready.messages)
        if late is None:
            return
        self._persist(sim_node, self._commit(sim_node, ready.records, bool(late)), ready.installed)
        if (self.faults_on and late
                and self.rng.random() < self.config.crash_between_persist_and_send):  # fmt: skip
            self._crash(sim_node)
            return
        for envelope in late:
            self._send(envelope)
        if ready.installed is not None:
            slot, data = ready.installed
            transferred = any(isinstance(r, SnapshotRecord) and r.slot == slot
                              for r in ready.records)  # fmt: skip
            self._log(f"{sim_node.id} installs a snapshot at slot {slot}")
            sim_node.delivered = slot
            checker.on_install(sim_node.id, sim_node.incarnation, slot, data,
                               transferred=transferred)  # fmt: skip
        raws: list[bytes] = []
        for entry in ready.learned:
            checker.on_deliver(sim_node.id, sim_node.incarnation, entry)
            sim_node.delivered = entry.slot
            if isinstance(entry.value, Batch):
                raws += entry.value.commands
        assert len(raws) == len(ready.applied), "one Applied per command, in log order"
        for raw, applied in zip(raws, ready.applied, strict=True):
            self.checks.on_applied(sim_node.id, sim_node.incarnation, raw, applied)
        state = self.lease_nodes[sim_node.id]
        assert sim_node.node is not None
        for event in ready.events:
            if isinstance(event, BecamePrimary):
                self.checks.on_phase1(self.now, event.ballot)
            elif isinstance(event, Confirmed):
                sent_at = state.clock.real(event.sent_at)
                self.checks.on_confirmed(sim_node.id, sim_node.node.ballot, sent_at)
        for reply in ready.replies:  # with the replier's ballot now (``deposed`` renewals)
            self.workload.reply_sent(reply, sim_node.id, sim_node.node.ballot)
        deadline = state.clock.real(ready.deadline)
        if deadline < sim_node.tick_at:
            sim_node.tick_at = max(deadline, self.now)
            self._at(sim_node.tick_at, ("tick", sim_node.id, sim_node.incarnation))

    def _persist(self, sim_node: SimNode, records: list[Record],
                 installed: tuple[int, bytes] | None) -> None:  # fmt: skip
        for record in records:
            sim_node.disk.apply(record)
            self._observe_record(sim_node, record)
            if isinstance(record, SnapshotRecord) and (installed is None
                                                       or installed[0] != record.slot):  # fmt: skip
                self.compactions += 1  # taken by the replica, not installed from a peer

    def _send(self, envelope: Envelope) -> None:
        self.checks.on_send(envelope)
        super()._send(envelope)

    def _propose_change(self, sim_node: SimNode, change: Reconfigure) -> None:
        """Through the replica, as ``POST /v1/members`` does (its answer goes nowhere)."""
        state = self.lease_nodes[sim_node.id]
        if state.paused:
            return
        key = RequestKey(-1 - self.changes)
        local = state.clock.local(self.now)
        self._step(sim_node, state.replica.request(key, ReconfigureOp(change), local))

    # -- events ------------------------------------------------------------------------------

    def _handle(self, event: tuple[object, ...]) -> bool:
        checker = self.checker
        if checker.liveness_slot is None and checker.step >= self._settled_step():
            # Lease timers write to the log to the very end: every node must have caught
            # up with what was chosen by three quarters of the liveness phase.
            checker.liveness_slot = max((s for s, st in checker.slots.items() if st.chosen),
                                        default=0)  # fmt: skip
        match event:
            case ("deliver", Envelope() as envelope, str()):
                if self._refused(event):
                    return False
                return self._arrive(envelope.dst, event)
            case ("lreq", str() as node_id, int()):
                return self._arrive(node_id, event)
            case ("tick", str() as node_id, int() as incarnation):
                sim_node = self.nodes[node_id]
                if (sim_node.node is None or sim_node.incarnation != incarnation
                        or sim_node.tick_at != self.now):  # fmt: skip
                    return False
                sim_node.tick_at = float("inf")
                state = self.lease_nodes[node_id]
                if state.stopped:
                    sim_node.tick_at = -1.0  # overdue: runs first when the node resumes
                    return True
                self._step(sim_node, state.replica.tick(state.clock.local(self.now)))
            case ("resume", str() as node_id):
                state = self.lease_nodes[node_id]
                if not state.paused:
                    return False
                self._log(f"{node_id} resumes: {len(state.inbox)} buffered")
                state.paused, inbox, state.inbox = False, state.inbox, []
                sim_node = self.nodes[node_id]
                if state.stopped:
                    state.stopped = False
                    if sim_node.tick_at == -1.0 and sim_node.node is not None:
                        sim_node.tick_at = float("inf")
                        self._step(sim_node, state.replica.tick(state.clock.local(self.now)))
                for buffered in inbox:  # drained in arrival order, after the timers ran
                    self._at(self.now, buffered)
            case ("crash-successor", str() as deposed):
                successors = [n for n in self.primaries() if n != deposed]
                if not successors or not self.faults_on:
                    return False
                self._crash(self.nodes[successors[0]])
            case ("lrep", int() as key, Reply() as reply, str() as node_id, Ballot() as ballot):
                self.workload.reply_arrives(RequestKey(key), reply, node_id, ballot)
            case ("lc-act", int() as index):
                self.workload.act(index)
            case ("lc-timeout", int() as key):
                return self.workload.timeout(RequestKey(key))
            case _:
                return super()._handle(event)
        return True

    def _arrive(self, node_id: str, event: tuple[object, ...]) -> bool:
        sim_node = self.nodes[node_id]
        if sim_node.node is None:
            return False
        state = self.lease_nodes[node_id]
        if state.paused:
            state.inbox.append(event)
            return True
        local = state.clock.local(self.now)
        match event:
            case ("deliver", Envelope(src=src, msg=msg), str()):
                self._step(sim_node, state.replica.receive(src, msg, local))
            case ("lreq", _, int() as key):
                request = self.workload.requests.get(RequestKey(key))
                if request is None:
                    return False
                self.checks.on_arrival(RequestKey(key), self.now)
                self._step(sim_node, state.replica.request(RequestKey(key), request.op, local))
        return True

    def _fault(self) -> None:
        if not self.faults_on:
            return
        draw = self.rng.random()
        if 0.25 <= draw < 0.35:  # a graceful stop's first half: the primary hands over
            self._at(self.now + self.rng.expovariate(1 / self.config.crash_every_s), ("fault",))
            for node_id in self.primaries():
                state = self.lease_nodes[node_id]
                if not state.paused:
                    self.handovers += 1
                    self._log(f"{node_id} hands over")
                    local = state.clock.local(self.now)
                    self._step(self.nodes[node_id], state.replica.hand_over(local))
                    break
            return
        if draw < 0.25:
            self._at(self.now + self.rng.expovariate(1 / self.config.crash_every_s), ("fault",))
            live = [n for n in self.members
                    if self.nodes[n].node is not None and not self.lease_nodes[n].paused]  # fmt: skip
            primaries = [n for n in live if n in self.primaries()]
            if live:  # a primary, most often: its timers go on deciding while it hears nothing
                node_id = self.rng.choice(primaries if primaries and self.rng.random() < 0.7
                                          else live)  # fmt: skip
                self._pause(node_id, deposing=node_id in primaries)
            return
        super()._fault()

    def _pause(self, node_id: str, *, deposing: bool) -> None:
        """Freeze a node's inbox (its timers keep firing), or stop it altogether (SIGSTOP).
        A stopped primary resumes deposed but unaware (its overdue timers run before it reads
        the successor's Prepare); then the successor may crash, so that the next phase 1 must
        ask the deposed primary what it accepted meanwhile (P2c(b))."""
        state = self.lease_nodes[node_id]
        state.paused, state.stopped = True, self.rng.random() < 0.5
        self.pauses += 1
        self._log(f"{node_id} {'stops' if state.stopped else 'pauses its inbox'}")
        t = self.config.election_timeout_s
        if state.stopped:
            pause_s = self.rng.uniform(1.2 * t, 8 * t)
            keeper = state.replica.keeper
            if deposing and keeper.in_office and self.rng.random() < 0.8:
                # Long enough for a lease timer of the stopped primary to run out meanwhile,
                # so that it decides an Expire the moment it resumes.
                left = self._timers_left(state.replica, state.clock.local(self.now))
                pause_s = max(pause_s, max(left, default=0.0) + self.rng.uniform(0.0, t))
            if deposing and self.rng.random() < 0.8:
                when = self.now + pause_s + self.rng.uniform(0.0, t)
                self._at(when, ("crash-successor", node_id))
        else:
            pause_s = self.rng.uniform(t, 10 * t)
        self._at(self.now + pause_s, ("resume", node_id))

    def _timers_left(self, replica: LeaseReplica, local: float) -> list[float]:
        """Seconds left of the in-office keeper's expiry timers (by its node's clock)."""
        keeper = replica.keeper
        return [keeper.expires_in(lease.name, local) or 0.0 for lease in replica.machine.list()]

    def _heal(self) -> None:
        super()._heal()
        for node_id, state in self.lease_nodes.items():
            if state.paused:
                self._at(self.now, ("resume", node_id))

    def _settled_step(self) -> int:
        heal_step = int(self.config.steps * (1 - self.config.liveness_fraction))
        return heal_step + (self.config.steps - heal_step) * 3 // 4


__all__ = ["MARGIN", "NAMES", "REQUEST_TIMEOUT_S", "SETTLE_STEPS_MAX", "SKEW_MAX", "SNAPSHOT_EVERY",
           "TTLS_S", "LeaseModel", "LeaseSimulation", "ReplicaFactory", "sim_keeper"]  # fmt: skip
