"""Flame graphs of a loaded 3-node cluster: the primary and a follower, under C clients doing
acquire -> release cycles, either all on the primary or spread over every member (then two
requests in three reach a follower, which relays them to the primary).

    pip install py-spy
    python tests/bench/profile_cluster.py [--clients 64] [--spread] [--seconds 8] [--out DIR]

Writes DIR/{primary,follower}.svg (py-spy flame graphs) and DIR/{primary,follower}.txt (the
raw stacks), and prints the heaviest frames of each. py-spy samples from outside, so the
servers run unchanged. Not a test: run it by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_http import start_cluster, wait_primary  # noqa: E402


async def load(urls: list[str], clients: int, seconds: float) -> int:
    """``clients`` workers, worker i on ``urls[i % len(urls)]``; returns the cycles done."""
    done = 0
    stop = asyncio.get_running_loop().time() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def worker(index: int) -> None:
            nonlocal done
            url, n = urls[index % len(urls)], 0
            while asyncio.get_running_loop().time() < stop:
                n += 1
                name = f"profile/{index}/{n}"
                async with session.post(f"{url}/v1/leases/{name}:acquire",
                                        json={"holder": f"c{index}", "ttl": 30}) as response:
                    lease = await response.json()
                if response.status != 200:
                    continue
                async with session.post(f"{url}/v1/leases/{name}:release",
                                        json={"holder": f"c{index}", "token": lease["token"]}) as response:
                    await response.read()
                done += 1

        await asyncio.gather(*(worker(i) for i in range(clients)))
    return done


ROOTS = ("runpy", "cli/main.py", "cli/serve.py", "cli/__main__.py", "uvloop", "runners.py",
         "threading.py")
"""Frames under which everything runs: not worth a line."""


def heaviest(raw: Path, top: int = 15) -> list[str]:
    """The frames most often on the stack (inclusive), as percentages of the samples."""
    total, seen = 0, collections.Counter[str]()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        total += int(count)
        for frame in set(stack.split(";")):
            if not any(root in frame for root in ROOTS):
                seen[frame] += int(count)
    return [f"{100 * n / max(1, total):5.1f}% {frame[:110]}" for frame, n in seen.most_common(top)]


async def main_async(args: argparse.Namespace) -> None:
    spy = shutil.which("py-spy")
    if spy is None:
        raise SystemExit("py-spy is not installed: pip install py-spy")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        procs, urls = start_cluster(Path(tmp), [])
        try:
            primary = await wait_primary(urls)
            pid_of = {url: proc.pid for url, proc in zip(urls.values(), procs)}
            follower = next(u for u in urls.values() if u != primary)
            targets = list(urls.values()) if args.spread else [primary]
            await load(targets, args.clients, 2.0)  # warm up
            spies = []
            for role, url in (("primary", primary), ("follower", follower)):
                for fmt, suffix in (("flamegraph", "svg"), ("raw", "txt")):
                    spies.append(subprocess.Popen(
                        [spy, "record", "-p", str(pid_of[url]), "-d", str(int(args.seconds)),
                         "-r", "200", "--nonblocking", "-f", fmt, "-o", str(out / f"{role}.{suffix}")],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip
            cycles = await load(targets, args.clients, args.seconds)
            for spied in spies:
                spied.wait(timeout=60)
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.wait(timeout=10)
    print(f"{cycles / args.seconds:,.0f} cycles/s, C={args.clients}, "
          f"{'spread over every member' if args.spread else 'all on the primary'}")
    for role in ("primary", "follower"):
        print(f"-- {role} ({out / (role + '.svg')})")
        print("\n".join(heaviest(out / f"{role}.txt")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--spread", action="store_true")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--out", default="profile-out")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
