"""``paxlock.Node``: one cluster member — store, replica, lease service, peer transport and
HTTP API — startable inside any asyncio program, or mounted into a host aiohttp app."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import ssl
import time

from aiohttp import web
from prometheus_client import CollectorRegistry

from paxlock._logs import get_logger
from paxlock.api.server.auth import load_auth
from paxlock.api.server.bootstrap import (
    IDENTITY_PATH, Adopt, Bootstrap, Identity, await_cluster, join,
)  # fmt: skip
from paxlock.api.server.embedded import EmbeddedLeases
from paxlock.api.server.identity import MemberLeasing, identity_route, member_urls
from paxlock.api.server.limits import GuardedRunner, Limiter
from paxlock.api.server.node_config import (
    ListenError, NodeConfig, certificate_member, listen_failure,
)  # fmt: skip
from paxlock.api.server.peer import WS_PATH, PeerMessage, PeerTransport, websocket_handler
from paxlock.api.server.tls import NodeTls, peer_certificate_middleware
from paxlock.coordinator.core.keeper import KeeperConfig, LeaseKeeper
from paxlock.coordinator.core.membership import Schedule
from paxlock.coordinator.core.proposer import Role
from paxlock.coordinator.core.replica import LeaseReplica
from paxlock.coordinator.core.replica_io import ReplicaReady
from paxlock.coordinator.instrument import CountingTransport, Instrumentation
from paxlock.coordinator.metrics import Metrics
from paxlock.coordinator.relay import Relay, RelayCancel, RelayReply, RelayRequest
from paxlock.coordinator.runtime import Runtime
from paxlock.coordinator.service import LeaseService
from paxlock.persistence import SqliteStore

__all__ = ["ListenError", "Node", "NodeConfig", "certificate_member", "listen_failure"]

log = get_logger("paxlock.node")

HANDOVER_WAIT_S = 2.0
"""How long a stopping primary waits for its successor's phase 1 before it goes anyway."""


class Node:
    """Use as ``async with Node(config) as node:`` or ``await node.start()`` / ``stop()``.

    ``node.service`` offers the lease operations in-process (``coordinator.leasing``);
    ``node.app`` is the aiohttp application (public API, peer endpoint, metrics) that a host
    can mount with ``host_app.add_subapp("/paxlock", node.app)`` when ``serve_http`` is off.
    """

    def __init__(self, config: NodeConfig, *, registry: CollectorRegistry | None = None) -> None:
        self.config = config
        self.metrics = Metrics(config.node_id, registry=registry)
        self.store: SqliteStore | None = None
        self.transport: PeerTransport | None = None
        self.runtime: Runtime | None = None
        self._service: LeaseService | None = None
        self._face = MemberLeasing(config.node_id)
        self._app: web.Application | None = None
        self._runner: web.AppRunner | None = None
        self._leases: EmbeddedLeases | None = None
        self.tls: NodeTls | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        """What ``start()`` started, to undo in reverse: by ``stop()``, or by ``start()``
        itself when a later step fails (a listener that cannot bind)."""
        self.url = config.peers[config.node_id]
        self.peers: dict[str, str] = dict(config.peers)
        """The members known now (id -> URL): the ``--peer`` list while bootstrapping, then
        those of the configurations; updated in place (forwarding and the service read it)."""
        self.listening = asyncio.Event()
        """Set once the HTTP listener is up (before bootstrap waits for the other members)."""

    @property
    def schedule(self) -> Schedule | None:
        """The configurations in effect or pending, once the replica runs."""
        runtime = self.runtime
        return None if runtime is None else runtime.replica.schedule

    @property
    def service(self) -> LeaseService:
        assert self._service is not None, "start() the node first"
        return self._service

    @property
    def leases(self) -> EmbeddedLeases:
        """The lease operations in-process, whichever member is the primary."""
        assert self._leases is not None, "start() the node first"
        return self._leases

    @property
    def app(self) -> web.Application:
        assert self._app is not None, "start() the node first"
        return self._app

    async def start(self) -> None:
        """Open the store and listen; bootstrap or join when the store has no cluster id
        (``api.server.bootstrap``: this waits for the other members); then start the peer
        transport, the replica and the service. When a step fails, what the earlier ones
        started is stopped again (the store closed, so its data dir lock is released) and
        the exception propagates (``BootstrapRefused``: this member must not start)."""
        assert self._stack is None, "start() a node once"
        async with contextlib.AsyncExitStack() as stack:
            await self._start(stack)
            self._stack = stack.pop_all()

    async def _start(self, stack: contextlib.AsyncExitStack) -> None:
        from paxlock.api.server.app import create_app

        config = self.config
        self.tls = tls = NodeTls.from_paths(config.tls_cert, config.tls_key, config.tls_ca)
        client_ssl = tls.client if tls is not None else None
        self.store = store = await SqliteStore.open(config.data_dir, node_id=config.node_id,
                                                    cluster_id=config.cluster_id)  # fmt: skip
        stack.push_async_callback(store.close)
        auth = None
        if config.auth_file is not None:
            auth = load_auth(config.auth_file, metrics_need_token=config.auth_metrics)
        limiter = Limiter(config.limits, self.metrics)
        app = create_app(self._face, peers=self.peers, metrics=self.metrics,
                         cluster_token=config.cluster_token, ssl_context=client_ssl,
                         auth=auth, limiter=limiter)  # fmt: skip
        authenticator = None
        if tls is not None and tls.mutual:
            app.middlewares.append(peer_certificate_middleware)
            authenticator = certificate_member(self.peers.keys())
        app.router.add_get(IDENTITY_PATH, identity_route(self.identity))
        app.router.add_get(WS_PATH, websocket_handler(
            config.node_id, config.cluster_token, self._deliver, members=self.peers.keys,
            metrics=self.metrics, authenticator=authenticator,
            cluster_id=lambda: store.cluster_id if self.schedule is not None else None,
            knows=self._knows,
        ))  # fmt: skip
        self._app = app
        await self._listen(stack, app, limiter)
        self.listening.set()
        if store.cluster_id is None:
            await self._bootstrap(store, client_ssl)
        await self._run(stack, store, client_ssl)

    async def _listen(self, stack: contextlib.AsyncExitStack, app: web.Application,
                      limiter: Limiter) -> None:  # fmt: skip
        """Serve HTTP from the start: other members bootstrap from ``/internal/identity``.
        handler_cancellation: a client that disconnects while its acquire waits is taken
        out of the queue instead of being granted a lease it will never hear of. A short
        shutdown_timeout: peers' WebSockets and parked waits never end by themselves, and a
        stopping member should be gone quickly (clients retry). GuardedRunner: header/body
        read timeouts, parser errors as JSON (limits.py)."""
        if not self.config.serve_http:
            return
        self._runner = GuardedRunner(app, limiter, access_log=None, shutdown_timeout=0.25,
                                     handler_cancellation=True)  # fmt: skip
        stack.push_async_callback(self._runner.cleanup)
        await self._runner.setup()
        host, port = self.config.bind()
        tls = self.tls
        try:
            await web.TCPSite(self._runner, host, port, reuse_address=True,
                              ssl_context=tls.server if tls is not None else None).start()
        except OSError as error:
            raise ListenError(error.errno, listen_failure(host, port, error)) from error

    def identity(self) -> Identity:
        """This member as ``GET /internal/identity`` shows it."""
        store = self.store
        assert store is not None, "start() the node first"
        return Identity(self.config.node_id, store.incarnation, store.cluster_id,
                        store.identity.genesis,
                        dict(self.peers), store.identity.legacy)  # fmt: skip

    async def _bootstrap(self, store: SqliteStore, client_ssl: ssl.SSLContext | None) -> None:
        """Get a cluster id and genesis (``api.server.bootstrap``), and store them."""
        config = self.config
        own = self.identity()
        decision: Bootstrap | Adopt
        if config.join is not None:
            decision = await join(own, config.join, cluster_token=config.cluster_token,
                                  ssl=client_ssl, expected_cluster_id=config.cluster_id)
        else:
            decision = await await_cluster(
                own, self.peers, cluster_token=config.cluster_token, ssl=client_ssl,
                initial_state=config.initial_cluster_state,
                expected_cluster_id=config.cluster_id,
            )  # fmt: skip
        await store.bootstrap(decision.cluster_id, decision.genesis)
        if isinstance(decision, Bootstrap):
            log.info("bootstrapped", node=config.node_id, cluster_id=decision.cluster_id,
                     voters=list(decision.genesis.voter_ids))  # fmt: skip
            return
        self.peers.update({**decision.members, **config.peers, config.node_id: self.url})
        if decision.genesis.votes(config.node_id, store.incarnation):  # polled, then restarted
            log.info("adopted", node=config.node_id, cluster_id=decision.cluster_id,
                     reported_by=decision.reported_by)  # fmt: skip
        else:
            log.warning("learner", node=config.node_id, cluster_id=decision.cluster_id,
                        message=f"{config.node_id} starts as a learner: its store is empty "
                        f"and cluster {decision.cluster_id} exists; it votes only after "
                        f"`paxlock member add` and `promote`")  # fmt: skip

    async def _run(self, stack: contextlib.AsyncExitStack, store: SqliteStore,
                   client_ssl: ssl.SSLContext | None) -> None:  # fmt: skip
        """Start the replica over the bootstrapped store, its transport and the service."""
        config = self.config
        loaded = store.load()
        durable = loaded.durable
        durable.snapshot_slot, durable.snapshot = loaded.snapshot_slot, loaded.snapshot
        genesis = durable.genesis
        assert genesis is not None and store.cluster_id is not None, "bootstrapped"
        keeper = LeaseKeeper(KeeperConfig(
            holds_per_principal_max=config.holds_per_principal_max,
            holds_max=config.holds_max, value_bytes_max=config.value_bytes_max,
            waiters_per_name_max=config.limits.waiters_per_name_max,
        ))  # fmt: skip
        core = config.core(genesis, store.incarnation)
        replica = LeaseReplica(core, durable, random.Random(),
                               origin=f"{config.node_id}/{os.urandom(4).hex()}",
                               snapshot_every=config.snapshot_every, keeper=keeper)  # fmt: skip
        self.transport = PeerTransport(config.node_id, dict(self.peers),
                                       cluster_token=config.cluster_token,
                                       metrics=self.metrics, ssl_context=client_ssl,
                                       cluster_id=store.cluster_id,
                                       incarnation=store.incarnation)  # fmt: skip
        self.runtime = runtime = Runtime(
            replica, store,
            CountingTransport(self.transport, self.metrics, len(genesis.voters) - 1),
            clock=time.monotonic,
        )  # fmt: skip
        self._service = LeaseService(runtime, learn_mode=config.learn_mode,
                                     peer_urls=self.peers,
                                     reachable_window_s=2 * config.election_timeout_s,
                                     waiters_per_name_max=config.limits.waiters_per_name_max,
                                     )  # fmt: skip
        self._service.cluster_id = store.cluster_id
        transport = self.transport
        self._service.relay = relay = Relay(
            transport.send_message,
            lambda outcome: self.metrics.http_forwarded.labels(outcome=outcome).inc(),
            lambda peer: f"the primary {peer} at {self.peers.get(peer, '?')}",
        )  # fmt: skip
        transport.on_unreachable = lambda peer, why: relay.fail(peer, why)
        self._service.on_limit.append(
            lambda limit: self.metrics.limit_refusals.labels(limit=limit).inc()
        )
        self._leases = EmbeddedLeases(self._service, self.peers, config.cluster_token,
                                      ssl_context=client_ssl)  # fmt: skip
        Instrumentation(self.metrics, time.monotonic).attach(runtime)
        runtime.sinks.append(self._on_ready)
        stack.push_async_callback(self.transport.stop)
        await self.transport.start()
        stack.push_async_callback(runtime.stop)
        await runtime.start()
        stack.push_async_callback(self._service.close)
        stack.push_async_callback(self._leases.close)
        self._face.role = self._role
        self._face.service = self._service
        self._refresh_peers()
        log.info("node_started", node=config.node_id, url=self.url, cluster_id=store.cluster_id,
                 incarnation=store.incarnation,
                 chosen_index=replica.status().chosen_index)  # fmt: skip

    def _knows(self, member: str, incarnation: str) -> bool:
        """Whether a peer connection from this member incarnation is accepted
        (``Node.hears`` of the core: one the configurations list, or any of the cluster's
        while this member is in none yet, to catch up)."""
        return self.runtime is not None and self.runtime.replica.hears(member, incarnation)

    def _role(self) -> tuple[bool, bool]:
        """(member, voter) of this member incarnation, as ``/readyz`` and ``/v1/cluster``
        show it."""
        assert self.runtime is not None
        status = self.runtime.replica.status()
        return status.member, status.voter

    def _on_ready(self, ready: ReplicaReady) -> None:
        if ready.membership_changed:
            self._refresh_peers()

    def _refresh_peers(self) -> None:
        """The members of the configurations now (``ReplicaReady.membership_changed``): the
        transport dials the new ones and stops dialing the removed ones; forwarding, the
        embedded calls and ``/v1/cluster`` read the same dict."""
        schedule = self.schedule
        assert schedule is not None and self.transport is not None
        urls = member_urls(schedule, self.config.node_id, self.url, self.config.peers)
        if urls != self.peers:
            log.info("members_changed", node=self.config.node_id, members=urls)
            self.peers.clear()
            self.peers.update(urls)
            self.transport.set_peers(urls)

    def reload_tls(self) -> bool:
        """SIGHUP: load the certificate, key and CA files again (``NodeTls.reload``); new
        handshakes use them. False when there is nothing to reload or the files are not
        usable (logged; the previous certificates stay)."""
        if self.tls is None:
            log.info("tls_reload_skipped", reason="no TLS certificate configured")
            return False
        return self.tls.reload()

    def _deliver(self, src: str, messages: list[PeerMessage]) -> None:
        runtime, service = self.runtime, self._service
        if runtime is None or runtime.failure is not None or service is None:
            return
        self.metrics.peer_messages_received.inc(len(messages))
        for message in messages:
            if isinstance(message, RelayReply):
                assert service.relay is not None
                service.relay.on_reply(src, message)
            elif isinstance(message, RelayCancel):
                service.cancel_relayed(src, message.seq)
            elif isinstance(message, RelayRequest):
                service.serve_relayed(src, message)
            else:
                runtime.receive(src, message)

    async def stop(self) -> None:
        """Hand office over if this member is the primary, then undo what ``start()`` did,
        in reverse: the HTTP listener, the embedded sessions, the service, the replica, the
        peer transport, the store."""
        await self._hand_over()
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()
        self._runner = None
        self.store = None
        log.info("node_stopped", node=self.config.node_id)

    async def _hand_over(self) -> None:
        """A primary that is asked to stop (SIGTERM, a rolling restart, a pod deletion) first
        steps down in favour of an up-to-date member, which takes office at once, and stays
        until it has promised the successor's ballot (its vote is in): clients see about two
        round trips without a primary instead of an election timeout."""
        runtime = self.runtime
        if runtime is None or not runtime.running:
            return
        before = runtime.replica.status()
        if before.role is not Role.PRIMARY or len(self.peers) == 1:
            return
        runtime.step(runtime.replica.hand_over)
        log.info("handing_over", node=self.config.node_id,
                 target=runtime.replica.status().primary_hint)  # fmt: skip
        deadline = time.monotonic() + HANDOVER_WAIT_S
        while time.monotonic() < deadline and runtime.running:
            if runtime.replica.status().highest_round > before.ballot.round and runtime.flushed:
                return
            await asyncio.sleep(0.002)  # a local condition; the peers' answers come meanwhile
        log.warning("hand_over_unconfirmed", node=self.config.node_id)

    async def wait_ready(self, timeout_s: float = 10.0) -> None:
        """Wait until this member is ready to serve (a primary is known and in office, or
        being followed); raise ``TimeoutError`` after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not self.service.readiness()[0]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"node {self.config.node_id} not ready: "
                                   f"{self.service.readiness()[1]}")  # fmt: skip
            await asyncio.sleep(0.01)  # polling a local flag, no I/O

    async def wait_failed(self) -> BaseException | None:
        """Return the replica's failure once its loop ended (a store failure)."""
        assert self.runtime is not None, "start() the node first"
        return await self.runtime.wait_stopped()

    async def __aenter__(self) -> Node:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
