"""Load generator: C concurrent HTTP clients doing acquire -> release cycles on distinct names
against a local 3-node cluster of ``paxlock serve`` processes, and 16 clients contending for
one name (handoffs/s). Beside it, in the same run, a baseline: an aiohttp echo server on
loopback doing the same number of round trips (two per cycle).

    python tests/bench/bench_http.py [--seconds 5] [--runs 3] [--clients 1,16,64]

Prints medians over the runs. Not a test: run it by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from aiohttp import web


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_cluster(root: Path, extra: list[str]) -> tuple[list[subprocess.Popen[bytes]], dict[str, str]]:
    ports = {f"n{i}": free_port() for i in (1, 2, 3)}
    urls = {n: f"http://127.0.0.1:{p}" for n, p in ports.items()}
    procs = []
    for node, port in ports.items():
        cmd = [sys.executable, "-m", "paxlock.api.cli", "serve", "--id", node,
               "--listen", f"127.0.0.1:{port}", "--data-dir", str(root / node),
               "--log-level", "warning", *extra]
        for other, url in urls.items():
            if other != node:
                cmd += ["--peer", f"{other}={url}"]
        procs.append(subprocess.Popen(cmd, stderr=subprocess.DEVNULL))
    return procs, urls


async def wait_primary(urls: dict[str, str]) -> str:
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(urls["n1"] + "/v1/cluster") as response:
                    primary = (await response.json()).get("primary")  # 503 while bootstrapping
                if primary:
                    async with session.get(urls[primary] + "/readyz") as response:
                        if response.status == 200:
                            return urls[primary]
            except (aiohttp.ClientError, OSError):
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError("no primary")


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


async def cycles(url: str, clients: int, seconds: float) -> dict[str, float]:
    acquire_s: list[float] = []
    cycle_s: list[float] = []
    stop = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker(index: int) -> None:
            n = 0
            while time.monotonic() < stop:
                name = f"bench/{index}/{n}"
                n += 1
                start = time.perf_counter()
                async with session.post(f"{url}/v1/leases/{name}:acquire",
                                        json={"holder": f"c{index}", "ttl": 30}) as response:
                    lease = await response.json()
                    assert response.status == 200, lease
                acquired = time.perf_counter()
                async with session.post(f"{url}/v1/leases/{name}:release",
                                        json={"holder": f"c{index}", "token": lease["token"]}) as response:
                    await response.read()
                    assert response.status == 200
                acquire_s.append(acquired - start)
                cycle_s.append(time.perf_counter() - start)

        began = time.monotonic()
        await asyncio.gather(*(worker(i) for i in range(clients)))
        elapsed = time.monotonic() - began
    return {"cycles_s": len(cycle_s) / elapsed, "acquire_p50_ms": pct(acquire_s, 0.5) * 1e3,
            "acquire_p99_ms": pct(acquire_s, 0.99) * 1e3, "cycle_p50_ms": pct(cycle_s, 0.5) * 1e3,
            "cycle_p99_ms": pct(cycle_s, 0.99) * 1e3}


async def handoffs(url: str, clients: int, seconds: float, name: str) -> float:
    grants = 0
    stop = time.monotonic() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def worker(index: int) -> None:
            nonlocal grants
            while time.monotonic() < stop:
                async with session.post(f"{url}/v1/leases/{name}:acquire",
                                        json={"holder": f"h{index}", "ttl": 30, "wait": 10}) as r:
                    lease = await r.json()
                    if r.status != 200:
                        continue
                grants += 1
                async with session.post(f"{url}/v1/leases/{name}:release",
                                        json={"holder": f"h{index}", "token": lease["token"]}) as r:
                    await r.read()

        began = time.monotonic()
        await asyncio.gather(*(worker(i) for i in range(clients)))
        return grants / (time.monotonic() - began)


@contextlib.asynccontextmanager
async def echo_server() -> AsyncIterator[str]:
    """An aiohttp server on loopback that answers every POST with its JSON body plus a
    token: the floor an HTTP round trip costs here. Yields its base URL."""

    async def handle(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({**body, "token": 1})

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def echo_baseline(clients: int, seconds: float) -> dict[str, float]:
    async with echo_server() as url:
        return await cycles(url, clients, seconds)


async def main_async(args: argparse.Namespace) -> None:
    client_counts = [int(c) for c in args.clients.split(",")]
    results: dict[str, list[dict[str, float]]] = {}
    for run in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            procs, urls = start_cluster(Path(tmp), args.serve_arg or [])
            try:
                url = await wait_primary(urls)
                for c in client_counts:
                    results.setdefault(f"paxlock C={c}", []).append(await cycles(url, c, args.seconds))
                    results.setdefault(f"echo    C={c}", []).append(await echo_baseline(c, args.seconds))
                rate = await handoffs(url, 16, args.seconds, f"contended/{run}")
                results.setdefault("handoffs 16 clients", []).append({"handoffs_s": rate})
            finally:
                for p in procs:
                    p.send_signal(signal.SIGTERM)
                for p in procs:
                    p.wait(timeout=10)
    print(f"medians of {args.runs} runs, {args.seconds:.0f} s each, on {os.cpu_count()} cores")
    for label, runs in results.items():
        keys = runs[0].keys()
        med = {k: statistics.median(r[k] for r in runs) for k in keys}
        print(f"{label:22s} " + "  ".join(f"{k}={v:,.1f}" for k, v in med.items()))
    print(json.dumps({k: {kk: statistics.median(r[kk] for r in v) for kk in v[0]}
                      for k, v in results.items()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", default="1,16,64")
    parser.add_argument("--serve-arg", action="append", help="extra flag for paxlock serve")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
