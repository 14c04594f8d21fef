"""Cost as leases grow, and an idle cluster's quiet (issue 14, parts 3 and 4).

A local 3-node cluster of ``paxlock serve`` processes (temporary data dirs, free loopback
ports, always stopped) is filled, step by step, to N live leases (TTL 600 s, acquired by
``--parallel`` connections at once), and at each step the bench reports:

- the primary's RSS (``VmRSS`` of /proc/PID/status), after the step's renewals and acquires;
- renew-all: every held lease renewed once by ``--parallel`` connections (renewals/s);
- the C=1 acquire p50 on fresh names (``--probes`` acquire -> release cycles), beside the
  same with no lease held (step 0);
- the snapshot of the lease machine at N leases, in-process (``LeaseMachine.snapshot()`` and
  ``restore()`` of a machine built by applying the same acquires; the servers take it every
  ``--snapshot-every`` applied slots, inside one step of the event loop), and its size;
- a full-cluster restart: SIGTERM to all three, then all started at once; the time from the
  start until the primary is ready and a sample of leases (the first, the last and 62
  others) is served by linearizable GETs; then ``GET /v1/leases?prefix=held/`` must list N.

Then, on a fresh cluster, the CPU of every node over ``--window`` seconds (utime + stime of
/proc/PID/stat): idle with no leases (heartbeats only); with 10,000 parked waiters (acquires
with ``wait`` on 20 held names) and 2,000 open observe event streams while nothing changes;
and with 10,000 leases of ``--short-ttl`` that nobody renews, while they expire and after.

The load comes from a minimal HTTP/1.1 keep-alive client on asyncio streams (one request
at a time per connection), not aiohttp's client: on 2 shared cores the generator's own CPU
would otherwise cap what is measured.

    python tests/bench/scale_bench.py [--steps 1000,10000,100000] [--runs 3] [--no-idle]

Prints a table per run and the medians. Not a test: run it by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TESTS / "bench"))
from scale_client import Pool, cpu_seconds, rss_mb, snapshot_cost  # noqa: E402

harness: Any = None  # tests/harness.py, loaded in main() (tests are not a package)
TTL_S = 600.0
PARK_BATCH = 500
"""Waiters parked at once (a burst of thousands of requests starves the primary's heartbeats)."""
CLUSTER_FLAGS = ["--log-level", "warning", "--max-holds", "1000000",
                 "--max-holds-per-principal", "1000000"]  # fmt: skip


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


async def fill(pool: Pool, held: dict[str, int], upto: int, ttl_s: float = TTL_S,
               prefix: str = "held/") -> float:  # fmt: skip
    """Acquire names ``prefix0..upto-1`` not yet in ``held``; returns acquires/s."""
    todo = iter([i for i in range(upto) if f"{prefix}{i}" not in held])
    started, count = time.monotonic(), 0

    async def worker(conn: Any) -> None:
        nonlocal count
        for index in todo:
            name = f"{prefix}{index}"
            body = {"holder": f"h{index % 997}", "ttl": ttl_s, "request_id": f"{prefix}{index}"}
            while True:
                status, reply = await conn.post(f"/v1/leases/{name}:acquire", body)
                if status == 200:
                    held[name] = reply["token"]
                    count += 1
                    break
                assert status in (503, 429), (status, reply)
                await asyncio.sleep(0.05)

    await pool.each(worker)
    return count / max(1e-9, time.monotonic() - started)


async def renew_all(pool: Pool, held: dict[str, int]) -> float:
    """Renew every held lease once; returns renewals/s."""
    todo = iter(list(held.items()))
    started, count = time.monotonic(), 0

    async def worker(conn: Any) -> None:
        nonlocal count
        for name, token in todo:
            holder = f"h{int(name.rsplit('/', 1)[1]) % 997}"
            while True:
                status, reply = await conn.post(f"/v1/leases/{name}:renew",
                                                {"holder": holder, "token": token})  # fmt: skip
                if status == 200:
                    break
                assert status == 503, (status, reply)  # a new primary: renew again
                await asyncio.sleep(0.05)
            count += 1

    await pool.each(worker)
    return count / (time.monotonic() - started)


async def c1_p50_ms(url: str, probes: int, tag: str) -> float:
    """C=1 acquire -> release on fresh names; the p50 of the acquires, in ms."""
    pool = Pool(url, 1)
    samples = []
    try:
        conn = (await pool.open())[0]
        for i in range(probes):
            name = f"fresh/{tag}/{i}"
            started = time.perf_counter()
            status, lease = await conn.post(f"/v1/leases/{name}:acquire", {"holder": "p", "ttl": 30})
            samples.append(time.perf_counter() - started)
            assert status == 200, (status, lease)
            status, _ = await conn.post(f"/v1/leases/{name}:release",
                                        {"holder": "p", "token": lease["token"]})  # fmt: skip
            assert status == 200
    finally:
        await pool.close()
    return statistics.median(samples) * 1e3


def restart(cluster: Any, held: dict[str, int]) -> float:
    """SIGTERM every member, start them all; seconds from the start until the primary is
    ready and a sample of leases is served (then every lease must be listed)."""
    for member in cluster.members.values():
        member.process.send_signal(signal.SIGTERM)
    for member in cluster.members.values():
        member.process.wait(timeout=60)
    names = sorted(held)
    sample = [names[0], names[-1], *random.Random(len(names)).sample(names, min(62, len(names)))]
    started = time.monotonic()
    for node_id in cluster.members:
        cluster.start(node_id)

    def served() -> bool:
        primary = cluster.primary()
        if primary is None:
            return False
        url = cluster.url(primary)
        for name in sample:
            got = harness.try_http("GET", f"{url}/v1/leases/{name}", timeout_s=5.0)
            if got is None or got[0] != 200 or got[2]["token"] != held[name]:
                return False
        return True

    harness.wait_for(served, 120.0, "every lease served after the restart", interval_s=0.01)
    took = time.monotonic() - started
    primary = cluster.wait_ready()
    status, _, body = harness.http("GET", cluster.url(primary) + "/v1/leases?prefix=held/",
                                   timeout_s=120.0)  # fmt: skip
    assert status == 200 and len(body["leases"]) == len(held), (status, len(body["leases"]))
    return took


async def scale_run(root: Path, args: argparse.Namespace) -> list[dict[str, float]]:
    cluster = harness.Cluster(root, 3, [*CLUSTER_FLAGS, *args.serve_arg])
    rows = []
    try:
        primary = cluster.start_many()
        base_p50 = await c1_p50_ms(cluster.url(primary), args.probes, "base")
        rows.append({"leases": 0, "p50_ms": base_p50,
                     "rss_mb": rss_mb(cluster.members[primary].process.pid)})  # fmt: skip
        held: dict[str, int] = {}
        for step in args.steps:
            primary = cluster.wait_ready()
            url = cluster.url(primary)
            async with Pool(url, args.parallel) as pool:
                fill_s = await fill(pool, held, step)
                renew_s = await renew_all(pool, held)
            p50 = await c1_p50_ms(url, args.probes, str(step))
            rss = rss_mb(cluster.members[primary].process.pid)
            snap = snapshot_cost(step)
            restart_s = restart(cluster, held)
            rows.append({"leases": step, "rss_mb": rss, "fill_per_s": fill_s,
                         "renew_per_s": renew_s, "p50_ms": p50, **snap,
                         "restart_s": restart_s})  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    except BaseException:
        print(cluster.logs(), file=sys.stderr)
        raise
    finally:
        cluster.stop_all()
    return rows


# -- idle CPU ------------------------------------------------------------------------------


def cpu_window(pids: dict[str, int], seconds: float) -> dict[str, float]:
    """CPU% of each process over the next ``seconds`` (100 = one core busy)."""
    before = {n: cpu_seconds(p) for n, p in pids.items()}
    started = time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - started
    return {n: 100 * (cpu_seconds(p) - before[n]) / wall for n, p in pids.items()}


async def cpu_while(pids: dict[str, int], done: Callable[[], Awaitable[bool]],
                    limit_s: float) -> tuple[dict[str, float], float]:  # fmt: skip
    """CPU% of each process until ``done()`` (polled every 0.5 s); with the seconds taken."""
    before = {n: cpu_seconds(p) for n, p in pids.items()}
    started = time.monotonic()
    while not await done() and time.monotonic() - started < limit_s:
        await asyncio.sleep(0.5)
    wall = time.monotonic() - started
    return {n: 100 * (cpu_seconds(p) - before[n]) / wall for n, p in pids.items()}, wall


def metric_sum(cluster: Any, name: str) -> float:
    return sum(cluster.metric(n, name) or 0.0 for n in cluster.members)


async def idle_run(root: Path, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    cluster = harness.Cluster(root, 3, [*CLUSTER_FLAGS, *args.serve_arg])
    out: dict[str, dict[str, float]] = {}
    try:
        primary = cluster.start_many()
        pids = {n: m.process.pid for n, m in cluster.members.items()}
        role = {n: ("P" if n == primary else "F") for n in pids}
        label = lambda cpu: {f"{n}({role[n]})": v for n, v in cpu.items()}  # noqa: E731
        await asyncio.sleep(1.0)
        out["idle, no leases"] = label(cpu_window(pids, args.window))
        url = cluster.url(primary)
        async with Pool(url, args.parallel) as pool:
            await fill(pool, {}, 20, prefix="park/")
        waiters = [Pool(url, PARK_BATCH) for _ in range(args.waiters // PARK_BATCH)]
        streams = [Pool(cluster.url(n), 2_000 // 3 + (i < 2_000 % 3)) for i, n in
                   enumerate(cluster.members)]  # fmt: skip
        try:
            for b, pool in enumerate(waiters):  # in batches, as clients arrive over time
                await pool.park(lambda i, b=b: (f"/v1/leases/park/{i % 20}:acquire",
                                                {"holder": f"w{b}-{i}", "ttl": 30, "wait": 3600}))
                harness.wait_for(lambda b=b: metric_sum(cluster, "paxlock_lease_waiters")
                                 == (b + 1) * PARK_BATCH, 30.0, f"{(b + 1) * PARK_BATCH} "
                                 f"waiters parked (now {metric_sum(cluster, 'paxlock_lease_waiters')})")  # fmt: skip
            for i, pool in enumerate(streams):
                await pool.stream(lambda j, i=i: f"/v1/elections/obs/{i}-{j}:observe")
            harness.wait_for(lambda: metric_sum(cluster, "paxlock_streams_open") >= 2_000,
                             60.0, "2,000 streams open")  # fmt: skip
            await asyncio.sleep(1.0)
            out[f"{args.waiters:,} waiters + 2,000 streams"] = label(cpu_window(pids, args.window))
        finally:
            for pool in [*waiters, *streams]:
                await pool.close()
        harness.wait_for(lambda: metric_sum(cluster, "paxlock_lease_waiters") == 0,
                         60.0, "the waiters gone")  # fmt: skip
        await asyncio.sleep(1.0)
        out["idle again, 20 leases"] = label(cpu_window(pids, args.window))
        async with Pool(url, args.parallel) as pool:
            await fill(pool, {}, 10_000, ttl_s=args.short_ttl, prefix="short/")

        async def expired() -> bool:
            return (cluster.metric(primary, "paxlock_leases_held") or 0) <= 20

        cpu, took = await cpu_while(pids, expired, args.short_ttl + 120)
        out[f"10k expiring (ttl {args.short_ttl:g} s, {took:.1f} s)"] = label(cpu)
        await asyncio.sleep(1.0)
        out["after the expiry"] = label(cpu_window(pids, args.window))
    except BaseException:
        print(cluster.logs(), file=sys.stderr)
        raise
    finally:
        cluster.stop_all()
    return out


# -- main ------------------------------------------------------------------------------------

COLUMNS = [("leases", "{:,.0f}"), ("rss_mb", "{:.0f}"), ("fill_per_s", "{:,.0f}"),
           ("renew_per_s", "{:,.0f}"), ("p50_ms", "{:.2f}"), ("snap_ms", "{:.0f}"),
           ("restore_ms", "{:.0f}"), ("snap_mb", "{:.1f}"), ("restart_s", "{:.2f}")]  # fmt: skip


def table(rows: list[dict[str, float]]) -> str:
    lines = ["| " + " | ".join(c for c, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(f.format(row[c]) if c in row else "" for c, f in COLUMNS)
                     + " |")
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> None:
    runs: list[list[dict[str, float]]] = []
    idles: list[dict[str, dict[str, float]]] = []
    for run in range(args.runs):
        if args.steps:
            with tempfile.TemporaryDirectory() as tmp:
                runs.append(await scale_run(Path(tmp), args))
            print(f"run {run + 1}:\n{table(runs[-1])}", flush=True)
        if args.idle:
            for attempt in range(3):  # a primary change (a loaded machine) answers the waiters
                try:
                    with tempfile.TemporaryDirectory() as tmp:
                        idles.append(await idle_run(Path(tmp), args))
                    break
                except AssertionError as error:
                    print(f"idle run, attempt {attempt + 1}: {error}", flush=True)
            print(json.dumps(idles[-1]), flush=True)
    print(f"\nmedians of {args.runs} runs on {os.cpu_count()} cores")
    if runs:
        merged = [{k: median([r[i][k] for r in runs]) for k in runs[0][i]}
                  for i in range(len(runs[0]))]  # fmt: skip
        print(table(merged))
    if idles:
        print("\n| CPU % per node (P primary, F follower) | " + " | ".join(
            sorted(next(iter(idles[0].values())))) + " |\n|---|---|---|---|")
        for scenario in idles[0]:
            nodes = sorted(idles[0][scenario])
            cells = [median([i[s][n] for i in idles for s in i if s.split(" (")[0]
                             == scenario.split(" (")[0]]) for n in nodes]  # fmt: skip
            print(f"| {scenario} | " + " | ".join(f"{c:.1f}" for c in cells) + " |")


def main() -> None:
    global harness
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=lambda s: [int(x) for x in s.split(",") if x],
                        default=[1000, 10_000, 100_000])  # fmt: skip
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--parallel", type=int, default=64, help="connections (C)")
    parser.add_argument("--probes", type=int, default=200, help="C=1 acquires per step")
    parser.add_argument("--window", type=float, default=10.0, help="seconds of a CPU window")
    parser.add_argument("--short-ttl", type=float, default=20.0)
    parser.add_argument("--waiters", type=int, default=10_000, help="parked (multiple of 500)")
    parser.add_argument("--no-idle", dest="idle", action="store_false")
    parser.add_argument("--serve-arg", action="append", default=[],
                        help="extra flag for paxlock serve")  # fmt: skip
    args = parser.parse_args()
    spec_path = TESTS / "harness.py"
    import importlib.util

    spec = importlib.util.spec_from_file_location("paxlock_test_harness", spec_path)
    assert spec is not None and spec.loader is not None
    harness = importlib.util.module_from_spec(spec)
    sys.modules["paxlock_test_harness"] = harness
    spec.loader.exec_module(harness)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the cluster on the way out
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
