"""A client process for ``test_sdk_ledger.py``: takes one lock ``--iterations`` times and, while
holding it, appends ``start TOKEN WORKER`` then ``end TOKEN WORKER`` to a shared ledger file.

It says it is connected by creating ``--ready``, then starts only once ``--go`` exists, so
that every worker contends from the first iteration. ``--mode sync`` uses ``Client`` (its
loop in a thread), ``--mode async`` the ``AsyncClient``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from pathlib import Path

from paxlock.api.client.aio import AsyncClient
from paxlock.api.client.sync import Client

GO_TIMEOUT_S = 30.0


def append(path: str, line: str) -> None:
    """One ``write`` on an ``O_APPEND`` descriptor: each line lands whole, at the end."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def wait_for_go(go: Path) -> None:
    deadline = time.monotonic() + GO_TIMEOUT_S
    while not go.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"no {go} within {GO_TIMEOUT_S}s")
        time.sleep(0.005)


async def run_async(args: argparse.Namespace, rng: random.Random) -> None:
    async with AsyncClient(args.endpoints.split(","), identity=args.worker) as client:
        await client.cluster()
        Path(args.ready).touch()
        await asyncio.to_thread(wait_for_go, Path(args.go))
        for _ in range(args.iterations):
            async with client.lock(args.name, ttl=args.ttl, wait=args.wait) as lease:
                append(args.ledger, f"start {lease.token} {args.worker}\n")
                await asyncio.sleep(rng.uniform(0, args.hold_s))
                lease.check()
                append(args.ledger, f"end {lease.token} {args.worker}\n")


def run_sync(args: argparse.Namespace, rng: random.Random) -> None:
    with Client(args.endpoints.split(","), identity=args.worker) as client:
        client.cluster()
        Path(args.ready).touch()
        wait_for_go(Path(args.go))
        for _ in range(args.iterations):
            with client.lock(args.name, ttl=args.ttl, wait=args.wait) as lease:
                append(args.ledger, f"start {lease.token} {args.worker}\n")
                time.sleep(rng.uniform(0, args.hold_s))
                lease.check()
                append(args.ledger, f"end {lease.token} {args.worker}\n")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoints", required=True, help="comma-separated URLs")
    parser.add_argument("--ledger", required=True)
    parser.add_argument("--ready", required=True)
    parser.add_argument("--go", required=True)
    parser.add_argument("--worker", required=True)
    parser.add_argument("--mode", choices=("async", "sync"), required=True)
    parser.add_argument("--name", default="ledger")
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument("--ttl", type=float, default=5.0)
    parser.add_argument("--wait", type=float, default=60.0)
    parser.add_argument("--hold-s", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    if args.mode == "async":
        asyncio.run(run_async(args, rng))
    else:
        run_sync(args, rng)
    return 0


if __name__ == "__main__":
    sys.exit(main())
