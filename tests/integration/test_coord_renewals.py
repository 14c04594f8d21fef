"""Issue 15's measure: a worker holding 1,000 locks under one session costs one renewal per
interval. Acquire 1,000 leases bound to one session, renew the session once per interval
for a few intervals, and read the primary's /metrics: ``paxlock_lease_renewals`` (what the
keeper's confirmation rounds renewed) rises by one per renewal — not by 1,000 — and no log
slot is written for any of them. Run with ``-s`` to see the figures."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncio

harness = sys.modules["paxlock_test_harness"]
LEASES = 1000
INTERVALS = 5


async def _acquire_all(base: str, session_id: str) -> list[int]:
    async with aiohttp.ClientSession() as http:
        sem = asyncio.Semaphore(32)

        async def one(n: int) -> int:
            async with sem, http.post(f"{base}/v1/leases/renewals/{n}:acquire",
                                      json={"holder": "worker", "session": session_id}) as r:
                assert r.status == 200, await r.text()
                token: int = (await r.json())["token"]
                return token

        return await asyncio.gather(*(one(n) for n in range(LEASES)))


def test_one_session_renewal_per_interval_keeps_1000_leases(tmp_path: Path) -> None:
    with harness.running_cluster(tmp_path, 3) as cluster:
        primary = cluster.wait_ready()
        base = cluster.url(primary)
        ttl_s = 30.0
        _, _, session = harness.http("POST", f"{base}/v1/sessions",
                                     {"holder": "worker", "ttl": ttl_s})  # fmt: skip
        started = time.monotonic()
        tokens = asyncio.run(_acquire_all(base, session["id"]))
        acquired_s = time.monotonic() - started
        assert len(set(tokens)) == LEASES
        metric = lambda name: cluster.metric(primary, name) or 0.0  # noqa: E731
        renewals, slots = metric("paxlock_lease_renewals_total"), metric("paxlock_slots_chosen_total")
        for _ in range(INTERVALS):  # the SDK renews every ttl/3; here back to back
            status, _, renewed = harness.http("POST", f"{base}/v1/sessions/{session['id']}:renew",
                                              {"holder": "worker"})  # fmt: skip
            assert status == 200 and renewed["expires_in"] > ttl_s / 2, renewed
        renewals_after = metric("paxlock_lease_renewals_total")
        slots_after = metric("paxlock_slots_chosen_total")
        _, _, held = harness.http("GET", f"{base}/v1/sessions/{session['id']}")
        print(f"\n{LEASES} leases bound to {session['id']} acquired in {acquired_s:.2f} s; "
              f"{INTERVALS} session renewals: paxlock_lease_renewals_total "
              f"{renewals:.0f} -> {renewals_after:.0f}, paxlock_slots_chosen_total "
              f"{slots:.0f} -> {slots_after:.0f}; the session holds {len(held['holds'])}")
        assert len(held["holds"]) == LEASES
        assert renewals_after - renewals == INTERVALS  # one per renewal, not one per lease
        assert slots_after == slots  # renewals write no log entry
