"""A real Prometheus server (Debian's ``prometheus`` package) scrapes a real 3-node cluster
with deploy/prometheus/prometheus.yml (its targets swapped for the cluster's ports) and the
alert rules of deploy/prometheus/alerts.yml (issue 7).

Through Prometheus's HTTP API the test sees the ``paxlock_`` series, the rules loaded and
healthy, every alert expression and dashboard query evaluating against real data, no alert
in a healthy cluster, and the quorum alerts turning pending when two of three members die.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import sys
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read deploy/ (test extras)")

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PROMETHEUS = shutil.which("prometheus")
PAXLOCK_TOKEN = re.compile(r"\bpaxlock_[a-z0-9_]+\b")

pytestmark = pytest.mark.skipif(
    PROMETHEUS is None, reason="prometheus not installed (apt-get install -y prometheus)"
)


def free_port() -> int:
    return int(sys.modules["paxlock_test_harness"].free_port())  # outside the ephemeral range


class PrometheusAPI:
    def __init__(self, base: str) -> None:
        self.base = base

    def get(self, path: str, **params: str) -> Any:
        url = self.base + path + ("?" + urllib.parse.urlencode(params) if params else "")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            return json.load(error)

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = self.get("/api/v1/query", query=expr)
        assert answer["status"] == "success", f"{expr}: {answer}"
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.base + "/-/ready", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False


def scrape_config(cluster: Any, tmp_path: Path) -> Path:
    """deploy/prometheus/prometheus.yml with the cluster's real targets, a 1 s scrape and
    evaluation interval and the absolute path of the real alert rules."""
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(DEPLOY / "prometheus" / rule) for rule in config["rule_files"]]
    (job,) = config["scrape_configs"]
    (static,) = job["static_configs"]
    static["targets"] = [f"127.0.0.1:{member.port}" for member in cluster.members.values()]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def dashboard_exprs() -> list[str]:
    board = json.loads((DEPLOY / "grafana" / "paxlock-dashboard.json").read_text())
    exprs = [t["expr"] for panel in board["panels"] for t in panel.get("targets", [])]
    return [e.replace("$job", "paxlock").replace("$instance", ".*")
            .replace("$__rate_interval", "10s") for e in exprs]  # fmt: skip


def alert_rules() -> dict[str, str]:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return {rule["alert"]: rule["expr"] for group in rules["groups"] for rule in group["rules"]}


def test_prometheus_scrapes_a_cluster_and_loads_the_rules(cluster_factory: Any, http: Any,
                                                          wait_for: Any, tmp_path: Path) -> None:  # fmt: skip
    cluster = cluster_factory(3, ["--election-timeout", "1.0"])  # as deploy/ runs it
    primary = cluster.wait_ready()
    follower = next(n for n in cluster.members if n != primary)
    # Traffic through a follower, so the labelled HTTP and forwarding series exist too.
    status, _, lease = http("POST", cluster.url(follower) + "/v1/leases/prom:acquire",
                            {"holder": "alice", "ttl": 30})  # fmt: skip
    assert status == 200, lease
    status, _, _ = http("POST", cluster.url(primary) + "/v1/leases/prom:acquire",
                        {"holder": "bob", "ttl": 30})  # fmt: skip
    assert status == 409

    assert PROMETHEUS is not None
    port = free_port()
    log_path = tmp_path / "prometheus.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [PROMETHEUS, f"--config.file={scrape_config(cluster, tmp_path)}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    api = PrometheusAPI(f"http://127.0.0.1:{port}")
    try:
        wait_for(lambda: api.ready() or server.poll() is not None, 30, "Prometheus ready")
        assert server.poll() is None, log_path.read_text()[-3000:]

        # The series, scraped from every member, agreeing on one primary.
        series = wait_for(lambda: len(api.query("paxlock_is_primary")) == 3 and
                          api.query("paxlock_is_primary"), 30, "paxlock_is_primary from 3 members")  # fmt: skip
        assert sum(float(s["value"][1]) for s in series) == 1
        assert {s["metric"]["job"] for s in series} == {"paxlock"}
        assert {s["metric"]["cluster"] for s in series} == {"paxlock"}
        targets = api.get("/api/v1/targets")["data"]["activeTargets"]
        assert len(targets) == 3 and all(t["health"] == "up" for t in targets), targets

        # Every metric the rules and the dashboard use exists in the real scrape.
        exprs = list(alert_rules().values()) + dashboard_exprs()
        used = set().union(*(PAXLOCK_TOKEN.findall(e) for e in exprs))
        def missing() -> set[str]:
            return {name for name in used if not api.query(f'count({{__name__="{name}"}})')}

        wait_for(lambda: not missing(), 30, "every metric used by the rules and dashboard")

        # The rules are loaded, evaluated and healthy; every expression runs on real data.
        def rules_evaluated() -> dict[str, Any] | None:
            groups = api.get("/api/v1/rules")["data"]["groups"]
            rules = {r["name"]: r for g in groups for r in g["rules"]}
            done = set(alert_rules()) <= set(rules) and all(
                r["health"] == "ok" and not r["lastEvaluation"].startswith("0001")
                for r in rules.values())  # fmt: skip
            return rules if done else None

        rules = wait_for(rules_evaluated, 30, "every alert rule evaluated with health ok")
        assert all(rule["type"] == "alerting" for rule in rules.values())
        for expr in exprs:
            api.query(expr)
        # A healthy cluster fires nothing. Only PaxlockNoPrimary may be pending: an election
        # (on a loaded test machine) leaves no primary for a moment, which is what `for:` hides.
        alerts = api.get("/api/v1/alerts")["data"]["alerts"]
        assert all(a["state"] == "pending" and a["labels"]["alertname"] == "PaxlockNoPrimary"
                   for a in alerts), alerts  # fmt: skip

        # Two of three members die: the quorum and no-primary alerts go pending (for: 30s).
        for node_id in [primary, follower]:
            cluster.kill(node_id, signal.SIGKILL)

        def pending() -> set[str]:
            alerts = api.get("/api/v1/alerts")["data"]["alerts"]
            return {a["labels"]["alertname"] for a in alerts if a["state"] in ("pending", "firing")}

        wait_for(lambda: {"PaxlockQuorumLost", "PaxlockNoPrimary"} <= pending(), 30,
                 "PaxlockQuorumLost and PaxlockNoPrimary pending")  # fmt: skip
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
