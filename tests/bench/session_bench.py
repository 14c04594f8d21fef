"""What keeping N locks alive costs: one session for all of them, or a ttl each (issue 15).

A local 3-node cluster of ``paxlock serve`` processes (temporary data dirs, free loopback
ports, always stopped). The SDK takes ``--locks`` leases twice, and each time holds them
for ``--hold`` seconds while it keeps them alive by itself:

- **one session**: ``client.session(ttl=T)`` and every lease ``client.lock(name,
  session=s)``: the SDK renews the session every T/3, and the leases not at all;
- **a ttl each**: every lease ``client.lock(name, ttl=T)``, each renewed every T/3.

Over each hold it reads the primary's ``/metrics`` before and after: renewals made by the
keeper's confirmation rounds (``paxlock_lease_renewals_total``), renew requests served
(``paxlock_http_requests_total`` of the renew routes), log slots written
(``paxlock_slots_chosen_total``), and the primary's CPU seconds. Renewal *intervals* are
hold / (T/3).

    python tests/bench/session_bench.py [--locks 1000] [--ttl 6] [--hold 12] [--runs 3]

Not a test: run it by hand. (tests/integration/test_coord_renewals.py asserts the count.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import paxlock

TESTS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TESTS / "bench"))
from scale_client import cpu_seconds  # noqa: E402

harness: Any = None  # tests/harness.py, loaded in main() (tests are not a package)
CLUSTER_FLAGS = ["--log-level", "warning"]
RENEW_ROUTE = re.compile(r'paxlock_http_requests_total\{[^}]*route="[^"]*:renew"[^}]*\} (\S+)')


def counters(cluster: Any, primary: str) -> dict[str, float]:
    """The primary's counters that a hold period moves."""
    status, _, text = harness.http("GET", cluster.url(primary) + "/metrics")
    assert status == 200, status
    value = lambda name: harness.metric_value(text, name) or 0.0  # noqa: E731
    return {
        "renewals": value("paxlock_lease_renewals_total"),
        "renew_requests": sum(float(v) for v in RENEW_ROUTE.findall(text)),
        "slots": value("paxlock_slots_chosen_total"),
        "cpu_s": cpu_seconds(cluster.members[primary].process.pid),
    }


async def hold(cluster: Any, primary: str, args: argparse.Namespace, bound: bool
               ) -> dict[str, float]:  # fmt: skip
    """Take ``--locks`` leases, hold them ``--hold`` seconds, release; the counters' moves
    over the hold alone (acquiring and releasing excluded)."""
    prefix = f"bench/{'session' if bound else 'own'}/{time.monotonic_ns()}/"
    async with paxlock.AsyncClient(cluster.url(primary)) as client, \
            contextlib.AsyncExitStack() as stack:  # fmt: skip
        session = (await stack.enter_async_context(client.session(ttl=args.ttl))
                   if bound else None)  # fmt: skip
        gate = asyncio.Semaphore(32)

        async def take(n: int) -> None:
            async with gate:
                lock = client.lock(prefix + str(n), ttl=None if bound else args.ttl,
                                   session=session, wait=10)  # fmt: skip
                await stack.enter_async_context(lock)

        await asyncio.gather(*(take(n) for n in range(args.locks)))
        before = counters(cluster, primary)
        await asyncio.sleep(args.hold)
        after = counters(cluster, primary)
    moved = {k: after[k] - before[k] for k in before}
    moved["intervals"] = args.hold / (args.ttl / 3)
    return moved


async def run(root: Path, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    cluster = harness.Cluster(root, 3, CLUSTER_FLAGS)
    try:
        primary = cluster.start_many()
        return {"one session": await hold(cluster, primary, args, bound=True),
                "a ttl each": await hold(cluster, primary, args, bound=False)}  # fmt: skip
    except BaseException:
        print(cluster.logs(), file=sys.stderr)
        raise
    finally:
        cluster.stop_all()


def main() -> None:
    global harness
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--locks", type=int, default=1000)
    parser.add_argument("--ttl", type=float, default=6.0, help="session or lease ttl (s)")
    parser.add_argument("--hold", type=float, default=12.0, help="seconds held and measured")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    spec = importlib.util.spec_from_file_location("paxlock_test_harness", TESTS / "harness.py")
    assert spec is not None and spec.loader is not None
    harness = importlib.util.module_from_spec(spec)
    sys.modules["paxlock_test_harness"] = harness
    spec.loader.exec_module(harness)
    results = []
    for n in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            results.append(asyncio.run(run(Path(tmp), args)))
        print(f"run {n + 1}: {results[-1]}", flush=True)
    print(f"\n{args.locks} leases held {args.hold:.0f} s, ttl {args.ttl:.0f} s "
          f"(renewed every {args.ttl / 3:.0f} s), medians of {args.runs} runs, at the primary:")
    print("| | intervals | renewals | renew requests | log slots | primary CPU s |")
    print("|---|---|---|---|---|---|")
    for way in results[0]:
        cell = lambda k: statistics.median(r[way][k] for r in results)  # noqa: E731
        print(f"| {way} | {cell('intervals'):.0f} | {cell('renewals'):.0f} | "
              f"{cell('renew_requests'):.0f} | {cell('slots'):.0f} | {cell('cpu_s'):.2f} |")


if __name__ == "__main__":
    main()
