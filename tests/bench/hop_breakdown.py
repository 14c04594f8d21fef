"""Where one acquire's time goes, hop by hop, beside the physical floor of this machine.

    python tests/bench/hop_breakdown.py [--seconds 5] [--runs 3]

Starts a 3-node cluster of ``paxlock serve`` processes; one client (C=1) does acquire ->
release cycles on fresh names, first on the primary, then on a follower (which relays to
the primary over the peer link). From the servers' own metrics it splits an acquire into:

  * the client's round trip to the node it calls (what the client measures),
  * the time the node spent on the request (``paxlock_http_request_duration_seconds``),
  * the primary's phase 2 (from its Accepts to the slot learned chosen:
    ``paxlock_phase2_latency_seconds``), and its commits (``paxlock_fsync_latency_seconds``).

The floor, measured in the same run: an aiohttp echo round trip on loopback, one raw
``fsync``, one ``SqliteStore.append`` (a commit through aiosqlite). Medians over the runs;
the means of the server histograms (their sums over their counts). Not a test: run it by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_http import echo_server, pct, start_cluster, wait_primary  # noqa: E402
from bench_store import raw_fsync_p50_s, unbatched_s  # noqa: E402

SERVER_METRICS = {
    "http": ("paxlock_http_request_duration_seconds", 'method="POST",route="/v1/leases/{name}:acquire"'),
    "phase2": ("paxlock_phase2_latency_seconds", ""),
    "commit": ("paxlock_fsync_latency_seconds", ""),
}


async def scrape(session: aiohttp.ClientSession, url: str) -> dict[str, tuple[float, float]]:
    """(sum, count) of each histogram of ``SERVER_METRICS`` at ``url``."""
    async with session.get(url + "/metrics") as response:
        text = await response.text()
    found: dict[str, tuple[float, float]] = {}
    for key, (name, labels) in SERVER_METRICS.items():
        values = []
        for suffix in ("_sum", "_count"):
            wanted = f"{name}{suffix}" + (f"{{{labels}}}" if labels else "")
            line = next((ln for ln in text.splitlines() if ln.startswith(wanted + " ")), None)
            values.append(float(line.rsplit(" ", 1)[1]) if line else 0.0)
        found[key] = (values[0], values[1])
    return found


def mean_ms(before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]],
            key: str) -> float:  # fmt: skip
    total = after[key][0] - before[key][0]
    count = after[key][1] - before[key][1]
    return 1e3 * total / count if count else float("nan")


async def c1(entry: str, primary: str, seconds: float) -> dict[str, float]:
    """C=1 cycles on ``entry``; the client's acquire p50 and the servers' means."""
    acquire_s: list[float] = []
    async with aiohttp.ClientSession() as session:
        before_entry, before_primary = await scrape(session, entry), await scrape(session, primary)
        stop, n = time.monotonic() + seconds, 0
        while time.monotonic() < stop:
            n += 1
            start = time.perf_counter()
            async with session.post(f"{entry}/v1/leases/hops/{n}:acquire",
                                    json={"holder": "c", "ttl": 30}) as response:
                lease = await response.json()
                assert response.status == 200, lease
            acquire_s.append(time.perf_counter() - start)
            async with session.post(f"{entry}/v1/leases/hops/{n}:release",
                                    json={"holder": "c", "token": lease["token"]}) as response:
                await response.read()
        after_entry, after_primary = await scrape(session, entry), await scrape(session, primary)
    return {"client_p50": pct(acquire_s, 0.5) * 1e3,
            "entry_http": mean_ms(before_entry, after_entry, "http"),
            "primary_http": mean_ms(before_primary, after_primary, "http"),
            "phase2": mean_ms(before_primary, after_primary, "phase2"),
            "commit": mean_ms(before_primary, after_primary, "commit")}


async def echo_rtt_p50_ms(seconds: float) -> float:
    samples: list[float] = []
    async with echo_server() as url, aiohttp.ClientSession() as session:
        stop = time.monotonic() + seconds
        while time.monotonic() < stop:
            start = time.perf_counter()
            async with session.post(f"{url}/echo", json={"holder": "c", "ttl": 30}) as response:
                await response.json()
            samples.append(time.perf_counter() - start)
    return pct(samples, 0.5) * 1e3


async def one_run(seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        procs, urls = start_cluster(Path(tmp), [])
        try:
            primary = await wait_primary(urls)
            follower = next(u for u in urls.values() if u != primary)
            on_primary = await c1(primary, primary, seconds)
            on_follower = await c1(follower, primary, seconds)
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.wait(timeout=10)
        floor_dir = Path(tmp) / "floor"
        floor_dir.mkdir()
        row = {f"primary {k}": v for k, v in on_primary.items()}
        row |= {f"follower {k}": v for k, v in on_follower.items()}
        row["echo rtt"] = await echo_rtt_p50_ms(seconds)
        row["raw fsync"] = raw_fsync_p50_s(floor_dir) * 1e3
        row["store commit"] = (await unbatched_s(floor_dir, 300))[0] * 1e3
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rows = [asyncio.run(one_run(args.seconds)) for _ in range(args.runs)]
    print(f"C=1 acquire, medians of {args.runs} runs (ms; server figures are means)")
    for key in rows[0]:
        print(f"  {key:28s} {statistics.median(r[key] for r in rows):8.3f}")
    print(f"  (cpu count {os.cpu_count()})")


if __name__ == "__main__":
    main()
