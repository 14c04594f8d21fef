"""kill -9 the primary while clients are mid-call: they keep working (connection errors and
503s are retried on the other nodes) and a retried acquire — same request id — neither
grants twice nor conflicts with itself (which would surface as ``LeaseHeld`` naming us).

All workers share one client, hence one holder identity: the busiest case for the server's
idempotency window, which is bounded per holder (see
``test_sdk_basics.test_a_retry_is_answered_after_many_commands_of_the_same_holder``)."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from paxlock.api.client.aio import AsyncClient

WORKERS = 4
ITERATIONS = 25
KILL_AFTER = 12
"""Calls completed (all workers) before the primary dies: the loop is well under way."""


async def test_kill_the_primary_mid_loop(cluster: Any) -> None:
    primary = await asyncio.to_thread(cluster.wait_ready)
    completed = 0
    enough = asyncio.Event()
    tokens: dict[int, list[int]] = {i: [] for i in range(WORKERS)}

    async def plain_loop(client: AsyncClient, worker: int) -> None:
        nonlocal completed
        name = f"failover/{worker}"
        for _ in range(ITERATIONS):
            lease = await client.acquire(name, ttl=5)  # LeaseHeld here = conflict with itself
            current = await client.get(name)
            assert current is not None and (current.holder, current.token) == (
                client.identity, lease.token)  # fmt: skip
            await client.release(name, lease.token)  # NotHolder here = a second grant
            tokens[worker].append(lease.token)
            completed += 1
            if completed >= KILL_AFTER:
                enough.set()

    async def lock_loop(client: AsyncClient, worker: int) -> None:
        nonlocal completed
        for _ in range(ITERATIONS):
            async with client.lock(f"failover/{worker}", ttl=3, wait=20) as lease:
                assert (await client.verify(f"failover/{worker}", lease.token)).current
                tokens[worker].append(lease.token)
            completed += 1

    async with AsyncClient(cluster.urls(), identity="looper", retry_deadline=20) as client:
        async with asyncio.timeout(60):
            async with asyncio.TaskGroup() as group:
                for worker in range(WORKERS):
                    loop = lock_loop if worker == 0 else plain_loop
                    group.create_task(loop(client, worker))
                await enough.wait()
                assert client._transport.primary_url == cluster.url(primary)
                await asyncio.to_thread(cluster.kill, primary, signal.SIGKILL)
        assert completed == WORKERS * ITERATIONS
        assert client._transport.failed_attempts > 0, "no call was in flight at the kill"
        assert await client.list("failover/") == []
        info = await client.cluster()
        assert info.primary is not None and info.primary != primary
    for worker_tokens in tokens.values():
        assert worker_tokens == sorted(set(worker_tokens))
    every = [t for ts in tokens.values() for t in ts]
    assert len(every) == len(set(every)), "a fencing token was granted twice"
