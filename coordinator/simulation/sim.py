"""A deterministic simulation of a paxlock cluster: one seed gives one run, bit for bit.

The simulation owns the clock, the network and every node's disk. A step is one event taken
from a time-ordered queue: a message arrives, a node's timer fires, a client submits or
retries a command, or a fault strikes (crash, restart, partition, heal). After every step the
checkers examine what changed.

The runtime's rule "persist, then send" is modelled literally: a node's records reach its disk
first, then — unless the node crashes in between, which the simulation injects — its messages
leave; the messages the core lets leave before the disk (``ready.leaves_before_durable``: a
primary's Accepts of a durably promised ballot, Chosen, Heartbeat) leave first, and a crash
may strike before the records are written. A crash loses all volatile state; a restarted
node is rebuilt from its disk alone.

Each node runs a tiny state machine (``machine.HashChain``) over the values it delivers and
compacts its log through ``Node.compact`` every 10–40 applied slots (seeded), so that nodes
that crashed or lagged behind must catch up by snapshot transfer; an ``installed`` snapshot
replaces the state machine before the step's ``learned`` values are applied, as in the runtime.

A run has a *safety phase* (every fault on) and then a *liveness phase*: faults stop, crashed
nodes restart, the network heals, and every submitted command must be chosen and learned by
every node before the last step.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from paxlock.coordinator.core.learner import LearnMode
from paxlock.coordinator.core.membership import Schedule, decode_snapshot, encode_snapshot, genesis
from paxlock.coordinator.simulation.operator import choose, may_lose_a_store
from paxlock.coordinator.core.ballot import Ballot
from paxlock.coordinator.core.messages import (
    Accept,
    Accepted,
    AcceptRecord,
    Chosen,
    ChosenRecord,
    Envelope,
    Member,
    Message,
    Reconfigure,
    Record,
    SnapshotRecord,
)
from paxlock.coordinator.core.node import CoreConfig, Node
from paxlock.coordinator.core.proposer import Role
from paxlock.coordinator.core.ready import DurableState, Ready, commit_may_wait, leaves_before_durable
from paxlock.coordinator.simulation.checkers import Checker, Violation
from paxlock.coordinator.simulation.forger import forge
from paxlock.coordinator.simulation.machine import HashChain
from paxlock.coordinator.simulation.network import Network, NetworkFaults

NodeFactory = Callable[[CoreConfig, DurableState, random.Random], Node]
DiskFactory = Callable[[], DurableState]


EarlySend = Callable[[Message, Ballot], bool]


@dataclass(frozen=True, slots=True)
class SimConfig:
    nodes: int = 3
    steps: int = 2000
    learn_mode: str = "broadcast"
    liveness_fraction: float = 0.4
    """The last part of the run, in steps, in which faults have stopped."""
    drop: float = 0.05
    duplicate: float = 0.03
    delay_min_s: float = 0.001
    delay_max_s: float = 0.012
    crash_every_s: float = 0.08
    """Mean time between fault events (crash, restart, partition, heal)."""
    crash_between_persist_and_send: float = 0.01
    crash_between_early_send_and_persist: float = 0.01
    """A step whose early messages (``ready.leaves_before_durable``) left crashes before its
    records reach the disk, as a primary may between its Accepts and its own fsync."""
    election_timeout_s: float = 0.06
    heartbeat_s: float = 0.015
    retry_s: float = 0.03
    client_every_s: float = 0.01
    client_retry_s: float = 0.05
    outstanding_max: int = 16
    in_flight_slots_max: int = 8
    batch_commands_max: int = 4
    compact_every: tuple[int, int] = (10, 40)
    """A node compacts after applying a seeded number of slots in this range (inclusive)."""
    prevote: bool = False
    snapshot_chunks: int = 1
    """Above 1 on some seeds (``runner.config_for``): snapshots then travel in about this
    many chunks (``Simulation.snapshot_bytes_typical`` cut into as many), under drops,
    duplicates and crashes. 1: the runtime's chunk size, so each travels whole."""
    snapshot_chunk_bytes: int = 1024 * 1024
    slots_ahead_margin: int = 1024
    forge_every_s: float = 0.0
    """Mean time between forged peer messages while faults are on (``forger``); 0: none."""
    reconfigure_every_s: float = 0.0
    """Mean time between the operator's membership changes (``operator``); 0: the members
    are static, every incarnation is ``""`` and no store is ever lost."""
    spares: int = 2
    """With reconfiguration: members outside the genesis configuration, up and waiting to
    be added."""
    lose_store: float = 0.15
    """With reconfiguration: the share of fault events that lose a member's store."""
    alpha: int = 4
    """With reconfiguration: slots from a change to the slots it governs (a cluster's is
    ``membership.ALPHA``; small here, so that changes take effect within a run)."""

    def core(self, node_id: str, members: tuple[str, ...], incarnation: str = "") -> CoreConfig:
        return CoreConfig(
            node_id, members, LearnMode.parse(self.learn_mode),
            election_timeout_s=self.election_timeout_s, heartbeat_s=self.heartbeat_s,
            retry_s=self.retry_s, in_flight_slots_max=self.in_flight_slots_max,
            batch_commands_max=self.batch_commands_max, prevote=self.prevote,
            snapshot_chunk_bytes=self.snapshot_chunk_bytes,
            slots_ahead_margin=self.slots_ahead_margin, incarnation=incarnation,
        )  # fmt: skip


@dataclass(slots=True)
class SimNode:
    id: str
    disk: DurableState
    node: Node | None = None
    incarnation: int = 0
    tick_at: float = float("inf")
    delivered: int = 0
    machine: HashChain = field(default_factory=HashChain)
    compact_at: int = 0
    """Compact once ``delivered`` reaches this slot."""
    store: int = 0
    """How many times the store was lost (its incarnation is ``id.store`` with
    reconfiguration on)."""
    unwritten: list[Record] = field(default_factory=list)
    """Records that may wait for a later commit (``ready.commit_may_wait``) and wait for
    one: lost in a crash, as the runtime's are."""


@dataclass(slots=True)
class Result:
    seed: int
    steps: int
    decisions: int
    violations: list[Violation]
    learn_messages: int
    sim_time_s: float
    trace: list[str] = field(default_factory=list)
    compactions: int = 0
    installs: int = 0
    """Snapshots installed by catch-up (transfers; restores at restart not counted)."""
    chunked_installs: int = 0
    """Of those, the ones that travelled in more than one chunk."""
    dropped: dict[str, int] = field(default_factory=dict)
    """Peer messages the nodes dropped unused, by reason (``Node.dropped``), all runs."""
    reconfigurations: int = 0
    """Configuration changes chosen and made (the checker's ground truth)."""
    stores_lost: int = 0


def default_node(config: CoreConfig, durable: DurableState, rng: random.Random) -> Node:
    return Node(config, durable, rng)


SETTLE_STEPS_MAX = 5000
"""How many steps past the last one liveness may take to settle (``Simulation.run``)."""


class Simulation:
    snapshot_bytes_typical = 24
    """About how large this simulation's snapshots are (``machine.HashChain``'s: 24 bytes),
    to turn ``SimConfig.snapshot_chunks`` into a chunk size."""

    def __init__(
        self,
        config: SimConfig,
        seed: int,
        *,
        node_factory: NodeFactory = default_node,
        disk_factory: DiskFactory = DurableState,
        stop_on_violation: bool = True,
        trace: bool = False,
        leaves_early: EarlySend = leaves_before_durable,
    ) -> None:
        """``leaves_early`` is the runtime's rule of what leaves before the disk (replaced
        only to plant a bug)."""
        self.leaves_before_durable = leaves_early
        self.reconfiguring = config.reconfigure_every_s > 0
        spares = config.spares if self.reconfiguring else 0
        members = tuple(f"n{i + 1}" for i in range(config.nodes + spares))
        voters = members[:config.nodes]
        self.genesis = (
            genesis((Member(m, f"{m}.0") for m in voters), config.alpha) if self.reconfiguring
            else genesis(Member(m, "") for m in voters)
        )  # fmt: skip
        if config.snapshot_chunks > 1:  # the machine's bytes, after the schedule's
            first = Schedule.starting(self.genesis)
            typical = len(encode_snapshot(first, bytes(self.snapshot_bytes_typical)))
            chunk_bytes = max(1, typical // config.snapshot_chunks)
            config = replace(config, snapshot_chunk_bytes=chunk_bytes)
        self.config = config
        self.seed = seed
        self.node_factory = node_factory
        self.stop_on_violation = stop_on_violation
        self.tracing = trace
        self.trace: list[str] = []
        self.members = members
        self.rng = random.Random(f"paxlock-sim/{seed}")
        self.network = Network(
            random.Random(f"paxlock-sim/{seed}/network"),
            NetworkFaults(config.drop, config.duplicate, config.delay_min_s, config.delay_max_s),
        )
        self.checker = Checker(self.genesis)
        self.now = 0.0
        self.queue: list[tuple[float, int, tuple[object, ...]]] = []
        self.seq = 0
        self.disk_factory = disk_factory
        self.nodes = {m: SimNode(m, self._new_disk()) for m in self.members}
        self.operator_rng = random.Random(f"paxlock-sim/{seed}/operator")
        self.changes = 0
        self.stores_lost = 0
        self.faults_on = True
        self.outstanding: dict[bytes, str | None] = {}  # command -> node to send it to
        self.next_command = 0
        self.learn_messages = 0
        self.compactions = 0
        self.compact_rng = random.Random(f"paxlock-sim/{seed}/compact")
        self.chunked_installs = 0
        self.forge_rng = random.Random(f"paxlock-sim/{seed}/forge")
        self.forged = 0
        self.dropped: dict[str, int] = {}

    # -- event queue -------------------------------------------------------------------------

    def _at(self, when: float, event: tuple[object, ...]) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (when, self.seq, event))

    def _log(self, text: str) -> None:
        if self.tracing:
            self.trace.append(f"{self.checker.step:5d} {self.now:9.4f} {text}")

    # -- node lifecycle ----------------------------------------------------------------------

    def _boot(self, sim_node: SimNode) -> None:
        sim_node.incarnation += 1
        sim_node.delivered = 0
        sim_node.tick_at = float("inf")
        sim_node.machine = HashChain()
        sim_node.compact_at = sim_node.disk.snapshot_slot + self._compact_interval()
        rng = random.Random(f"paxlock-sim/{self.seed}/{sim_node.id}/{sim_node.incarnation}")
        config = self._core_config(sim_node)
        sim_node.node = self.node_factory(config, sim_node.disk.copy(), rng)
        self._log(f"{sim_node.id} starts (incarnation {sim_node.incarnation})")
        self._process(sim_node, sim_node.node.start(self.now))

    def _new_disk(self) -> DurableState:
        disk = self.disk_factory()
        if self.reconfiguring:
            disk.genesis = self.genesis  # as ``paxlock serve --join`` stores it
        return disk

    def _core_config(self, sim_node: SimNode) -> CoreConfig:
        if not self.reconfiguring:
            return self.config.core(sim_node.id, self.members)
        return self.config.core(sim_node.id, (), self.incarnation(sim_node.id))

    def incarnation(self, node_id: str) -> str:
        """The member incarnation of ``node_id``'s store now (``""``: static membership)."""
        return f"{node_id}.{self.nodes[node_id].store}" if self.reconfiguring else ""

    def _refused(self, event: tuple[object, ...]) -> bool:
        """What the edge does on every peer connection (``api.server.peer``): a message
        from a member incarnation the receiver's configurations do not list is refused."""
        _, envelope, incarnation = event
        assert isinstance(envelope, Envelope) and isinstance(incarnation, str)
        target = self.nodes[envelope.dst].node
        if target is None or not self.reconfiguring:
            return False
        if target.hears(envelope.src, incarnation):
            return False
        self.dropped["unknown_incarnation"] = self.dropped.get("unknown_incarnation", 0) + 1
        return True

    def _crash(self, sim_node: SimNode) -> None:
        self._log(f"{sim_node.id} crashes")
        self._count_drops(sim_node)
        sim_node.node = None
        sim_node.unwritten = []
        sim_node.tick_at = float("inf")
        restart_in = self.rng.expovariate(1 / self.config.crash_every_s)
        self._at(self.now + restart_in, ("restart", sim_node.id))

    def _count_drops(self, sim_node: SimNode) -> None:
        """Add up what an incarnation dropped, before it is gone."""
        if sim_node.node is not None:
            for reason, count in sim_node.node.dropped.items():
                self.dropped[reason] = self.dropped.get(reason, 0) + count

    def _compact_interval(self) -> int:
        return self.compact_rng.randint(*self.config.compact_every)

    def _process(self, sim_node: SimNode, ready: Ready) -> None:
        """Persist, then (unless crashed in between) send; then install, apply, maybe compact,
        and arm the timer."""
        checker = self.checker
        late = self._send_early(sim_node, ready.records, ready.messages)
        if late is None:
            return
        for record in self._commit(sim_node, ready.records, bool(late)):
            sim_node.disk.apply(record)
            self._observe_record(sim_node, record)
        if (
            self.faults_on
            and late
            and self.rng.random() < self.config.crash_between_persist_and_send
        ):
            self._crash(sim_node)
            return
        for envelope in late:
            self._send(envelope)
        if ready.installed is not None:
            self._install(sim_node, ready)
        machine = sim_node.machine
        for entry in ready.learned:
            checker.on_deliver(sim_node.id, sim_node.incarnation, entry)
            sim_node.delivered = entry.slot
            machine.apply(entry.slot, entry.value)
        for rejection in ready.rejected:
            if rejection.command in self.outstanding:
                self.outstanding[rejection.command] = rejection.primary_hint
        if ready.deadline is not None and ready.deadline < sim_node.tick_at:
            sim_node.tick_at = max(ready.deadline, self.now)
            self._at(sim_node.tick_at, ("tick", sim_node.id, sim_node.incarnation))
        if sim_node.delivered >= sim_node.compact_at and sim_node.node is not None:
            self._compact(sim_node)

    def _send_early(self, sim_node: SimNode, records: list[Record],
                    messages: list[Envelope]) -> list[Envelope] | None:  # fmt: skip
        """Send what may leave before ``records`` are durable (judged, as the runtime does,
        against the promise already on the disk); maybe crash before they are written
        (None: crashed). Returns the messages that wait for the disk."""
        if not messages:
            return messages
        promised = sim_node.disk.promised
        early: list[Envelope] = []
        late: list[Envelope] = []
        for envelope in messages:  # its own too: the runtime loops them back at once
            goes = self.leaves_before_durable(envelope.msg, promised)
            (early if goes else late).append(envelope)
        for envelope in early:
            self._send(envelope)
        if (self.faults_on and early and records
                and self.rng.random() < self.config.crash_between_early_send_and_persist):  # fmt: skip
            self._crash(sim_node)
            return None
        return late

    def _commit(self, sim_node: SimNode, records: list[Record], messages_wait: bool) -> (
        list[Record]
    ):
        """The records that reach the disk now, in order: none while every unwritten record
        may wait for a later commit and no message waits for them (the runtime's
        ``LAZY_COMMIT_S`` aside: here they wait for the next commit, however long)."""
        sim_node.unwritten += records
        if not messages_wait and all(map(commit_may_wait, sim_node.unwritten)):
            return []
        written, sim_node.unwritten = sim_node.unwritten, []
        return written

    def _observe_record(self, sim_node: SimNode, record: Record) -> None:
        """A record reached the node's disk: the checkers see every durable fact."""
        checker = self.checker
        if isinstance(record, AcceptRecord):
            checker.on_accept_record(sim_node.id, record.slot, record.ballot, record.value,
                                     self.incarnation(sim_node.id))  # fmt: skip
        elif isinstance(record, ChosenRecord):
            checker.on_learn(sim_node.id, record.slot, record.value)
        elif isinstance(record, SnapshotRecord):
            checker.on_snapshot(sim_node.id, record.slot, decode_snapshot(record.data)[1])

    def _install(self, sim_node: SimNode, ready: Ready) -> None:
        """Replace the state machine with the snapshot, before any value after it."""
        assert ready.installed is not None
        slot, data = ready.installed
        transferred = any(isinstance(r, SnapshotRecord) for r in ready.records)
        self._log(f"{sim_node.id} installs a snapshot at slot {slot}"
                  f"{' from a peer' if transferred else ''}")  # fmt: skip
        sim_node.machine.restore(data)
        sim_node.delivered = slot
        self.chunked_installs += transferred and len(data) > self.config.snapshot_chunk_bytes
        self.checker.on_install(sim_node.id, sim_node.incarnation, slot, data,
                                transferred=transferred)  # fmt: skip

    def _compact(self, sim_node: SimNode) -> None:
        """Snapshot the state machine at the applied slot, as a runtime would."""
        assert sim_node.node is not None
        slot = sim_node.delivered
        sim_node.compact_at = slot + self._compact_interval()
        self.compactions += 1
        self._log(f"{sim_node.id} compacts at slot {slot}")
        self._process(sim_node, sim_node.node.compact(slot, sim_node.machine.snapshot(), self.now))

    def _send(self, envelope: Envelope) -> None:
        msg = envelope.msg
        if isinstance(msg, Accept):
            self.checker.on_issue(msg.slot, msg.ballot, msg.value)
        elif isinstance(msg, Accepted | Chosen):
            self.learn_messages += 1
        incarnation = self.incarnation(envelope.src)
        for when in self.network.arrivals(envelope.src, envelope.dst, self.now):
            self._at(when, ("deliver", envelope, incarnation))

    # -- events ------------------------------------------------------------------------------

    def _handle(self, event: tuple[object, ...]) -> bool:
        """Runs one event; false for an event that turned out to be void (not a step)."""
        match event:
            case ("deliver", Envelope() as envelope, str()):
                target = self.nodes[envelope.dst]
                if target.node is None or self._refused(event):
                    return False
                self._process(target, target.node.receive(envelope.src, envelope.msg, self.now))
            case ("tick", str() as node_id, int() as incarnation):
                target = self.nodes[node_id]
                if (target.node is None or target.incarnation != incarnation
                        or target.tick_at != self.now):  # fmt: skip
                    return False
                target.tick_at = float("inf")
                self._process(target, target.node.tick(self.now))
            case ("restart", str() as node_id):
                target = self.nodes[node_id]
                if target.node is not None:
                    return False
                self._boot(target)
            case ("client",):
                self._client_submit()
            case ("client-retry",):
                self._client_retry()
            case ("fault",):
                self._fault()
            case ("forge",):
                self._forge()
            case ("heal",):
                self._heal()
            case ("reconfigure",):
                self._reconfigure()
            case _:
                raise AssertionError(f"unknown event {event!r}")
        return True

    def _client_submit(self) -> None:
        if self.faults_on:
            self._at(self.now + self.rng.expovariate(1 / self.config.client_every_s), ("client",))
        if len(self.outstanding) >= self.config.outstanding_max:
            return
        command = f"c{self.next_command}".encode()
        self.next_command += 1
        self.checker.on_submit(command)
        self.outstanding[command] = None
        self._submit(command)

    def _client_retry(self) -> None:
        self._at(self.now + self.config.client_retry_s, ("client-retry",))
        done = [c for c in self.outstanding if c in self.checker.chosen_commands]
        for command in done:
            del self.outstanding[command]
        for command in list(self.outstanding):
            self._submit(command)

    def _submit(self, command: bytes) -> None:
        """Like an SDK: send to the hinted primary, else to a random live node."""
        hint = self.outstanding.get(command)
        target = self.nodes.get(hint) if hint else None
        if target is None or target.node is None:
            live = [n for n in self.nodes.values() if n.node is not None]
            if not live:
                return
            target = self.rng.choice(live)
        assert target.node is not None
        self._process(target, target.node.submit(command, self.now))

    def _fault(self) -> None:
        if not self.faults_on:
            return
        self._at(self.now + self.rng.expovariate(1 / self.config.crash_every_s), ("fault",))
        kind = self.rng.choice(("crash", "crash", "partition", "heal-network"))
        if self.reconfiguring and self.operator_rng.random() < self.config.lose_store:
            self._lose_store()
        elif kind == "crash":
            live = [n for n in self.nodes.values() if n.node is not None]
            if live:
                self._crash(self.rng.choice(live))
        elif kind == "partition":
            self._log(f"partition: {self.network.partition(self.members)}")
        else:
            self._log("network heals")
            self.network.heal()

    def _forge(self) -> None:
        """A forged or mis-sent message reaches a node (``forger``), as any other would."""
        if not self.faults_on:
            return
        self._at(self.now + self.forge_rng.expovariate(1 / self.config.forge_every_s),
                 ("forge",))  # fmt: skip
        envelope = forge(self.forge_rng, {m: n.node for m, n in self.nodes.items()})
        if envelope is not None:
            self._log(f"forged {type(envelope.msg).__name__} {envelope.src} -> {envelope.dst}")
            self.forged += 1
            incarnation = self.incarnation(envelope.src)
            for when in self.network.arrivals(envelope.src, envelope.dst, self.now):
                self._at(when, ("deliver", envelope, incarnation))

    # -- membership (``operator``) -----------------------------------------------------------

    def _reconfigure(self) -> None:
        """The operator asks the primary for one change (repairs only, once faults stop)."""
        self._at(self.now + self.operator_rng.expovariate(1 / self.config.reconfigure_every_s),
                 ("reconfigure",))  # fmt: skip
        primaries = [self.nodes[p] for p in self.primaries()]
        if not primaries:
            return
        sim_node = self.operator_rng.choice(primaries)
        assert sim_node.node is not None
        schedule = sim_node.node.schedule
        if schedule.pending is not None and self.operator_rng.random() < 0.9:
            return  # mostly waits for the last change; sometimes proposes one that is void
        incarnations = {m: self.incarnation(m) for m in self.members}
        change = choose(self.operator_rng, schedule.latest, incarnations,
                        repair_only=not self.faults_on)  # fmt: skip
        if change is not None:
            self.changes += 1
            self._log(f"{sim_node.id} proposes voters {[m.id for m in change.voters]} "
                      f"learners {[m.id for m in change.learners]}")  # fmt: skip
            self._propose_change(sim_node, change)

    def _propose_change(self, sim_node: SimNode, change: Reconfigure) -> None:
        assert sim_node.node is not None
        self._process(sim_node, sim_node.node.reconfigure(change, self.now))

    def _lose_store(self) -> None:
        """A member's store is lost: it restarts empty, as a new incarnation."""
        live = [n for n in self.nodes.values() if n.node is not None]
        primary = next((self.nodes[p] for p in self.primaries()), None)
        if primary is None or primary.node is None:
            return  # only while the operator can see the configurations
        proposer = primary.node.proposer
        proposed = [f.value for f in proposer.in_flight.values()]
        if any(isinstance(v, Reconfigure) for v in (*proposed, *proposer.singles)):
            return  # nor while a change is on its way (it may leave too few voters)
        incarnations = {m: self.incarnation(m) for m in self.members}
        if not may_lose_a_store(primary.node.schedule.configurations(), incarnations):
            return
        sim_node = self.operator_rng.choice(live)
        self._crash(sim_node)
        sim_node.store += 1
        sim_node.disk = self._new_disk()
        sim_node.unwritten = []
        self.stores_lost += 1
        self._log(f"{sim_node.id} lost its store: now {self.incarnation(sim_node.id)}")

    def live_members(self) -> dict[str, int]:
        """How far each member of the final configuration got (every node, when static):
        a node that no configuration lists needs not catch up."""
        config = self.checker.truth.latest
        return {n.id: n.delivered for n in self.nodes.values()
                if not self.reconfiguring or config.knows(n.id, self.incarnation(n.id))}  # fmt: skip

    def _heal(self) -> None:
        """The liveness phase begins: no more faults, every node up, every link whole."""
        self._log("faults stop")
        self.faults_on = False
        self.network.heal()
        self.network.faults = NetworkFaults(0.0, 0.0, self.config.delay_min_s,
                                            self.config.delay_max_s)  # fmt: skip
        for sim_node in self.nodes.values():
            if sim_node.node is None:
                self._boot(sim_node)

    # -- the run -----------------------------------------------------------------------------

    def run(self) -> Result:
        config = self.config
        for sim_node in self.nodes.values():
            self._boot(sim_node)
        self._at(0.0, ("client",))
        self._at(config.client_retry_s, ("client-retry",))
        self._at(self.rng.expovariate(1 / config.crash_every_s), ("fault",))
        if config.forge_every_s > 0:
            self._at(self.forge_rng.expovariate(1 / config.forge_every_s), ("forge",))
        if self.reconfiguring:
            self._at(self.operator_rng.expovariate(1 / config.reconfigure_every_s),
                     ("reconfigure",))  # fmt: skip
        heal_step = int(config.steps * (1 - config.liveness_fraction))
        checker = self.checker
        while checker.step < config.steps and self.queue:
            if checker.step == heal_step and self.faults_on:
                self._heal()
            when, _, event = heapq.heappop(self.queue)
            self.now = when
            try:
                if not self._handle(event):
                    continue
            except AssertionError as error:
                # An invariant asserted inside a node: a run with a broken protocol can get
                # here after a checker fired; a correct one never should.
                checker.violations.append(Violation("assertion", checker.step, repr(error)))
                break
            checker.step += 1
            if checker.violations and self.stop_on_violation:
                break
        if not checker.violations or not self.stop_on_violation:
            self._settle_log()
            checker.check_liveness(self.live_members())
        for sim_node in self.nodes.values():
            self._count_drops(sim_node)
        return Result(
            self.seed, checker.step, checker.decisions, list(checker.violations),
            self.learn_messages, self.now, self.trace, self.compactions, checker.installs,
            self.chunked_installs, self.dropped, self.checker.reconfigurations, self.stores_lost,
        )  # fmt: skip

    def _settle_log(self) -> None:
        """Liveness is "eventually": past the last step, with faults off and no new client
        commands, run on until every command is chosen and every node caught up, or
        ``SETTLE_STEPS_MAX`` more steps pass (an election storm after the heal can take a
        few hundred steps of the fixed budget)."""
        for _ in range(SETTLE_STEPS_MAX):
            unmet = self.checker.liveness_unmet(self.live_members())
            if not unmet or not self.queue or self.checker.violations:
                return
            self.now, _, event = heapq.heappop(self.queue)
            try:
                self._handle(event)
            except AssertionError as error:
                self.checker.violations.append(Violation("assertion", self.checker.step,
                                                         repr(error)))  # fmt: skip
                return

    def primaries(self) -> list[str]:
        return [n.id for n in self.nodes.values() if n.node and n.node.role is Role.PRIMARY]
