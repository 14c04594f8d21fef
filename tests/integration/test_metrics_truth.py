"""Metrics that tell the truth (issue 11, item 5), on a real 3-node cluster.

``test_every_metric_of_the_dashboard_and_the_alerts_moves`` reads the metric names out of
deploy/grafana/paxlock-dashboard.json and deploy/prometheus/alerts.yml, drives a workload
that should move each of them (leases granted, renewed, released, expired and waited for,
a request forwarded by a follower, a failover), scrapes every member between the stages,
and fails for any metric that never moved — or that no stage is meant to move: a panel on a
new metric fails here until this test drives it.

The other tests pin the exact meaning of the lease counters: counted once per event in the
whole cluster (by the primary in office), renewals included, and never replayed by a
restarted member re-applying its log.
"""

from __future__ import annotations

import json
import re
import sys
import threading
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read deploy/ (test extras)")

harness = sys.modules["paxlock_test_harness"]  # registered by tests/conftest.py
http = harness.http
wait_for = harness.wait_for

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DEADLINE_S = 15.0

# -- the metrics deploy/ uses ---------------------------------------------------------------

PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "bool", "offset", "inf", "nan",
}  # fmt: skip
PROMETHEUS_OWN = {"up"}
"""Series Prometheus makes itself (``up``: the scrape succeeded), not a member's metrics."""
STATIC = {"paxlock_node_info", "paxlock_build_info"}
"""Always 1 by design: checked for their value and labels instead of for movement."""


def metric_names(expr: str) -> set[str]:
    """The metric names of a PromQL expression: identifiers left once strings, label
    matchers, ranges and grouping clauses are gone, that are not functions or keywords."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        rest = expr[match.end():].lstrip()
        if match.group() not in PROMQL_WORDS and not rest.startswith("("):
            names.add(match.group())
    return names


def deploy_metrics() -> set[str]:
    board = json.loads((DEPLOY / "grafana" / "paxlock-dashboard.json").read_text())
    exprs = [t["expr"] for panel in board["panels"] for t in panel.get("targets", [])]
    exprs += [v["query"]["query"] if isinstance(v.get("query"), dict) else ""
              for v in board.get("templating", {}).get("list", [])]  # fmt: skip
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    exprs += [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    exprs = [re.sub(r"label_values\(([^,)]*).*\)", r"\1", e) for e in exprs]
    return set().union(*(metric_names(e) for e in exprs)) - PROMETHEUS_OWN


def test_the_metric_names_are_read_out_of_promql() -> None:
    assert metric_names(
        'histogram_quantile(0.99, sum by (instance, le) (rate(x_bucket{job="$job"}[5m])))'
        " / on (job) group_right y - max by (job) (z_total) > bool 0.1"
    ) == {"x_bucket", "y", "z_total"}
    used = deploy_metrics()
    assert {"paxlock_is_primary", "paxlock_phase2_latency_seconds_bucket",
            "paxlock_lease_renewals_total", "paxlock_node_info"} <= used, used  # fmt: skip


# -- scraping ---------------------------------------------------------------------------------

Scrape = dict[str, float]
"""Sample name -> the sum of its samples over every label set, of one member."""


def scrape(cluster: Any, node: str) -> Scrape | None:
    if not cluster.alive(node):
        return None
    try:
        status, _, text = http("GET", cluster.url(node) + "/metrics", timeout_s=3.0)
    except OSError:
        return None
    if status != 200:
        return None
    out: Scrape = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name] = out.get(sample.name, 0.0) + sample.value
    return out


def total(cluster: Any, name: str) -> float:
    """``name`` summed over every live member."""
    return sum((s or {}).get(name, 0.0) for s in (scrape(cluster, n) for n in cluster.members))


class Timeline:
    """Every member's scrape at each stage of the workload."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        self.stages: list[tuple[str, dict[str, Scrape | None]]] = []

    def take(self, stage: str) -> None:
        self.stages.append((stage, {n: scrape(self.cluster, n) for n in self.cluster.members}))

    def values(self, node: str, name: str) -> list[float]:
        """``name`` at each stage ``node`` answered; a labelled series not yet created
        (a counter that never moved) reads 0."""
        return [scraped.get(name, 0.0) for _, stage in self.stages
                if (scraped := stage[node]) is not None]

    def moved(self, name: str) -> bool:
        return any(len(set(self.values(node, name))) > 1 for node in self.cluster.members)

    def describe(self, name: str) -> str:
        return ", ".join(f"{node}: {self.values(node, name)}" for node in self.cluster.members)


def acquire(cluster: Any, node: str, name: str, holder: str, ttl: float = 30.0,
            wait: float = 0.0) -> dict[str, Any]:  # fmt: skip
    status, _, body = http("POST", f"{cluster.url(node)}/v1/leases/{name}:acquire",
                           {"holder": holder, "ttl": ttl, "wait": wait}, timeout_s=wait + 10)  # fmt: skip
    assert status == 200, body
    return dict(body)


def call(cluster: Any, node: str, name: str, verb: str, lease: dict[str, Any]) -> None:
    status, _, body = http("POST", f"{cluster.url(node)}/v1/leases/{name}:{verb}",
                           {"holder": lease["holder"], "token": lease["token"]})  # fmt: skip
    assert status == 200, body


def gone(cluster: Any, node: str, name: str) -> Callable[[], bool]:
    return lambda: http("GET", f"{cluster.url(node)}/v1/leases/{name}")[0] == 404


# -- the tests ----------------------------------------------------------------------------------


def test_every_metric_of_the_dashboard_and_the_alerts_moves(cluster: Any) -> None:
    primary = cluster.wait_ready()
    follower = cluster.followers(primary)[0]
    timeline = Timeline(cluster)
    timeline.take("started")

    # Leases: a grant through a follower (forwarded), a renewal, a release, a contended
    # acquire (409), a waiter parked and then granted, and an expiry.
    held = acquire(cluster, follower, "m/a", "alice")
    call(cluster, primary, "m/a", "renew", held)
    status, _, _ = http("POST", f"{cluster.url(primary)}/v1/leases/m/a:acquire",
                        {"holder": "bob", "ttl": 30})  # fmt: skip
    assert status == 409
    timeline.take("leases held")
    results: list[dict[str, Any]] = []
    waiter = threading.Thread(target=lambda: results.append(
        acquire(cluster, primary, "m/a", "carol", wait=20)))  # fmt: skip
    waiter.start()
    try:
        wait_for(lambda: (scrape(cluster, primary) or {}).get("paxlock_lease_waiters") == 1,
                 DEADLINE_S, "the waiter parked at the primary")  # fmt: skip
        timeline.take("waiter parked")
    finally:
        call(cluster, primary, "m/a", "release", held)
        waiter.join(timeout=30)
    assert results and results[0]["holder"] == "carol"
    call(cluster, primary, "m/a", "release", results[0])
    acquire(cluster, primary, "m/short", "dave", ttl=0.5)
    wait_for(gone(cluster, primary, "m/short"), DEADLINE_S, "the short lease to expire")
    timeline.take("leases done")

    # A failover: the primary dies, a successor runs phase 1 and takes over.
    cluster.kill(primary)
    successor = cluster.wait_ready()
    acquire(cluster, successor, "m/b", "erin")
    timeline.take("after failover")

    used = deploy_metrics()
    not_moved = {name: timeline.describe(name) for name in sorted(used - STATIC)
                 if not timeline.moved(name)}  # fmt: skip
    assert not not_moved, f"metrics of deploy/ that never moved: {not_moved}"

    # The static ones: 1 on every member, with their labels.
    for node in cluster.members:
        if not cluster.alive(node):
            continue
        _, _, text = http("GET", cluster.url(node) + "/metrics")
        assert harness.metric_value(text, "paxlock_node_info", f'{{node="{node}"}}') == 1
        labels = f'{{version="{version("paxlock")}"}}'
        assert harness.metric_value(text, "paxlock_build_info", labels) == 1, text[:2000]
        assert (harness.metric_value(text, "process_resident_memory_bytes") or 0) > 0


def test_lease_counters_count_each_event_once_renewals_included(cluster: Any) -> None:
    """The dashboard sums the lease counters over members: each event counts once in the
    cluster (at the primary in office), and a confirmed renewal counts."""
    primary = cluster.wait_ready()
    follower = cluster.followers(primary)[0]
    leases = [acquire(cluster, follower, f"c/{i}", "alice") for i in range(3)]
    for lease in leases:
        for _ in range(2):
            call(cluster, follower, lease["name"], "renew", lease)
    call(cluster, primary, "c/0", "release", leases[0])
    counts = {"paxlock_lease_grants_total": 3.0, "paxlock_lease_renewals_total": 6.0,
              "paxlock_lease_releases_total": 1.0}  # fmt: skip
    wait_for(lambda: all(total(cluster, name) == count for name, count in counts.items()),
             DEADLINE_S, f"the cluster's lease counters at {counts}")  # fmt: skip
    # Phase 2 is timed where it runs, on the primary: from a slot's first Accept to chosen.
    observed = {n: (scrape(cluster, n) or {}).get("paxlock_phase2_latency_seconds_count", 0.0)
                for n in cluster.members}  # fmt: skip
    assert observed[primary] >= 4 and all(observed[n] == 0 for n in observed if n != primary)
    assert (scrape(cluster, primary) or {})["paxlock_phase2_latency_seconds_sum"] > 0
    # The applied index is the applied index: what /v1/cluster reports as applied.
    for node in cluster.members:
        def same(node: str = node) -> bool:
            view = cluster.cluster_view(node)
            applied = (scrape(cluster, node) or {}).get("paxlock_applied_index")
            return view is not None and applied == view["applied_index"] >= 5

        wait_for(same, DEADLINE_S, f"{node}'s paxlock_applied_index and /v1/cluster agreeing")


def test_a_restarted_cluster_does_not_count_its_history_again(cluster: Any) -> None:
    primary = cluster.wait_ready()
    for i in range(5):
        lease = acquire(cluster, primary, f"r/{i}", "alice")
        call(cluster, primary, lease["name"], "release", lease)
    acquire(cluster, primary, "r/short", "bob", ttl=0.3)
    wait_for(gone(cluster, primary, "r/short"), DEADLINE_S, "the short lease to expire")
    names = ("paxlock_lease_grants_total", "paxlock_lease_releases_total",
             "paxlock_lease_expiries_total")  # fmt: skip
    wait_for(lambda: all(total(cluster, n) >= c for n, c in zip(names, [6, 5, 1])),
             DEADLINE_S, "every lease event counted")  # fmt: skip

    primary = cluster.restart_all()  # SIGKILL all, start all: each re-applies its log
    assert [total(cluster, n) for n in names] == [0, 0, 0]
    lease = acquire(cluster, primary, "r/after", "carol")
    call(cluster, primary, "r/after", "release", lease)
    wait_for(lambda: [total(cluster, n) for n in names] == [1, 1, 0], DEADLINE_S,
             "only the new events counted")  # fmt: skip
