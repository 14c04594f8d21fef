"""The simulation at the lease level: every node applies the chosen log to a real
``LeaseMachine``, the primary runs a real ``LeaseKeeper`` (expiry timers, waiters, renewals
confirmed by quorum rounds), and simulated lease clients acquire, renew and release over a
delayed network while the usual faults strike. Lease checkers, after every step:

- ``overlap``   at no instant do two clients hold a valid lease on one name by their own
                conservative clocks (valid from the reply until sent + ttl × (1 − margin));
- ``tokens``    the fencing tokens of successive grants of a name strictly increase;
- ``deposed``   a primary that lost office neither grants nor renews: a renewal is confirmed
                only by a round sent before any higher ballot took office.

The glue between core, machine and keeper mirrors ``coordinator.service`` (which wraps it in
asyncio); the state machine, the keeper and the consensus core are the product's own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from paxlock.coordinator.core.ballot import Ballot
from paxlock.coordinator.core.keeper import (
    AcquireRequest,
    KeeperReady,
    LeaseKeeper,
    Reply,
    RequestKey,
    Unavailable,
)
from paxlock.coordinator.core.lease_commands import Acquire, Lease, Refused, Release
from paxlock.coordinator.core.leases import LeaseMachine
from paxlock.coordinator.core.messages import Batch
from paxlock.coordinator.core.proposal import Proposal, decode_proposal, encode_proposal
from paxlock.coordinator.core.proposer import Role
from paxlock.coordinator.core.ready import BecamePrimary, Confirmed, Ready, SteppedDown
from paxlock.coordinator.simulation.checkers import Violation
from paxlock.coordinator.simulation.sim import (
    NodeFactory,
    Result,
    SimConfig,
    Simulation,
    SimNode,
    default_node,
)

NAMES = ("alpha", "beta")
TTL_S = 0.3
MARGIN = 0.1


@dataclass(slots=True)
class _LeaseNode:
    machine: LeaseMachine = field(default_factory=LeaseMachine)
    keeper: LeaseKeeper = field(default_factory=LeaseKeeper)
    origin: str = ""
    seq: int = 0
    mine: dict[int, RequestKey | None] = field(default_factory=dict)
    office_slot: int | None = None
    round: tuple[int, int, float] | None = None
    """(keeper round id, core confirmation seq, sent at)."""
    tick_at: float = float("inf")
    last_token: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class _Request:
    client: int
    kind: str
    name: str
    token: int
    sent_at: float


@dataclass(slots=True)
class _Client:
    holder: str
    hint: str | None = None
    name: str | None = None
    token: int | None = None
    valid_until: float = 0.0
    hold_until: float = 0.0
    busy: bool = False
    grant: list[Any] | None = None
    """The interval [name, token, holder, start, end] of the current grant."""


class LeaseSimulation(Simulation):
    def __init__(self, config: SimConfig, seed: int, *, clients: int = 5,
                 stop_on_violation: bool = True, trace: bool = False,
                 node_factory: NodeFactory = default_node,
                 keeper_factory: Callable[[], LeaseKeeper] = LeaseKeeper,
                 machine_factory: Callable[[], LeaseMachine] = LeaseMachine) -> None:  # fmt: skip
        """The factories let tests substitute deliberately broken parts."""
        # No compaction here: snapshots are covered by the log-level simulation.
        super().__init__(replace(config, compact_every=(10**9, 10**9)), seed,
                         node_factory=node_factory, stop_on_violation=stop_on_violation,
                         trace=trace)  # fmt: skip
        self.keeper_factory = keeper_factory
        self.machine_factory = machine_factory
        self.checker.every_command_retried = False
        self.leases: dict[str, _LeaseNode] = {}
        self.clients = [_Client(f"client{i}") for i in range(clients)]
        self.requests: dict[RequestKey, _Request] = {}
        self.next_key = 0
        self.offices: list[tuple[float, Ballot]] = []
        self.intervals: dict[str, list[list[Any]]] = {name: [] for name in NAMES}
        self.grants = self.renewals = 0

    # -- the generic workload is replaced by lease clients ---------------------------------------

    def _client_submit(self) -> None:
        return

    def _client_retry(self) -> None:
        return

    def run(self) -> Result:
        for index in range(len(self.clients)):
            self._at(0.05 * index, ("lc-act", index))
        return super().run()

    def _fail(self, check: str, detail: str) -> None:
        self.checker.violations.append(Violation(check, self.checker.step, detail))

    # -- nodes -------------------------------------------------------------------------------

    def _boot(self, sim_node: SimNode) -> None:
        self.leases[sim_node.id] = _LeaseNode(
            self.machine_factory(), self.keeper_factory(),
            origin=f"{sim_node.id}/{sim_node.incarnation + 1}",
        )  # fmt: skip
        super()._boot(sim_node)

    def _process(self, sim_node: SimNode, ready: Ready) -> None:
        super()._process(sim_node, ready)
        node = sim_node.node
        if node is None:  # crashed between persist and send: volatile lease state is gone
            return
        state = self.leases[sim_node.id]
        for event in ready.events:
            if isinstance(event, BecamePrimary):
                self.offices.append((self.now, event.ballot))
                state.office_slot = node.proposer.next_slot - 1
            elif isinstance(event, SteppedDown):
                state.office_slot, state.round = None, None
                if state.keeper.in_office:
                    for reply in state.keeper.step_down():
                        self._reply(reply)
            elif isinstance(event, Confirmed):
                self._confirmed(sim_node, state, event.seq)
        for entry in ready.learned:
            if isinstance(entry.value, Batch):
                for raw in entry.value.commands:
                    self._apply(sim_node, state, decode_proposal(raw))
        for rejection in ready.rejected:
            proposal = decode_proposal(rejection.command)
            if proposal.origin == state.origin and proposal.seq in state.mine:
                key = state.mine.pop(proposal.seq)
                if key is not None:
                    self._reply(Reply(key, Unavailable("rejected")))
                if state.keeper.in_office:
                    self._run(sim_node, state.keeper.on_rejected(proposal.command, self.now))
        if (state.office_slot is not None and node.role is Role.PRIMARY
                and node.chosen_index >= state.office_slot and not state.keeper.in_office):  # fmt: skip
            state.office_slot = None
            self._run(sim_node, state.keeper.take_office(state.machine, self.now))

    def _apply(self, sim_node: SimNode, state: _LeaseNode, proposal: Proposal) -> None:
        command, machine = proposal.command, state.machine
        revision = machine.revision
        result = machine.apply(command)
        if isinstance(result, Lease) and machine.revision > revision and isinstance(command, Acquire):
            last = state.last_token.get(result.name, 0)
            if result.token <= last:
                self._fail("tokens", f"{sim_node.id} granted {result.name} with token "
                                     f"{result.token} after token {last}")  # fmt: skip
            state.last_token[result.name] = result.token
        if state.keeper.in_office:
            self._run(sim_node, state.keeper.on_applied(command, result, self.now))
        if proposal.origin == state.origin and proposal.seq in state.mine:
            key = state.mine.pop(proposal.seq)
            if key is not None:
                expires = state.keeper.expires_in(command.name, self.now) if state.keeper.in_office else None
                self._reply(Reply(key, result, expires))

    def _confirmed(self, sim_node: SimNode, state: _LeaseNode, seq: int) -> None:
        if state.round is None or state.round[1] > seq or not state.keeper.in_office:
            return
        round_id, _, sent_at = state.round
        state.round = None
        assert sim_node.node is not None
        ballot = sim_node.node.ballot
        for taken_at, higher in self.offices:
            if higher > ballot and taken_at <= sent_at:
                self._fail("deposed", f"{sim_node.id} at {ballot} confirmed a round sent at "
                                      f"{sent_at:.4f}, after {higher} took office at "
                                      f"{taken_at:.4f}")  # fmt: skip
        self._run(sim_node, state.keeper.on_confirmed(round_id, self.now))

    def _run(self, sim_node: SimNode, ready: KeeperReady) -> None:
        """Carry out the keeper's effects, as ``LeaseService._run`` does."""
        state = self.leases[sim_node.id]
        for proposal in ready.proposals:
            if sim_node.node is None:
                break
            state.seq += 1
            state.mine[state.seq] = proposal.reply_to
            raw = encode_proposal(Proposal(state.origin, state.seq, proposal.command))
            self.checker.on_submit(raw)
            self._process(sim_node, sim_node.node.submit(raw, self.now))
        for reply in ready.replies:
            self._reply(reply)
        if sim_node.node is not None and state.keeper.in_office \
                and state.keeper.needs_confirmation():  # fmt: skip
            self._start_round(sim_node, state)
        if ready.deadline is not None and ready.deadline < state.tick_at:
            state.tick_at = ready.deadline
            self._at(ready.deadline, ("ltick", sim_node.id, sim_node.incarnation))

    def _start_round(self, sim_node: SimNode, state: _LeaseNode) -> None:
        """One quorum round for every renewal waiting (the keeper's confirmation)."""
        assert sim_node.node is not None
        round_id = state.keeper.start_round(self.now)
        seq, confirm = sim_node.node.request_confirmation(self.now)
        if seq is None:
            state.keeper.on_round_failed(round_id)
        else:
            state.round = (round_id, seq, self.now)
            self._process(sim_node, confirm)

    # -- events ------------------------------------------------------------------------------

    def _handle(self, event: tuple[object, ...]) -> bool:
        match event:
            case ("lc-act", int() as index):
                self._client_act(index)
            case ("lreq", str() as node_id, int() as key):
                return self._request_arrives(self.nodes[node_id], RequestKey(key))
            case ("lrep", int() as key, outcome, expires):
                assert expires is None or isinstance(expires, float)
                self._reply_arrives(RequestKey(key), outcome, expires)
            case ("lc-timeout", int() as index, int() as key):
                if self.requests.pop(RequestKey(key), None) is None:
                    return False
                self.clients[index].busy = False  # no answer: try again (a new request)
            case ("ltick", str() as node_id, int() as incarnation):
                sim_node = self.nodes[node_id]
                state = self.leases.get(node_id)
                if (sim_node.node is None or sim_node.incarnation != incarnation
                        or state is None or state.tick_at != self.now):  # fmt: skip
                    return False
                state.tick_at = float("inf")
                if state.keeper.in_office:
                    self._run(sim_node, state.keeper.tick(self.now))
            case _:
                return super()._handle(event)
        return True

    def _delay(self) -> float:
        return self.rng.uniform(self.config.delay_min_s, self.config.delay_max_s)

    def _reply(self, reply: Reply) -> None:
        self._at(self.now + self._delay(), ("lrep", int(reply.to), reply.outcome, reply.expires_in_s))

    def _request_arrives(self, sim_node: SimNode, key: RequestKey) -> bool:
        request = self.requests.get(key)
        node = sim_node.node
        if request is None or node is None:
            return False
        state = self.leases[sim_node.id]
        if node.role is not Role.PRIMARY or not state.keeper.in_office:
            self._reply(Reply(key, Unavailable(node.primary_hint or "")))
            return True
        holder = self.clients[request.client].holder
        if request.kind == "acquire":
            command = Acquire(request.name, holder, TTL_S)
            wait = self.rng.choice((0.0, 0.2))
            self._run(sim_node, state.keeper.acquire(AcquireRequest(key, command, wait), self.now))
        elif request.kind == "renew":
            self._run(sim_node, state.keeper.renew(request.name, holder, request.token, key,
                                                   self.now))  # fmt: skip
        else:
            release = Release(request.name, holder, request.token)
            state.seq += 1
            state.mine[state.seq] = key
            raw = encode_proposal(Proposal(state.origin, state.seq, release))
            self.checker.on_submit(raw)
            self._process(sim_node, node.submit(raw, self.now))
            if sim_node.node is not None and state.keeper.in_office:
                self._run(sim_node, state.keeper.release_requested(release, self.now))
        return True

    # -- clients -------------------------------------------------------------------------------

    def _send_request(self, index: int, kind: str, name: str, token: int) -> None:
        client = self.clients[index]
        self.next_key += 1
        key = RequestKey(self.next_key)
        self.requests[key] = _Request(index, kind, name, token, self.now)
        client.busy = True
        target = client.hint if client.hint in self.nodes else self.rng.choice(self.members)
        self._at(self.now + self._delay(), ("lreq", target, int(key)))
        self._at(self.now + 4 * TTL_S, ("lc-timeout", index, int(key)))

    def _client_act(self, index: int) -> None:
        client = self.clients[index]
        self._at(self.now + self.rng.uniform(0.02, 0.06), ("lc-act", index))
        if client.busy:
            return
        if client.token is not None and self.now >= client.valid_until:
            client.token = client.grant = None  # lost by its own clock: stop using it
        if client.token is None:
            if self.faults_on:  # then wind down, so that the log can settle
                self._send_request(index, "acquire", self.rng.choice(NAMES), 0)
            return
        assert client.name is not None
        if self.now >= client.hold_until:
            assert client.grant is not None
            client.grant[4] = min(client.grant[4], self.now)  # trusted no more from now on
            self._send_request(index, "release", client.name, client.token)
            client.token = client.grant = None
        elif self.now >= client.valid_until - TTL_S * 2 / 3:
            self._send_request(index, "renew", client.name, client.token)

    def _reply_arrives(self, key: RequestKey, outcome: Any, expires: float | None) -> None:
        request = self.requests.pop(key, None)
        if request is None:
            return  # timed out already
        client = self.clients[request.client]
        client.busy = False
        if isinstance(outcome, Unavailable):
            client.hint = outcome.reason or None
            return
        if not isinstance(outcome, Lease):
            if request.kind == "renew" and isinstance(outcome, Refused):
                client.token = client.grant = None
            return
        until = request.sent_at + TTL_S * (1 - MARGIN)
        if request.kind == "acquire" and outcome.holder == client.holder:
            if until <= self.now:
                return
            self.grants += 1
            client.name, client.token, client.valid_until = outcome.name, outcome.token, until
            client.hold_until = self.now + self.rng.uniform(0.05, 0.8)
            client.grant = [outcome.name, outcome.token, client.holder, self.now, until]
            self.intervals[outcome.name].append(client.grant)
            self._check_overlap(client.grant, self.now)
        elif request.kind == "renew" and client.token == outcome.token and client.grant:
            self.renewals += 1
            if until > client.valid_until:
                client.valid_until = client.grant[4] = until
                self._check_overlap(client.grant, self.now)

    def _check_overlap(self, grant: list[Any], since: float) -> None:
        name, token, holder, start, end = grant
        for other in self.intervals[name]:
            if other is grant or other[1] == token:
                continue
            if other[3] < end and max(start, since) < other[4]:
                self._fail("overlap", f"{name}: {holder} (token {token}) valid "
                                      f"[{start:.4f}, {end:.4f}] while {other[2]} (token "
                                      f"{other[1]}) valid [{other[3]:.4f}, {other[4]:.4f}]")  # fmt: skip
        self.intervals[name] = [g for g in self.intervals[name] if g[4] > self.now - 1.0]
