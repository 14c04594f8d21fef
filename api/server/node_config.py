"""How to run one member (``NodeConfig``), and the pieces of ``Node`` that need no running
node: the listener's one-line failure, the member a peer's certificate proves."""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from paxlock._logs import get_logger
from paxlock.api.server.bootstrap import INITIAL_STATES, InitialState
from paxlock.api.server.limits import Limits
from paxlock.api.server.peer import NODE_HEADER, Authenticator
from paxlock.api.server.tls import peer_names
from paxlock.coordinator.core.keeper import KeeperConfig
from paxlock.coordinator.core.learner import LearnMode
from paxlock.coordinator.core.messages import Configuration
from paxlock.coordinator.core.node import CoreConfig

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


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """How to run one member. ``peers`` maps every member id (this one included) to its
    base URL: the members a new cluster bootstraps with (``api.server.bootstrap``); once
    running, the members are those of the configurations in the log. With ``join`` only
    this node's own entry is needed."""

    node_id: str
    peers: Mapping[str, str]
    data_dir: str | Path
    listen: str | None = None
    """``host:port`` to bind; by default the host and port of this node's own URL."""
    cluster_id: str | None = None
    """The cluster this member must belong to (checked against its store, and against what
    members report at bootstrap or join); None: whichever it bootstraps into or joins."""
    initial_cluster_state: InitialState | None = None
    """``new``: refuse to start if a member reports a cluster already; ``existing``: never
    bootstrap a new one. None: bootstrap when every member is empty, else adopt."""
    join: str | None = None
    """URL of a member of a running cluster to join as a learner (``--join``)."""
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
        if self.initial_cluster_state not in (None, *INITIAL_STATES):
            raise ValueError(f"--initial-cluster-state must be new or existing, "
                             f"not {self.initial_cluster_state!r}")  # fmt: skip
        if self.join is not None and len(self.peers) > 1:
            raise ValueError("--join takes the members from the cluster it joins: "
                             "give no --peer with it")  # fmt: skip
        if self.node_id not in self.peers:
            raise ValueError(f"node id {self.node_id!r} must be one of the peers "
                             f"({', '.join(sorted(self.peers)) or 'none given'})")  # fmt: skip
        if len(self.peers) % 2 == 0:
            log.warning("even_cluster_size", members=len(self.peers))
        LearnMode.parse(self.learn_mode)
        for limit in ("holds_per_principal_max", "holds_max", "value_bytes_max"):
            if getattr(self, limit) < 1:
                raise ValueError(f"{limit} must be at least 1")
        urls = {**self.peers, "--join": self.join} if self.join else self.peers
        for member, url in urls.items():
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

    def core(self, genesis: Configuration, incarnation: str) -> CoreConfig:
        """The core runs the stored genesis (``DurableState.genesis``); ``members`` only
        repeats its voters, when this incarnation is one, for a core that reads them there."""
        voters = genesis.voter_ids if genesis.votes(self.node_id, incarnation) else ()
        return CoreConfig(
            self.node_id, voters, LearnMode.parse(self.learn_mode),
            election_timeout_s=self.election_timeout_s, heartbeat_s=self.heartbeat_s,
            retry_s=self.retry_s, prevote=True, incarnation=incarnation,
        )  # fmt: skip


def certificate_member(members: Collection[str]) -> Authenticator:
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
        named = {name for name in names if name in members}
        if not named or claimed in named:
            return claimed
        return min(named)

    return authenticate
