"""A node's Prometheus metrics (DESIGN.md §6), on a registry of its own.

Every metric lives in the ``CollectorRegistry`` passed in (or a fresh one), never the global
default: several nodes in one process — ``paxlock up``, the simulator, tests — would otherwise
collide with ``DuplicateTimeseries``. The node id is not a label: a registry is one node, and
Prometheus adds ``instance`` when it scrapes; ``paxlock_node_info`` names the node for dashboards.

The runtime and the API update the plain attributes directly (``metrics.grants.inc()``); this
module knows nothing of when they change, so it imports nothing of the coordinator.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector

LATENCY_BUCKETS_S = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
"""Consensus and disk latencies: sub-millisecond on loopback, seconds under trouble."""

HTTP_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""HTTP latencies include waiting acquires and long polls, hence the long tail."""

COUNT_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
"""Commands per slot, records per fsync: powers of two up to the batch bounds."""


class Metrics:
    """The metrics of one node. Attributes are the prometheus-client objects themselves."""

    def __init__(self, node_id: str, registry: CollectorRegistry | None = None) -> None:
        self.node_id = node_id
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry

        self.node_info = Gauge(
            "paxlock_node_info", "Always 1; labels name the node this registry belongs to.",
            ["node"], registry=r,
        )  # fmt: skip
        self.node_info.labels(node=node_id).set(1)
        self.build_info = Info(
            "paxlock_build", "Always 1; the version label is the paxlock release running.",
            registry=r,
        )  # fmt: skip
        self.build_info.info({"version": paxlock_version()})
        # CPU seconds, resident memory, open file descriptors, start time: process_* (Linux).
        ProcessCollector(registry=r)

        # -- consensus -------------------------------------------------------------------------
        self.phase1_rounds = Counter(
            "paxlock_phase1_rounds", "Phase 1 (Prepare) rounds started by this node.", registry=r
        )
        self.phase1_latency = Histogram(
            "paxlock_phase1_latency_seconds",
            "From Prepare sent to a majority of Promises (the node becomes primary).",
            buckets=LATENCY_BUCKETS_S, registry=r,
        )  # fmt: skip
        self.phase2_rounds = Counter(
            "paxlock_phase2_rounds", "Phase 2 (Accept) rounds started, one per slot proposed.",
            registry=r,
        )  # fmt: skip
        self.phase2_latency = Histogram(
            "paxlock_phase2_latency_seconds",
            "On the primary, from the step that proposed a slot (its first Accept) to the "
            "step that learned it chosen.",
            buckets=LATENCY_BUCKETS_S, registry=r,
        )  # fmt: skip
        self.ballot_round = Gauge(
            "paxlock_ballot_round", "Round of the highest ballot this node has seen.", registry=r
        )
        self.primary_changes = Counter(
            "paxlock_primary_changes", "Times this node saw the primary change.", registry=r
        )
        self.is_primary = Gauge(
            "paxlock_is_primary", "1 while this node is the primary, else 0.", registry=r
        )
        self.chosen_index = Gauge(
            "paxlock_chosen_index", "Highest slot of the contiguous chosen prefix this node knows.",
            registry=r,
        )  # fmt: skip
        self.applied_index = Gauge(
            "paxlock_applied_index", "Highest slot applied to the lease state machine.", registry=r
        )
        self.batch_size = Histogram(
            "paxlock_batch_size_commands", "Commands per proposed slot (group commit).",
            buckets=COUNT_BUCKETS, registry=r,
        )  # fmt: skip
        self.slots_chosen = Counter(
            "paxlock_slots_chosen", "Slots this node learned as chosen.", registry=r
        )
        self.learn_messages = Counter(
            "paxlock_learn_messages",
            "Messages sent to learn chosen values; divided by paxlock_slots_chosen_total it is "
            "the messages per chosen slot of the learn mode (A*L, A+L or K*(A+L)).",
            registry=r,
        )  # fmt: skip

        # -- durability ------------------------------------------------------------------------
        self.fsync_latency = Histogram(
            "paxlock_fsync_latency_seconds", "Time to make one batch of records durable.",
            buckets=LATENCY_BUCKETS_S, registry=r,
        )  # fmt: skip
        self.fsync_records = Histogram(
            "paxlock_fsync_records", "Records made durable per fsync (write batching).",
            buckets=COUNT_BUCKETS, registry=r,
        )  # fmt: skip

        # -- leases ----------------------------------------------------------------------------
        # Lease events are counted by the primary in office, as it applies them: each once in
        # the cluster (a dashboard sums the members), never again when a restarted member
        # re-applies its log (it does so before it can take office).
        self.leases_held = Gauge("paxlock_leases_held", "Leases currently held.", registry=r)
        self.grants = Counter(
            "paxlock_lease_grants", "Leases granted, counted by the primary in office.",
            registry=r,
        )  # fmt: skip
        self.releases = Counter(
            "paxlock_lease_releases", "Leases released, counted by the primary in office.",
            registry=r,
        )  # fmt: skip
        self.expiries = Counter(
            "paxlock_lease_expiries",
            "Leases expired (TTL ran out), counted by the primary in office.", registry=r,
        )  # fmt: skip
        self.renewals = Counter(
            "paxlock_lease_renewals",
            "Renewals confirmed by a quorum round, counted by the primary: one per lease, "
            "permit or session renewed (a session's renews everything bound to it).", registry=r,
        )  # fmt: skip
        self.waiters = Gauge(
            "paxlock_lease_waiters", "Acquires parked at this node waiting for a name.", registry=r
        )

        # -- peers -----------------------------------------------------------------------------
        self.peer_messages_sent = Counter(
            "paxlock_peer_messages_sent", "Consensus messages written to peer links.", registry=r
        )
        self.peer_messages_received = Counter(
            "paxlock_peer_messages_received", "Consensus messages received from peers.", registry=r
        )
        self.peer_refused = Counter(
            "paxlock_peer_refused",
            "Peer handshakes on /internal/ws refused, by reason: token (missing or wrong "
            "cluster token), certificate (no member's client certificate), mismatch (names "
            "another member than it proves), self (names this node), not_member, "
            "unknown_cluster, unknown_incarnation (member identity).",
            ["reason"], registry=r,
        )  # fmt: skip
        self.peer_frames_dropped = Counter(
            "paxlock_peer_frames_dropped",
            "Frames of an authenticated member dropped, by reason: invalid (fails decoding "
            "or a bound of the peer messages), not_binary.",
            ["reason"], registry=r,
        )  # fmt: skip
        self.peer_messages_dropped = Counter(
            "paxlock_peer_messages_dropped",
            "Well-formed peer messages the core did not believe (core.admission), by reason: "
            "non_member, implausible_slot, implausible_round, unfollowed_chosen, "
            "unsolicited_catchup (a catch-up reply nobody asked for), corrupt_snapshot (fails "
            "its digest).",
            ["reason"], registry=r,
        )  # fmt: skip
        self.peer_sender_restarts = Counter(
            "paxlock_peer_sender_restarts",
            "Peer sender tasks restarted after dying of an unexpected error, by peer.",
            ["peer"], registry=r,
        )  # fmt: skip

        # -- HTTP ------------------------------------------------------------------------------
        self.http_requests = Counter(
            "paxlock_http_requests",
            "HTTP requests by route template (not raw path), method and status.",
            ["route", "method", "status"], registry=r,
        )  # fmt: skip
        self.http_latency = Histogram(
            "paxlock_http_request_duration_seconds",
            "HTTP request duration by route template and method (streams: their lifetime).",
            ["route", "method"], buckets=HTTP_BUCKETS_S, registry=r,
        )  # fmt: skip
        self._http_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        """Bounded: routes are templates, methods and statuses few."""
        self.http_forwarded = Counter(
            "paxlock_http_forwarded",
            "Requests this node proxied to the primary, by outcome: ok (any answer), "
            "unreachable (connection or timeout), refused (already forwarded or no primary).",
            ["outcome"], registry=r,
        )  # fmt: skip

        # -- limits ----------------------------------------------------------------------------
        self.limit_refusals = Counter(
            "paxlock_limit_refusals",
            "Requests answered 429 too_many, and connections closed, because a limit was "
            "reached, by limit: holds_per_principal, holds, value_bytes, rate, "
            "waiters_per_name, streams (429s); header_timeout, body_timeout, slow_reader "
            "(connections closed).",
            ["limit"], registry=r,
        )  # fmt: skip
        self.streams_open = Gauge(
            "paxlock_streams_open",
            "Observe requests (long polls and event streams) open at this node.", registry=r,
        )  # fmt: skip

    def observe_http(self, route: str, method: str, status: int, seconds: float) -> None:
        """Once per request: the labelled children are looked up once per label set and
        kept (``labels()`` cost more than the counting itself)."""
        key = (route, method, status)
        children = self._http_children.get(key)
        if children is None:
            children = self._http_children[key] = (
                self.http_requests.labels(route=route, method=method, status=str(status)),
                self.http_latency.labels(route=route, method=method),
            )  # fmt: skip
        children[0].inc()
        children[1].observe(seconds)


def paxlock_version() -> str:
    """The installed paxlock's version ("unknown" when run from a tree never installed)."""
    try:
        return version("paxlock")
    except PackageNotFoundError:
        return "unknown"
