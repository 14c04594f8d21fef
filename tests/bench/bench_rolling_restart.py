"""Rolling restart under load: C clients (16 by default) run acquire -> release cycles on names
of their own against a local 3-node cluster of ``paxlock serve`` processes, spread over the
endpoints, while every member in turn is stopped with SIGTERM (as a rolling upgrade or a
Kubernetes pod deletion does), started again and caught up. Reports the longest window in
which no client's acquire succeeded, and how many requests were answered 503 or failed to
connect meanwhile.

    python tests/bench/bench_rolling_restart.py [--clients 16] [--runs 3] [--primary-last]

Prints each run and the median. Not a test: run it by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

_spec = importlib.util.spec_from_file_location(
    "paxlock_test_harness", Path(__file__).resolve().parent.parent / "harness.py")
assert _spec is not None and _spec.loader is not None
harness: Any = importlib.util.module_from_spec(_spec)
sys.modules["paxlock_test_harness"] = harness
_spec.loader.exec_module(harness)

RETRY_S = 0.005
"""A client's pause after a 503 or a refused connection (it then tries the next endpoint)."""


class Load:
    def __init__(self, urls: list[str], clients: int) -> None:
        self.urls = urls
        self.clients = clients
        self.acquired: list[float] = []
        self.unavailable = 0
        self.refused = 0
        self.stop = asyncio.Event()

    async def client(self, index: int, session: aiohttp.ClientSession) -> None:
        endpoint = index % len(self.urls)
        cycle = 0
        while not self.stop.is_set():
            cycle += 1
            name = f"roll/{index}/{cycle}"
            body = {"holder": f"c{index}", "ttl": 30, "request_id": f"c{index}-{cycle}"}
            token = None
            while token is None and not self.stop.is_set():
                try:
                    async with session.post(f"{self.urls[endpoint]}/v1/leases/{name}:acquire",
                                            json=body) as response:  # fmt: skip
                        if response.status == 200:
                            token = (await response.json())["token"]
                            self.acquired.append(time.monotonic())
                            break
                        self.unavailable += response.status == 503
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    self.refused += 1
                endpoint = (endpoint + 1) % len(self.urls)
                await asyncio.sleep(RETRY_S)
            release = {"holder": f"c{index}", "token": token, "request_id": f"r{index}-{cycle}"}
            while token is not None and not self.stop.is_set():
                try:
                    async with session.post(f"{self.urls[endpoint]}/v1/leases/{name}:release",
                                            json=release) as response:  # fmt: skip
                        if response.status in (200, 409):
                            break
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    pass
                endpoint = (endpoint + 1) % len(self.urls)
                await asyncio.sleep(RETRY_S)

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=2.0)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await asyncio.gather(*(self.client(i, session) for i in range(self.clients)))

    def longest_gap(self, since: float, until: float) -> tuple[float, float]:
        """(length, start) of the longest window without a successful acquire."""
        times = sorted(t for t in self.acquired if since <= t <= until)
        edges = [since, *times, until]
        return max((b - a, a) for a, b in zip(edges, edges[1:], strict=False))


async def restart_all(cluster: Any, primary_last: bool, marks: list[tuple[float, str]]) -> None:
    """(Every call that blocks runs in a thread: the load shares this event loop.)"""
    order = list(cluster.members)
    if primary_last:
        primary = await asyncio.to_thread(cluster.primary)
        order = [n for n in order if n != primary] + [primary]
    for node in order:
        member = cluster.members[node]
        role = "primary" if await asyncio.to_thread(cluster.primary) == node else "follower"
        marks.append((time.monotonic(), f"SIGTERM {node} ({role})"))
        member.process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(member.process.wait, 15)
        marks.append((time.monotonic(), f"{node} exited"))
        await asyncio.to_thread(cluster.start, node)
        await asyncio.to_thread(cluster.wait_ready)
        marks.append((time.monotonic(), f"{node} started, cluster ready"))
        await asyncio.sleep(1.0)  # let it catch up and the load settle before the next


async def one_run(clients: int, primary_last: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        with harness.running_cluster(Path(tmp)) as cluster:
            load = Load(cluster.urls(), clients)
            task = asyncio.create_task(load.run())
            await asyncio.sleep(2.0)  # warm up
            started = time.monotonic()
            before = (load.unavailable, load.refused)
            marks: list[tuple[float, str]] = []
            await restart_all(cluster, primary_last, marks)
            ended = time.monotonic()
            load.stop.set()
            await task
            cycles = sum(1 for t in load.acquired if started <= t <= ended)
            gap, at = load.longest_gap(started, ended)
            last = max((m for m in marks if m[0] <= at), default=(started, "start"))
            print(f"  longest gap {1000 * gap:.1f} ms began {1000 * (at - last[0]):.0f} ms "
                  f"after: {last[1]}")  # fmt: skip
            return {
                "gap_ms": 1000 * gap,
                "acquires_per_s": cycles / (ended - started),
                "unavailable": load.unavailable - before[0],
                "refused": load.refused - before[1],
            }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--primary-last", action="store_true",
                        help="restart the followers first, the primary last")
    args = parser.parse_args()
    results = []
    for run in range(args.runs):
        result = asyncio.run(one_run(args.clients, args.primary_last))
        results.append(result)
        print(f"run {run + 1}: " + " ".join(f"{k}={v:.1f}" for k, v in result.items()),
              flush=True)  # fmt: skip
    gaps = [r["gap_ms"] for r in results]
    print(f"clients={args.clients} runs={args.runs} longest_gap_ms median={statistics.median(gaps):.1f} "
          f"max={max(gaps):.1f}")


if __name__ == "__main__":
    main()
