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

Checkers, after every step (besides the log-level ones, whose ``prefix`` check compares
every snapshot with the lease machine folded over the ground truth):

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
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from paxlock.coordinator.core.ballot import Ballot
from paxlock.coordinator.core.keeper import LeaseKeeper
from paxlock.coordinator.core.keeper_effects import (
    KeeperConfig,
    NotPrimary,
    Recovering,
    Reply,
    RequestKey,
    Unavailable,
)
from paxlock.coordinator.core.lease_commands import (
    Acquire,
    Expire,
    Expired,
    Lease,
    Refused,
    Release,
    Released,
)
from paxlock.coordinator.core.leases import LeaseMachine
from paxlock.coordinator.core.messages import Accept, Batch, Envelope, Record, SnapshotRecord
from paxlock.coordinator.core.node import Node
from paxlock.coordinator.core.proposal import decode_proposal
from paxlock.coordinator.core.ready import BecamePrimary, Confirmed
from paxlock.coordinator.core.replica import LeaseReplica
from paxlock.coordinator.core.replica_io import (
    AcquireOp,
    Applied,
    ReleaseOp,
    RenewOp,
    ReplicaReady,
    RequestOp,
)
from paxlock.coordinator.simulation.checkers import ChosenAt, Violation
from paxlock.coordinator.simulation.sim import NodeFactory, Result, SimConfig, Simulation
from paxlock.coordinator.simulation.sim import SimNode, default_node

NAMES = ("alpha", "beta")
TTLS_S = (0.1, 0.2, 0.4, 0.8)
"""From below 2T (T = the election timeout, 0.06 s) to many T."""
MARGIN = 0.1
"""The SDK's margin: a client trusts a lease until sent + ttl × (1 − margin)."""
SKEW_MAX = 0.02
"""Clock rates in [1 − SKEW_MAX, 1 + SKEW_MAX]: well within the margin."""
SNAPSHOT_EVERY = (3, 12)
SETTLE_STEPS_MAX = 5000
"""How long past the last step a run may take to show it serves again."""
REQUEST_TIMEOUT_S = 0.05
"""A client's wait for an answer before it retries elsewhere (SDK-like, scaled to T)."""


def sim_keeper() -> LeaseKeeper:
    """The keeper with its retry and round timeouts scaled to the simulation's T."""
    return LeaseKeeper(KeeperConfig(retry_s=0.05, confirm_timeout_s=0.1))

ReplicaFactory = Callable[..., LeaseReplica]


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


@dataclass(slots=True)
class _Clock:
    offset: float
    rate: float

    def local(self, now: float) -> float:
        return self.offset + self.rate * now

    def real(self, local: float) -> float:
        """The first real time at which this clock reads ``local`` or more."""
        real = (local - self.offset) / self.rate
        while self.local(real) < local:  # rounding: never wake a timer before it is due
            real = math.nextafter(real, math.inf)
        return real


@dataclass(slots=True)
class _Node:
    replica: LeaseReplica
    clock: _Clock
    paused: bool = False
    """Its inbox is frozen (messages and requests wait in ``inbox``)."""
    stopped: bool = False
    """SIGSTOP: timers wait too; on resume the overdue timer runs first, then the inbox."""
    inbox: list[tuple[object, ...]] = field(default_factory=list)


@dataclass(slots=True)
class _Request:
    client: int
    op: RequestOp
    first_sent_local: float
    """The client's clock when this request (this request id) was first sent."""


@dataclass(slots=True)
class _Client:
    holder: str
    clock: _Clock
    hint: str | None = None
    request: RequestKey | None = None
    grant: list[Any] | None = None
    """[name, token, holder, start, end, ttl] of the grant it trusts (real times)."""
    hold_until: float = 0.0
    acquires: int = 0


class LeaseSimulation(Simulation):
    def __init__(self, config: SimConfig, seed: int, *, clients: int = 5,
                 stop_on_violation: bool = True, trace: bool = False,
                 node_factory: NodeFactory = default_node,
                 replica_factory: ReplicaFactory = LeaseReplica,
                 keeper_factory: Callable[[], LeaseKeeper] = sim_keeper,
                 machine_factory: Callable[[], LeaseMachine] = LeaseMachine) -> None:  # fmt: skip
        """The factories let tests substitute deliberately broken parts."""
        super().__init__(config, seed, node_factory=node_factory,
                         stop_on_violation=stop_on_violation, trace=trace)  # fmt: skip
        self.replica_factory = replica_factory
        self.keeper_factory = keeper_factory
        self.machine_factory = machine_factory
        self.checker.every_command_retried = False
        self.checker.model = LeaseModel(machine_factory)
        self.lease_rng = random.Random(f"paxlock-sim/{seed}/leases")
        self.lease_nodes: dict[str, _Node] = {}
        self.clients = [_Client(f"client{i}", self._skewed_clock()) for i in range(clients)]
        self.requests: dict[RequestKey, _Request] = {}
        self.next_key = 0
        self.next_request_id = 0
        self.phase1_done: list[tuple[float, Ballot]] = []
        self.first_issue: dict[bytes, Ballot] = {}
        self.arrived: dict[RequestKey, float] = {}
        """When each request reached the node that runs it (the ``deposed`` renewal check)."""
        self.renewed_under: dict[tuple[str, int], Ballot] = {}
        self.intervals: dict[str, list[list[Any]]] = {name: [] for name in NAMES}
        self.last_token: dict[str, int] = {}
        self.grants = self.renewals = self.pauses = self.retries = 0
        self.answered_after_heal = 0
        """Requests answered by the state machine (a result, not a 503) in the liveness phase."""

    def _skewed_clock(self) -> _Clock:
        rng = self.lease_rng
        return _Clock(rng.uniform(0.0, 100.0), rng.uniform(1 - SKEW_MAX, 1 + SKEW_MAX))

    # -- the run -----------------------------------------------------------------------------

    def run(self) -> Result:
        for index in range(len(self.clients)):
            self._at(0.05 * index, ("lc-act", index))
        result = super().run()
        if not result.violations or not self.stop_on_violation:
            self._settle()
            self._check_serving()
            result.violations = list(self.checker.violations)
        return result

    def _settle(self) -> None:
        """Liveness is "eventually": past the last step, run on (no faults) until a keeper is
        in office and a request was answered, or ``SETTLE_STEPS_MAX`` more steps pass."""
        for _ in range(SETTLE_STEPS_MAX):
            if self._serving() and self.answered_after_heal > 0 or not self.queue:
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

    def _fail(self, check: str, detail: str) -> None:
        self.checker.violations.append(Violation(check, self.checker.step, detail))

    def _check_serving(self) -> None:
        if not self._serving():
            primaries = self.primaries()
            self._fail("office", f"no keeper in office at the end (primaries: {primaries})")
        elif self.answered_after_heal == 0:
            self._fail("office", "no request was answered after the faults stopped")

    # -- nodes -------------------------------------------------------------------------------

    def _boot(self, sim_node: SimNode) -> None:
        sim_node.incarnation += 1
        sim_node.tick_at = float("inf")
        seed = f"paxlock-sim/{self.seed}/{sim_node.id}/{sim_node.incarnation}"
        rng = random.Random(seed)
        config = self.config.core(sim_node.id, self.members)
        node = self._recording(self.node_factory(config, sim_node.disk.copy(), rng))
        replica = self.replica_factory(
            config, sim_node.disk, rng, origin=f"{sim_node.id}/{sim_node.incarnation}",
            snapshot_every=random.Random(seed).randint(*SNAPSHOT_EVERY), node=node,
            keeper=self.keeper_factory(), machine_factory=self.machine_factory,
        )  # fmt: skip
        previous = self.lease_nodes.get(sim_node.id)
        clock = previous.clock if previous is not None else self._skewed_clock()
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
        """Persist, then (unless crashed in between) send; then report to the checkers,
        deliver replies, and arm the timer (in real time, from the node's skewed clock)."""
        checker = self.checker
        self._persist(sim_node, ready.records, ready.installed)
        if (self.faults_on and ready.messages
                and self.rng.random() < self.config.crash_between_persist_and_send):  # fmt: skip
            self._crash(sim_node)
            return
        for envelope in ready.messages:
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
            self._check_applied(sim_node, raw, applied)
        state = self.lease_nodes[sim_node.id]
        for event in ready.events:
            if isinstance(event, BecamePrimary):
                self.phase1_done.append((self.now, event.ballot))
            elif isinstance(event, Confirmed):
                self._check_round(sim_node, state, event)
        for reply in ready.replies:
            self._reply(sim_node, reply)
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
        msg = envelope.msg
        if isinstance(msg, Accept) and isinstance(msg.value, Batch):
            for raw in msg.value.commands:
                self.first_issue.setdefault(raw, msg.ballot)
        super()._send(envelope)

    # -- events ------------------------------------------------------------------------------

    def _handle(self, event: tuple[object, ...]) -> bool:
        checker = self.checker
        if checker.liveness_slot is None and checker.step >= self._settled_step():
            # Lease timers write to the log to the very end: every node must have caught
            # up with what was chosen by three quarters of the liveness phase.
            checker.liveness_slot = max((s for s, st in checker.slots.items() if st.chosen),
                                        default=0)  # fmt: skip
        match event:
            case ("deliver", Envelope() as envelope):
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
                self._reply_arrives(RequestKey(key), reply, node_id, ballot)
            case ("lc-act", int() as index):
                self._client_act(index)
            case ("lc-timeout", int() as key):
                request = self.requests.get(RequestKey(key))
                if request is None:
                    return False
                self._retry(RequestKey(key), request, hint=None)
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
            case ("deliver", Envelope(src=src, msg=msg)):
                self._step(sim_node, state.replica.receive(src, msg, local))
            case ("lreq", _, int() as key):
                request = self.requests.get(RequestKey(key))
                if request is None:
                    return False
                self.arrived[RequestKey(key)] = self.now
                self._step(sim_node, state.replica.request(RequestKey(key), request.op, local))
        return True

    def _fault(self) -> None:
        if not self.faults_on:
            return
        if self.rng.random() < 0.25:
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
            if deposing and keeper.in_office and self.rng.random() < 0.5:
                # Long enough for a lease timer of the stopped primary to run out meanwhile,
                # so that it decides an Expire the moment it resumes.
                local = state.clock.local(self.now)
                left = [keeper.expires_in(lease.name, local) or 0.0
                        for lease in state.replica.machine.list()]  # fmt: skip
                pause_s = max(pause_s, max(left, default=0.0) + self.rng.uniform(0.0, t))
            if deposing and self.rng.random() < 0.5:
                when = self.now + pause_s + self.rng.uniform(0.0, t)
                self._at(when, ("crash-successor", node_id))
        else:
            pause_s = self.rng.uniform(t, 10 * t)
        self._at(self.now + pause_s, ("resume", node_id))

    def _heal(self) -> None:
        super()._heal()
        for node_id, state in self.lease_nodes.items():
            if state.paused:
                self._at(self.now, ("resume", node_id))

    # -- checkers ----------------------------------------------------------------------------

    def _check_applied(self, sim_node: SimNode, raw: bytes, applied: Applied) -> None:
        command, result = applied.command, applied.result
        if isinstance(command, Acquire) and isinstance(result, Lease) and applied.changed:
            key = f"{sim_node.id}/{sim_node.incarnation}/{result.name}"
            last = self.last_token.get(key, 0)
            if result.token <= last:
                self._fail("tokens", f"{sim_node.id} granted {result.name} with token "
                                     f"{result.token} after token {last}")  # fmt: skip
            self.last_token[key] = result.token
        if isinstance(command, Expire) and isinstance(result, Expired):
            issued = self.first_issue.get(raw)
            renewed = self.renewed_under.get((result.name, result.token))
            if issued is not None and renewed is not None and issued < renewed:
                self._fail("deposed", f"{sim_node.id} applied an Expire of {result.name} "
                                      f"(token {result.token}) issued at {issued}, after a "
                                      f"renewal under {renewed}")  # fmt: skip

    def _check_round(self, sim_node: SimNode, state: _Node, event: Confirmed) -> None:
        assert sim_node.node is not None
        ballot, sent_at = sim_node.node.ballot, state.clock.real(event.sent_at)
        for done_at, higher in self.phase1_done:
            if higher > ballot and done_at < sent_at - 1e-9:
                self._fail("deposed", f"{sim_node.id} at {ballot} confirmed a round sent at "
                                      f"{sent_at:.4f}, after {higher} completed phase 1 at "
                                      f"{done_at:.4f}")  # fmt: skip

    def _check_renewal(self, node_id: str, ballot: Ballot, arrived_at: float) -> None:
        """A renewal needs a quorum round sent after it arrived; none can be confirmed once
        a majority promised a higher ballot, so no higher phase 1 may end before arrival."""
        for done_at, higher in self.phase1_done:
            if higher > ballot and done_at < arrived_at:
                self._fail("deposed", f"{node_id} at {ballot} renewed a lease for a request "
                                      f"that arrived at {arrived_at:.4f}, after {higher} "
                                      f"completed phase 1 at {done_at:.4f}")  # fmt: skip

    def _check_overlap(self, grant: list[Any], since: float) -> None:
        name, token, holder, start, end, _ = grant
        for other in self.intervals[name]:
            if other is grant or other[1] == token:
                continue
            if other[3] < end and max(start, since) < other[4]:
                self._fail("overlap", f"{name}: {holder} (token {token}) valid "
                                      f"[{start:.4f}, {end:.4f}] while {other[2]} (token "
                                      f"{other[1]}) valid [{other[3]:.4f}, {other[4]:.4f}]")  # fmt: skip
        self.intervals[name] = [g for g in self.intervals[name] if g[4] > self.now - 2.0]

    # -- clients -----------------------------------------------------------------------------

    def _delay(self) -> float:
        return self.rng.uniform(self.config.delay_min_s, self.config.delay_max_s)

    def _reply(self, sim_node: SimNode, reply: Reply) -> None:
        """Sent with the replier's ballot now (the ``deposed`` check's renewal ballot)."""
        request = self.requests.get(reply.to)
        if request is not None and isinstance(request.op, RenewOp) \
                and isinstance(reply.outcome, Lease) and sim_node.node is not None:  # fmt: skip
            self._check_renewal(sim_node.id, sim_node.node.ballot, self.arrived[reply.to])
        if reply.to in self.requests and sim_node.node is not None:
            event = ("lrep", int(reply.to), reply, sim_node.id, sim_node.node.ballot)
            self._at(self.now + self._delay(), event)

    def _send_request(self, index: int, op: RequestOp) -> None:
        client = self.clients[index]
        self.next_key += 1
        key = RequestKey(self.next_key)
        self.requests[key] = _Request(index, op, client.clock.local(self.now))
        client.request = key
        self._dispatch(key, client.hint)

    def _dispatch(self, key: RequestKey, hint: str | None) -> None:
        target = hint if hint in self.nodes else self.rng.choice(self.members)
        self._at(self.now + self._delay(), ("lreq", target, int(key)))
        self._at(self.now + REQUEST_TIMEOUT_S, ("lc-timeout", int(key)))

    def _retry(self, key: RequestKey, request: _Request, hint: str | None) -> None:
        """An unknown outcome: the same request again (same request id), possibly elsewhere.
        A renewal is retried while the lease is still trusted (its validity still counts
        from the first attempt, like the SDK's)."""
        client = self.clients[request.client]
        del self.requests[key]
        client.hint = hint
        if isinstance(request.op, RenewOp) and (client.grant is None
                                                or self.now >= client.grant[4]):  # fmt: skip
            client.request = None
            return
        self.retries += 1
        self.next_key += 1
        again = RequestKey(self.next_key)
        self.requests[again] = request
        client.request = again
        self._dispatch(again, hint)

    def _settled_step(self) -> int:
        heal_step = int(self.config.steps * (1 - self.config.liveness_fraction))
        return heal_step + (self.config.steps - heal_step) * 3 // 4

    def _client_act(self, index: int) -> None:
        client = self.clients[index]
        self._at(self.now + self.rng.uniform(0.02, 0.06), ("lc-act", index))
        if client.request is not None:
            return
        grant = client.grant
        if grant is not None and self.now >= grant[4]:
            client.grant = grant = None  # lost by its own clock: stop using it
        if grant is None:
            self.next_request_id += 1
            ttl = self.lease_rng.choice(TTLS_S)
            wait = self.lease_rng.choice((0.0, 0.2, 0.5))
            command = Acquire(self.lease_rng.choice(NAMES), client.holder, ttl,
                              request_id=f"r{self.next_request_id}")  # fmt: skip
            self._send_request(index, AcquireOp(command, wait))
            return
        name, token, _, _, end, ttl = grant
        if self.now >= client.hold_until:
            grant[4] = min(end, self.now)  # trusted no more from now on
            client.grant = None
            self.next_request_id += 1
            release = Release(name, client.holder, token, f"r{self.next_request_id}")
            self._send_request(index, ReleaseOp(release))
        elif self.now >= end - ttl * (1 - MARGIN) / 2:
            self._send_request(index, RenewOp(name, client.holder, token))

    def _reply_arrives(self, key: RequestKey, reply: Reply, node_id: str,
                       ballot: Ballot) -> None:  # fmt: skip
        request = self.requests.get(key)
        if request is None:
            return  # timed out already
        client = self.clients[request.client]
        outcome = reply.outcome
        match outcome:
            case NotPrimary(primary_hint=hint):
                client.hint = hint
                self._retry(key, request, hint)
                return
            case Recovering():
                self._retry(key, request, node_id)
                return
            case Unavailable():
                client.hint = None
                self._retry(key, request, None)
                return
        del self.requests[key]
        client.request = None
        self.answered_after_heal += not self.faults_on
        op = request.op
        until = client.clock.real(request.first_sent_local) + self._trusted_s(op, client)
        if isinstance(op, AcquireOp) and isinstance(outcome, Lease) \
                and outcome.holder == client.holder and until > self.now:  # fmt: skip
            self.grants += 1
            client.hint = node_id
            client.grant = [outcome.name, outcome.token, client.holder, self.now, until,
                            outcome.ttl_s]  # fmt: skip
            client.hold_until = self.now + self.lease_rng.uniform(0.05, 2.0)
            self.intervals[outcome.name].append(client.grant)
            self._check_overlap(client.grant, self.now)
        elif isinstance(op, RenewOp) and client.grant is not None \
                and client.grant[1] == op.token:  # fmt: skip
            if isinstance(outcome, Refused):
                client.grant = None
            elif isinstance(outcome, Lease):
                self.renewals += 1
                grant_key = (outcome.name, outcome.token)
                self.renewed_under[grant_key] = max(ballot,
                                                    self.renewed_under.get(grant_key, ballot))
                if until > client.grant[4]:
                    client.grant[4] = until
                    self._check_overlap(client.grant, self.now)
        elif isinstance(op, ReleaseOp) and not isinstance(outcome, Released | Refused):
            self._fail("release", f"unexpected answer to a release: {outcome}")

    def _trusted_s(self, op: RequestOp, client: _Client) -> float:
        """How long, from the first send, a reply to ``op`` lets the client trust its lease
        (by the client's own clock, converted to real time)."""
        if isinstance(op, AcquireOp):
            ttl = op.command.ttl_s
        elif isinstance(op, RenewOp) and client.grant is not None:
            ttl = client.grant[5]
        else:
            return 0.0
        return ttl * (1 - MARGIN) / client.clock.rate
