"""``paxlock.Node``: one cluster member — store, replica, lease service, peer transport and
HTTP API — startable inside any asyncio program, or mounted into a host aiohttp app."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from prometheus_client import CollectorRegistry

from paxlock._logs import get_logger
from paxlock.api.server.auth import load_auth
from paxlock.api.server.embedded import EmbeddedLeases
from paxlock.api.server.limits import GuardedRunner, Limiter, Limits
from paxlock.api.server.peer import (
    NODE_HEADER, WS_PATH, Authenticator, PeerTransport, websocket_handler,
)
from paxlock.api.server.tls import NodeTls, peer_certificate_middleware, peer_names
from paxlock.coordinator.core.keeper import KeeperConfig, LeaseKeeper
from paxlock.coordinator.core.learner import LearnMode
from paxlock.coordinator.core.messages import Message
from paxlock.coordinator.core.node import CoreConfig
from paxlock.coordinator.core.proposer import Role
from paxlock.coordinator.core.replica import LeaseReplica
from paxlock.coordinator.instrument import CountingTransport, Instrumentation
from paxlock.coordinator.metrics import Metrics
from paxlock.coordinator.runtime import Runtime
from paxlock.coordinator.service import LeaseService
from paxlock.persistence import SqliteStore

log = get_logger("paxlock.node")


class ListenError(OSError):
    """The HTTP listener could not bind its address (in use, not ours, no permission); the
    message is one sentence: ``cannot listen on HOST:PORT: address already in use``."""

    def __str__(self) -> str:
        return str(self.strerror)


def listen_failure(host: str, port: int, error: OSError) -> str:
    """``cannot listen on HOST:PORT: REASON`` for a failed bind, the reason in plain words
    (``address already in use``) rather than the event loop's repr of the address."""
    reason = os.strerror(error.errno) if error.errno else str(error)
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return f"cannot listen on {where}: {reason[:1].lower()}{reason[1:]}"

_KEEPER_DEFAULTS = KeeperConfig()
HANDOVER_WAIT_S = 2.0
"""How long a stopping primary waits for its successor's phase 1 before it goes anyway."""


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """How to run one member. ``peers`` maps every member id (this one included) to its
    base URL; membership is static in this version."""

    node_id: str
    peers: Mapping[str, str]
    data_dir: str | Path
    listen: str | None = None
    """``host:port`` to bind; by default the host and port of this node's own URL."""
    cluster_id: str = "paxlock"
    cluster_token: str | None = None
    learn_mode: str = "primary"
    election_timeout_s: float = 0.3
    heartbeat_s: float = 0.05
    retry_s: float = 0.1
    snapshot_every: int = 5000
    """Snapshot the lease state machine and compact the log every this many slots."""
    limits: Limits = field(default_factory=Limits)
    """Limits at the HTTP edge (rates, waiters, streams, read timeouts); README, Limits."""
    serve_http: bool = True
    """False to only build ``Node.app`` for mounting into a host application."""
    tls_cert: str | Path | None = None
    """PEM certificate chain of this node: the listener speaks only TLS, peers are https://
    (a host that mounts ``node.app`` listens with ``node.tls.server``)."""
    tls_key: str | Path | None = None
    tls_ca: str | Path | None = None
    """The cluster's CA: peers must present a certificate it signed (mutual TLS on
    ``/internal/``), and outbound links trust only it."""
    auth_file: str | Path | None = None
    """``--auth``: the TOML of principals (``api.server.auth``); None: no client auth."""
    auth_metrics: bool = False
    """``/metrics`` needs a valid bearer token too (with ``auth_file``)."""
    holds_per_principal_max: int = _KEEPER_DEFAULTS.holds_per_principal_max
    holds_max: int = _KEEPER_DEFAULTS.holds_max
    value_bytes_max: int = _KEEPER_DEFAULTS.value_bytes_max
    """The limits of ``core.quotas`` (checked by the primary before it proposes)."""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.node_id not in self.peers:
            raise ValueError(f"node id {self.node_id!r} must be one of the peers "
                             f"({', '.join(sorted(self.peers)) or 'none given'})")  # fmt: skip
        if len(self.peers) % 2 == 0:
            log.warning("even_cluster_size", members=len(self.peers))
        LearnMode.parse(self.learn_mode)
        for limit in ("holds_per_principal_max", "holds_max", "value_bytes_max"):
            if getattr(self, limit) < 1:
                raise ValueError(f"{limit} must be at least 1")
        for member, url in self.peers.items():
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname or not parts.port:
                raise ValueError(f"peer {member}: URL must look like http://HOST:PORT, "
                                 f"not {url!r}")  # fmt: skip
            if self.tls_cert is not None and parts.scheme != "https":
                raise ValueError(f"peer {member}: with a TLS certificate every peer URL is "
                                 f"https://, not {url!r}")  # fmt: skip
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("a TLS certificate and its key go together: give both "
                             "--tls-cert and --tls-key, or neither")  # fmt: skip
        if self.tls_ca is not None and self.tls_cert is None:
            raise ValueError("--tls-ca needs --tls-cert and --tls-key: peers present and "
                             "check certificates both ways")  # fmt: skip

    def bind(self) -> tuple[str, int]:
        if self.listen:
            host, _, port = self.listen.rpartition(":")
            return host or "0.0.0.0", int(port)
        parts = urlsplit(self.peers[self.node_id])
        assert parts.hostname and parts.port
        return parts.hostname, parts.port

    def core(self) -> CoreConfig:
        return CoreConfig(
            self.node_id, tuple(sorted(self.peers)), LearnMode.parse(self.learn_mode),
            election_timeout_s=self.election_timeout_s, heartbeat_s=self.heartbeat_s,
            retry_s=self.retry_s, prevote=True,
        )  # fmt: skip


def certificate_member(members: frozenset[str]) -> Authenticator:
    """Under mutual TLS, the member a peer's certificate proves. A certificate that names
    members (its CN or a DNS name equal to a member id, as ``paxlock up --tls`` and
    ``deploy/compose-secrets.sh`` issue them) proves only those: a peer claiming another id
    is refused. A cluster-wide certificate naming no member id (one cert-manager
    Certificate for a StatefulSet) proves membership of the cluster's CA, not which member."""

    def authenticate(request: web.Request) -> str | None:
        names = peer_names(request)
        if not names:
            return None
        claimed = request.headers.get(NODE_HEADER, "")
        named = names & members
        if not named or claimed in named:
            return claimed
        return min(named)

    return authenticate


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
        self._app: web.Application | None = None
        self._runner: web.AppRunner | None = None
        self._leases: EmbeddedLeases | None = None
        self.tls: NodeTls | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        """What ``start()`` started, to undo in reverse: by ``stop()``, or by ``start()``
        itself when a later step fails (a listener that cannot bind)."""
        self.url = config.peers[config.node_id]

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
        """Open the store, start the peer transport, the replica, the service and the HTTP
        listener. When a step fails, what the earlier ones started is stopped again (the
        store closed, so its data dir lock is released) and the exception propagates."""
        assert self._stack is None, "start() a node once"
        async with contextlib.AsyncExitStack() as stack:
            await self._start(stack)
            self._stack = stack.pop_all()

    async def _start(self, stack: contextlib.AsyncExitStack) -> None:
        from paxlock.api.server.app import create_app

        config = self.config
        self.tls = tls = NodeTls.from_paths(config.tls_cert, config.tls_key, config.tls_ca)
        client_ssl = tls.client if tls is not None else None
        self.store = await SqliteStore.open(config.data_dir, node_id=config.node_id,
                                            cluster_id=config.cluster_id)  # fmt: skip
        stack.push_async_callback(self.store.close)
        loaded = self.store.load()
        durable = loaded.durable
        durable.snapshot_slot, durable.snapshot = loaded.snapshot_slot, loaded.snapshot
        self.transport = PeerTransport(config.node_id, dict(config.peers),
                                       cluster_token=config.cluster_token,
                                       metrics=self.metrics, ssl_context=client_ssl)  # fmt: skip
        auth = None
        if config.auth_file is not None:
            auth = load_auth(config.auth_file, metrics_need_token=config.auth_metrics)
        keeper = LeaseKeeper(KeeperConfig(
            holds_per_principal_max=config.holds_per_principal_max,
            holds_max=config.holds_max, value_bytes_max=config.value_bytes_max,
            waiters_per_name_max=config.limits.waiters_per_name_max,
        ))  # fmt: skip
        replica = LeaseReplica(config.core(), durable, random.Random(),
                               origin=f"{config.node_id}/{os.urandom(4).hex()}",
                               snapshot_every=config.snapshot_every, keeper=keeper)  # fmt: skip
        self.runtime = Runtime(
            replica, self.store,
            CountingTransport(self.transport, self.metrics, len(config.peers) - 1),
            clock=time.monotonic,
        )  # fmt: skip
        self._service = LeaseService(self.runtime, learn_mode=config.learn_mode,
                                     peer_urls=dict(config.peers),
                                     reachable_window_s=2 * config.election_timeout_s,
                                     waiters_per_name_max=config.limits.waiters_per_name_max,
                                     )  # fmt: skip
        self._service.on_limit.append(
            lambda limit: self.metrics.limit_refusals.labels(limit=limit).inc()
        )
        self._leases = EmbeddedLeases(self._service, dict(config.peers), config.cluster_token,
                                      ssl_context=client_ssl)  # fmt: skip
        Instrumentation(self.metrics, time.monotonic).attach(self.runtime)
        limiter = Limiter(config.limits, self.metrics)
        app = create_app(self._service, peers=dict(config.peers), metrics=self.metrics,
                         cluster_token=config.cluster_token, ssl_context=client_ssl,
                         auth=auth, limiter=limiter)  # fmt: skip
        authenticator = None
        if tls is not None and tls.mutual:
            app.middlewares.append(peer_certificate_middleware)
            authenticator = certificate_member(frozenset(config.peers))
        app.router.add_get(WS_PATH, websocket_handler(config.node_id, config.cluster_token,
                                                      self._deliver, members=config.peers,
                                                      metrics=self.metrics,
                                                      authenticator=authenticator))  # fmt: skip
        self._app = app
        stack.push_async_callback(self.transport.stop)
        await self.transport.start()
        stack.push_async_callback(self.runtime.stop)
        await self.runtime.start()
        stack.push_async_callback(self._service.close)
        stack.push_async_callback(self._leases.close)
        if config.serve_http:
            # handler_cancellation: a client that disconnects while its acquire waits is
            # taken out of the queue instead of being granted a lease it will never hear of.
            # A short shutdown_timeout: peers' WebSockets and parked waits never end by
            # themselves, and a stopping member should be gone quickly (clients retry).
            # GuardedRunner: header/body read timeouts, parser errors as JSON (limits.py).
            self._runner = GuardedRunner(app, limiter, access_log=None, shutdown_timeout=0.25,
                                         handler_cancellation=True)  # fmt: skip
            stack.push_async_callback(self._runner.cleanup)
            await self._runner.setup()
            host, port = config.bind()
            try:
                await web.TCPSite(self._runner, host, port, reuse_address=True,
                                  ssl_context=tls.server if tls is not None else None).start()
            except OSError as error:
                raise ListenError(error.errno, listen_failure(host, port, error)) from error
        log.info("node_started", node=config.node_id, url=self.url,
                 chosen_index=self.runtime.replica.status().chosen_index)  # fmt: skip

    def reload_tls(self) -> bool:
        """SIGHUP: load the certificate, key and CA files again (``NodeTls.reload``); new
        handshakes use them. False when there is nothing to reload or the files are not
        usable (logged; the previous certificates stay)."""
        if self.tls is None:
            log.info("tls_reload_skipped", reason="no TLS certificate configured")
            return False
        return self.tls.reload()

    def _deliver(self, src: str, messages: list[Message]) -> None:
        if self.runtime is not None and self.runtime.failure is None:
            self.metrics.peer_messages_received.inc(len(messages))
            self.runtime.receive_many(src, messages)

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
        if before.role is not Role.PRIMARY or len(self.config.peers) == 1:
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
