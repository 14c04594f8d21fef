"""Membership changes on a loaded cluster: a local 3-node cluster of ``paxlock serve``
processes holds N leases (10,000 by default, TTL 600 s, acquired in parallel); then

(a) a new member joins (``serve --join``, the default ``--snapshot-every``, so it catches up
    by a snapshot) and is timed from ``POST /v1/members`` to voting: add -> caught up (the
    primary's ``GET /v1/members`` shows it reachable with a lag of at most 2 slots), then
    promote (first sent, retried while ``not_caught_up``) -> voter (the role shown, no change
    pending);
(b) two clients run acquire -> release cycles on fresh names as fast as they can, one
    against the primary and one against a follower, while the member is removed, and while
    another is added (-> learner in effect) and promoted (-> voter in effect); the longest
    gap between successful acquires of each client over each change is reported, beside
    the longest over one second without a change (``steady``).

    python tests/bench/membership_bench.py [--leases 10000] [--runs 3] [--parallel 64]

Prints a table per run and the medians. Not a test: run it by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http import client as http_client
from pathlib import Path
from typing import Any

import aiohttp


TESTS = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("paxlock_test_harness", TESTS / "harness.py")
assert _spec is not None and _spec.loader is not None
harness: Any = importlib.util.module_from_spec(_spec)
sys.modules["paxlock_test_harness"] = harness
_spec.loader.exec_module(harness)
ops: Any = harness.load_module("paxlock_membership_ops", TESTS / "membership_ops.py")
POLL_S = 0.01
"""How often the primary's member list is read while a step is timed."""


async def fill(url: str, leases: int, parallel: int, ttl_s: float) -> float:
    """Acquire ``leases`` names through ``parallel`` connections; returns the seconds taken."""
    names = iter(range(leases))
    started = time.monotonic()

    async def worker(session: aiohttp.ClientSession) -> None:
        for index in names:
            body = {"holder": "bench", "ttl": ttl_s, "request_id": f"fill-{index}"}
            while True:
                try:
                    async with session.post(f"{url}/v1/leases/held/{index}:acquire",
                                            json=body) as response:  # fmt: skip
                        if response.status == 200:
                            break
                        assert response.status == 503, await response.text()
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    pass

    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=parallel)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(parallel)))
    return time.monotonic() - started


def until(condition: Callable[[], Any], what: str, deadline_s: float = 600.0) -> float:
    """Poll ``condition`` every POLL_S; the monotonic time it first held."""
    harness.wait_for(condition, deadline_s, what, interval_s=POLL_S)
    return time.monotonic()


def in_effect(cluster: Any, node: str, role: str | None) -> bool:
    """The primary shows ``node`` with ``role`` (None: not listed), no change pending."""
    roles = ops.roles(cluster)
    return bool(roles) and roles.get(node) == role


def time_join(cluster: Any, node: str) -> dict[str, float]:
    """(a): a joined member added, caught up, promoted, voting; seconds of each part."""
    cluster.start_joiner(node, ops.primary_url(cluster))
    ops.joined(cluster, node)
    added = time.monotonic()
    ops.add(cluster, node)
    caught_up = until(lambda: ops.caught_up(cluster, node), f"{node} caught up")
    promote_sent = time.monotonic()
    ops.change(cluster, "POST", f"/v1/members/{node}:promote", deadline_s=600)
    voter = until(lambda: in_effect(cluster, node, "voter"), f"{node} a voter")
    installed = "snapshot_installed" in cluster.members[node].log_path.read_text()
    return {"snapshot_installed": float(installed),"add_to_caught_up_s": caught_up - added, "promote_to_voter_s": voter - promote_sent,
            "add_to_voter_s": voter - added}  # fmt: skip


class Cycles:
    """One client's acquire -> release cycles on fresh names against one URL, as fast as it
    can (one keep-alive connection), keeping the time of every granted acquire."""

    def __init__(self, url: str, tag: str) -> None:
        self.url = url
        self.tag = tag
        self.granted: list[float] = []
        self.failed = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _post(self, connection: http_client.HTTPConnection, path: str, body: dict[str, Any]
              ) -> tuple[int, Any]:  # fmt: skip
        connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")

    def _run(self) -> None:
        host, port = self.url.removeprefix("http://").split(":")
        connection = http_client.HTTPConnection(host, int(port), timeout=5)
        cycle = 0
        while not self.stop.is_set():
            cycle += 1
            name = f"/v1/leases/cycle/{self.tag}/{cycle}"
            try:
                status, lease = self._post(connection, name + ":acquire", {"holder": "c", "ttl": 30})
                if status != 200:
                    self.failed += 1
                    continue
                self.granted.append(time.monotonic())
                self._post(connection, name + ":release", {"holder": "c", "token": lease["token"]})
            except (OSError, http_client.HTTPException):
                self.failed += 1
                connection.close()

    def longest_gap_s(self, since: float, until: float) -> float:
        times = [t for t in self.granted if since <= t <= until]
        before = [t for t in self.granted if t < since][-1:]
        after = [t for t in self.granted if t > until][:1]
        edges = before + times + after
        if len(edges) < 2:
            return until - since
        return max(b - a for a, b in zip(edges, edges[1:]))


def time_changes(cluster: Any, removed: str, added: str) -> dict[str, float]:
    """(b): the longest gap of each client over the removal of ``removed``, the add of the
    joined ``added`` (until it is a learner in effect) and its promotion (until it votes)."""
    primary = ops.primary_id(cluster)
    follower = next(n for n in cluster.members if n not in (primary, removed)
                    and cluster.alive(n))  # fmt: skip
    cluster.start_joiner(added, cluster.url(primary))
    ops.joined(cluster, added)
    clients = {"primary": Cycles(cluster.url(primary), "p"),
               "follower": Cycles(cluster.url(follower), "f")}  # fmt: skip

    def settle() -> None:
        """Each client granted 20 more: the next window starts from a steady load."""
        marks = {who: len(c.granted) for who, c in clients.items()}
        until(lambda: all(len(c.granted) > marks[who] + 20 for who, c in clients.items()),
              "the clients to run", 30)  # fmt: skip

    settle()
    started = time.monotonic()
    windows = {"steady": (started, until(lambda: time.monotonic() > started + 1.0, "1 s"))}
    started = time.monotonic()
    ops.change(cluster, "DELETE", f"/v1/members/{removed}", deadline_s=60)
    windows["remove"] = (started, until(lambda: in_effect(cluster, removed, None), "removed"))
    cluster.kill(removed)
    settle()
    started = time.monotonic()
    ops.add(cluster, added)
    windows["add"] = (started, until(lambda: in_effect(cluster, added, "learner"), "learner"))
    until(lambda: ops.caught_up(cluster, added), f"{added} caught up")
    settle()
    started = time.monotonic()
    ops.change(cluster, "POST", f"/v1/members/{added}:promote", deadline_s=600)
    windows["promote"] = (started, until(lambda: in_effect(cluster, added, "voter"), "voter"))
    until(lambda: all(c.granted[-1] > windows["promote"][1] for c in clients.values()),
          "a grant after the last change", 30)  # fmt: skip
    for client in clients.values():
        client.stop.set()
        client.thread.join(timeout=10)
    out = {}
    for change, (since, till) in windows.items():
        if change != "steady":
            out[f"{change}_s"] = till - since
        for who, client in clients.items():
            out[f"{change}_gap_{who}_ms"] = 1000 * client.longest_gap_s(since, till)
    out["cycles_failed"] = sum(c.failed for c in clients.values())
    return out


def one_run(leases: int, parallel: int, ttl_s: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        limits = ["--max-holds", str(2 * leases + 100_000),
                  "--max-holds-per-principal", str(2 * leases + 100_000)]  # fmt: skip
        with harness.running_cluster(Path(tmp), 3, limits) as cluster:
            primary = cluster.wait_ready()
            result = {"fill_s": asyncio.run(fill(cluster.url(primary), leases, parallel, ttl_s))}
            result.update(time_join(cluster, "n4"))
            result.update(time_changes(cluster, removed="n4", added="n5"))
            return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leases", type=int, default=10_000)
    parser.add_argument("--ttl", type=float, default=600.0)
    parser.add_argument("--parallel", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results = []
    for run in range(args.runs):
        result = one_run(args.leases, args.parallel, args.ttl)
        results.append(result)
        print(f"run {run + 1}:", flush=True)
        for key, value in result.items():
            print(f"  {key:<28} {value:10.3f}", flush=True)
    print(f"leases={args.leases} ttl={args.ttl:g}s parallel={args.parallel} runs={args.runs}")
    print(f"  {'measure':<28} {'median':>10} {'min':>10} {'max':>10}")
    for key in results[0]:
        values = [r[key] for r in results]
        print(f"  {key:<28} {statistics.median(values):10.3f} {min(values):10.3f} "
              f"{max(values):10.3f}")


if __name__ == "__main__":
    main()
