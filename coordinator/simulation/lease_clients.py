"""The workload of the lease-level simulation (see ``lease_sim`` for the whole picture):
simulated lease clients, each on its own skewed clock, that acquire a name, renew it while
they hold it, and release it, like the SDK. A client trusts a grant from its request's
*first* send until sent + ttl × (1 − margin) by its own clock; after an unknown outcome
(a timeout, a redirect, a 503) it retries with the same ``request_id``, possibly elsewhere.

The clients see the simulation only through ``LeaseWorld``: its time, its event queue and
its random draws. What they are granted, renew and are answered goes to ``LeaseChecks``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Protocol

from paxlock.coordinator.core.ballot import Ballot
from paxlock.coordinator.core.keeper_effects import (
    NotPrimary,
    Recovering,
    Reply,
    RequestKey,
    Unavailable,
)
from paxlock.coordinator.core.lease_commands import Acquire, Lease, Refused, Release
from paxlock.coordinator.core.replica_io import AcquireOp, ReleaseOp, RenewOp, RequestOp
from paxlock.coordinator.simulation.lease_checks import LeaseChecks
from paxlock.coordinator.simulation.sim import SimConfig

NAMES = ("alpha", "beta")
TTLS_S = (0.1, 0.2, 0.4, 0.8)
"""From below 2T (T = the election timeout, 0.06 s) to many T."""
MARGIN = 0.1
"""The SDK's margin: a client trusts a lease until sent + ttl × (1 − margin)."""
SKEW_MAX = 0.02
"""Clock rates in [1 − SKEW_MAX, 1 + SKEW_MAX]: well within the margin."""
REQUEST_TIMEOUT_S = 0.05
"""A client's wait for an answer before it retries elsewhere (SDK-like, scaled to T)."""


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


def skewed_clock(rng: random.Random) -> _Clock:
    """A clock (of a client or of a node) with a random offset and a rate within SKEW_MAX."""
    return _Clock(rng.uniform(0.0, 100.0), rng.uniform(1 - SKEW_MAX, 1 + SKEW_MAX))


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


class LeaseWorld(Protocol):
    """What the clients see of the simulation."""

    now: float
    rng: random.Random
    """The simulation's draws: request and reply delays, the node a request goes to."""
    lease_rng: random.Random
    """The lease draws: clocks, names, TTLs, waits, how long a client holds."""
    faults_on: bool
    members: tuple[str, ...]
    config: SimConfig

    def _at(self, when: float, event: tuple[object, ...]) -> None:
        """Schedule ``event`` on the simulation's queue."""
        ...


class Workload(Protocol):
    """The simulated clients (``LeaseClients``, or ``coord_clients.CoordClients``)."""

    clients: list[Any]
    requests: dict[RequestKey, Any]
    """Requests in flight: each has the ``op`` a node is asked."""
    grants: int
    renewals: int
    retries: int
    answered_after_heal: int

    def start(self) -> None: ...
    def act(self, index: int) -> None: ...
    def timeout(self, key: RequestKey) -> bool: ...
    def reply_sent(self, reply: Reply, node_id: str, ballot: Ballot) -> None: ...
    def reply_arrives(self, key: RequestKey, reply: Reply, node_id: str,
                      ballot: Ballot) -> None: ...  # fmt: skip


class Requests:
    """What every simulated workload shares: requests in flight, each sent to the hinted
    node (else any), timed out and retried with the same op (the same request id), and
    their answers routed back. A client has ``clock``, ``hint`` and ``request`` (the key of
    its one request in flight); a request has ``client`` (an index) and ``op``."""

    clients: list[Any]
    checks: LeaseChecks

    def __init__(self, world: LeaseWorld) -> None:
        self.world = world
        self.requests: dict[RequestKey, Any] = {}
        self.next_key = 0
        self.next_request_id = 0
        self.retries = 0
        self.answered_after_heal = 0
        """Requests answered by the state machine (a result, not a 503) in the liveness phase."""

    def _delay(self) -> float:
        world = self.world
        return world.rng.uniform(world.config.delay_min_s, world.config.delay_max_s)

    def _request_id(self) -> str:
        self.next_request_id += 1
        return f"r{self.next_request_id}"

    def _send(self, request: Any) -> None:
        client = self.clients[request.client]
        self.next_key += 1
        key = RequestKey(self.next_key)
        self.requests[key] = request
        client.request = key
        self._dispatch(key, client.hint)

    def _dispatch(self, key: RequestKey, hint: str | None) -> None:
        world = self.world
        target = hint if hint in world.members else world.rng.choice(world.members)
        world._at(world.now + self._delay(), ("lreq", target, int(key)))
        world._at(world.now + self._timeout_s(self.requests[key]), ("lc-timeout", int(key)))

    def _timeout_s(self, request: Any) -> float:
        return REQUEST_TIMEOUT_S

    def timeout(self, key: RequestKey) -> bool:
        """No answer in time; false if it came (the event is void)."""
        request = self.requests.get(key)
        if request is None:
            return False
        self._retry(key, request, hint=None)
        return True

    def _retry(self, key: RequestKey, request: Any, hint: str | None) -> None:
        """An unknown outcome: the same request again (same request id), possibly elsewhere,
        unless the client gives it up (``_gives_up``)."""
        client = self.clients[request.client]
        del self.requests[key]
        client.hint = hint
        if self._gives_up(request):
            client.request = None
            return
        self.retries += 1
        self.next_key += 1
        again = RequestKey(self.next_key)
        self.requests[again] = request
        client.request = again
        self._dispatch(again, hint)

    def _gives_up(self, request: Any) -> bool:
        return False

    def reply_sent(self, reply: Reply, node_id: str, ballot: Ballot) -> None:
        """A node answered: the reply travels back with the replier's ballot at sending (a
        renewal granted under it goes to the ``deposed`` check first)."""
        request = self.requests.get(reply.to)
        if request is None:
            return
        if self._renews(request.op, reply.outcome):
            self.checks.on_renewal(node_id, ballot, reply.to)
        event = ("lrep", int(reply.to), reply, node_id, ballot)
        self.world._at(self.world.now + self._delay(), event)

    @staticmethod
    def _renews(op: Any, outcome: object) -> bool:
        """Whether ``outcome`` renews what ``op`` asked to (for the ``deposed`` check)."""
        return False

    def _answer(self, key: RequestKey, reply: Reply, node_id: str) -> Any:
        """The request ``reply`` answers for good, or None: timed out already, or redirected
        (not the primary, recovering, 503) and retried."""
        request = self.requests.get(key)
        if request is None:
            return None
        match reply.outcome:
            case NotPrimary(primary_hint=hint):
                self._retry(key, request, hint)
                return None
            case Recovering():
                self._retry(key, request, node_id)
                return None
            case Unavailable():
                self._retry(key, request, None)
                return None
        del self.requests[key]
        self.clients[request.client].request = None
        self.answered_after_heal += not self.world.faults_on
        return request


class LeaseClients(Requests):
    """The clients and their requests in flight. Events it schedules and handles:
    ``("lc-act", index)``, ``("lc-timeout", key)`` and ``("lrep", key, reply, node, ballot)``;
    a request travels to a node as ``("lreq", node, key)``, which the simulation delivers."""

    def __init__(self, world: LeaseWorld, checks: LeaseChecks, count: int) -> None:
        super().__init__(world)
        self.checks = checks
        self.clients = [_Client(f"client{i}", skewed_clock(world.lease_rng))
                        for i in range(count)]  # fmt: skip
        self.grants = self.renewals = 0

    def start(self) -> None:
        for index in range(len(self.clients)):
            self.world._at(0.05 * index, ("lc-act", index))

    # -- sending -----------------------------------------------------------------------------

    def act(self, index: int) -> None:
        """A client's next move: acquire when it holds nothing, release once it has held
        long enough, renew when half its trusted time is left."""
        world, lease_rng = self.world, self.world.lease_rng
        client = self.clients[index]
        world._at(world.now + world.rng.uniform(0.02, 0.06), ("lc-act", index))
        if client.request is not None:
            return
        grant = client.grant
        if grant is not None and world.now >= grant[4]:
            client.grant = grant = None  # lost by its own clock: stop using it
        if grant is None:
            self.next_request_id += 1
            ttl = lease_rng.choice(TTLS_S)
            wait = lease_rng.choice((0.0, 0.2, 0.5))
            command = Acquire(lease_rng.choice(NAMES), client.holder, ttl,
                              request_id=f"r{self.next_request_id}")  # fmt: skip
            self._send_op(index, AcquireOp(command, wait))
            return
        name, token, _, _, end, ttl = grant
        if world.now >= client.hold_until:
            grant[4] = min(end, world.now)  # trusted no more from now on
            client.grant = None
            self.next_request_id += 1
            release = Release(name, client.holder, token, f"r{self.next_request_id}")
            self._send_op(index, ReleaseOp(release))
        elif world.now >= end - ttl * (1 - MARGIN) / 2:
            self._send_op(index, RenewOp(name, client.holder, token))

    def _send_op(self, index: int, op: RequestOp) -> None:
        client = self.clients[index]
        self._send(_Request(index, op, client.clock.local(self.world.now)))

    def _gives_up(self, request: _Request) -> bool:
        """A renewal is retried while the lease is still trusted (its validity still counts
        from the first attempt, like the SDK's)."""
        grant = self.clients[request.client].grant
        return isinstance(request.op, RenewOp) and (grant is None or self.world.now >= grant[4])

    # -- receiving ---------------------------------------------------------------------------

    @staticmethod
    def _renews(op: Any, outcome: object) -> bool:
        return isinstance(op, RenewOp) and isinstance(outcome, Lease)

    def reply_arrives(self, key: RequestKey, reply: Reply, node_id: str,
                      ballot: Ballot) -> None:  # fmt: skip
        request = self._answer(key, reply, node_id)
        if request is None:
            return
        client = self.clients[request.client]
        outcome = reply.outcome
        now = self.world.now
        op = request.op
        until = client.clock.real(request.first_sent_local) + self._trusted_s(op, client)
        if isinstance(op, AcquireOp) and isinstance(outcome, Lease) \
                and outcome.holder == client.holder and until > now:  # fmt: skip
            self.grants += 1
            client.hint = node_id
            client.grant = [outcome.name, outcome.token, client.holder, now, until,
                            outcome.ttl_s]  # fmt: skip
            client.hold_until = now + self.world.lease_rng.uniform(0.05, 2.0)
            self.checks.on_grant(client.grant, now)
        elif isinstance(op, RenewOp) and client.grant is not None \
                and client.grant[1] == op.token:  # fmt: skip
            if isinstance(outcome, Refused):
                client.grant = None
            elif isinstance(outcome, Lease):
                self.renewals += 1
                self.checks.on_renewed(outcome.name, outcome.token, ballot)
                if until > client.grant[4]:
                    client.grant[4] = until
                    self.checks.overlap(client.grant, now)
        elif isinstance(op, ReleaseOp):
            self.checks.on_release_answer(outcome)

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
