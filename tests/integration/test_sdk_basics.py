"""The SDK against a real 3-node cluster: plain calls, typed results, the error hierarchy,
idempotent retries, and the lock context manager's release/renew/lost behaviour."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from paxlock.api.client.aio import AsyncClient
from paxlock.api.client.errors import (
    BadRequest,
    LeaseHeld,
    LeaseLost,
    NotHolder,
    PaxlockError,
    Unavailable,
)
from paxlock.api.client.types import Lease

HARNESS = sys.modules["paxlock_test_harness"]  # loaded by tests/conftest.py


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One cluster for the whole module: these tests kill nothing and use their own names."""
    shared = HARNESS.Cluster(tmp_path_factory.mktemp("sdk-basics"), 3, [])
    try:
        shared.start_all()
        yield shared
    finally:
        shared.stop_all()


async def test_plain_calls_return_typed_results(cluster: Any) -> None:
    async with AsyncClient(cluster.urls(), identity="alice") as client:
        lease = await client.acquire("basics/a", ttl=10, value="v1")
        assert isinstance(lease, Lease)
        assert (lease.name, lease.holder, lease.value, lease.ttl) == ("basics/a", "alice", "v1", 10)
        assert lease.token >= 1 and lease.expires_in is not None
        got = await client.get("basics/a")
        assert got is not None and replace(got, expires_in=None) == replace(lease, expires_in=None)
        renewed = await client.renew("basics/a", lease.token)
        assert renewed.token == lease.token
        assert [x.name for x in await client.list("basics/")] == ["basics/a"]
        verification = await client.verify("basics/a", lease.token)
        assert verification.current and verification.token == lease.token
        assert not (await client.verify("basics/a", lease.token - 1)).current
        await client.release("basics/a", lease.token)
        assert await client.get("basics/a") is None
        assert await client.list("basics/") == []
        info = await client.cluster()
        assert info.primary in {m.id for m in info.members} and len(info.members) == 3


async def test_errors_are_typed_and_keep_the_server_message(cluster: Any) -> None:
    async with AsyncClient(cluster.urls(), identity="alice") as alice, \
            AsyncClient(cluster.urls(), identity="bob") as bob:  # fmt: skip
        lease = await alice.acquire("errors/x", ttl=10)
        with pytest.raises(LeaseHeld) as held:
            await bob.acquire("errors/x", ttl=5)
        assert held.value.holder == "alice" and held.value.status == 409
        assert held.value.token == lease.token
        assert held.value.expires_in is not None and 0 < held.value.expires_in <= 10
        assert "errors/x" in held.value.message
        with pytest.raises(LeaseHeld):  # waiting, then giving up
            started = time.monotonic()
            await bob.acquire("errors/x", ttl=5, wait=0.3)
        assert time.monotonic() - started >= 0.25
        with pytest.raises(NotHolder) as not_holder:
            await bob.renew("errors/x", lease.token)
        assert not_holder.value.holder == "alice" and not_holder.value.code == "not_holder"
        with pytest.raises(NotHolder):
            await alice.release("errors/x", lease.token + 1000)
        with pytest.raises(BadRequest) as bad:
            await alice.acquire("bad name!", ttl=5)
        assert bad.value.status == 400 and "name" in bad.value.message
        with pytest.raises(BadRequest) as bad_ttl:
            await alice.acquire("errors/y", ttl=100_000)
        assert "ttl" in bad_ttl.value.message
        assert all(issubclass(k, PaxlockError) for k in (LeaseHeld, NotHolder, BadRequest))
        await alice.release("errors/x", lease.token)


async def test_a_retried_acquire_returns_the_first_grant(cluster: Any) -> None:
    """The same request id twice: the second call replays the first grant (no conflict with
    itself, no second token)."""
    async with AsyncClient(cluster.urls(), identity="alice") as client:
        first = await client.acquire("idem/x", ttl=10, request_id="req-1")
        again = await client.acquire("idem/x", ttl=10, request_id="req-1")
        assert again.token == first.token
        with pytest.raises(LeaseHeld):  # a *new* request by the same holder is a conflict
            await client.acquire("idem/x", ttl=10)
        await client.release("idem/x", first.token)


async def test_a_retry_is_answered_after_many_commands_of_the_same_holder(cluster: Any) -> None:
    """What an SDK retry meets when one identity stays busy (other tasks of the same client)
    while one of its calls backs off across a failover: 100 commands later, the retry of a
    granted acquire still replays the grant. (With the server's first window, 64 results per
    holder, this conflicted with itself: 409 held, naming the caller.)"""
    async with AsyncClient(cluster.urls(), identity="busy") as client:
        first = await client.acquire("window/x", ttl=60, request_id="the-first-attempt")
        for i in range(50):
            other = await client.acquire(f"window/other{i}", ttl=60)
            await client.release(other.name, other.token)
        try:
            again = await client.acquire("window/x", ttl=60, request_id="the-first-attempt")
            assert again.token == first.token
        finally:
            await client.release("window/x", first.token)


async def test_unreachable_endpoints_give_unavailable_within_the_deadline() -> None:
    client = AsyncClient(["http://127.0.0.1:9"], retry_deadline=0.5, request_timeout=0.2)
    async with client:
        started = time.monotonic()
        with pytest.raises(Unavailable) as error:
            await client.get("x")
        assert time.monotonic() - started < 2.0
        assert "127.0.0.1:9" in error.value.message


async def test_lock_renews_past_the_ttl_and_releases_on_exit(cluster: Any) -> None:
    async with AsyncClient(cluster.urls(), identity="alice") as client:
        async with client.lock("lock/renewed", ttl=1.0) as lease:
            token = lease.token
            deadline = time.monotonic() + 2.5  # 2.5 TTLs: only renewals keep it
            while time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                assert not lease.lost.is_set(), lease.lost_reason
                assert lease.remaining_s() > 0
            lease.check()
            current = await client.get("lock/renewed")
            assert current is not None and current.token == token
        assert lease.lost.is_set() and lease.lost_reason == "released"
        assert await client.get("lock/renewed") is None


async def test_lock_releases_when_the_body_raises(cluster: Any) -> None:
    async with AsyncClient(cluster.urls()) as client:
        with pytest.raises(ZeroDivisionError):
            async with client.lock("lock/raises", ttl=5):
                raise ZeroDivisionError
        assert await client.get("lock/raises") is None


async def test_lock_wait_elapses_with_lease_held(cluster: Any) -> None:
    async with AsyncClient(cluster.urls(), identity="alice") as alice, \
            AsyncClient(cluster.urls(), identity="bob") as bob:  # fmt: skip
        async with alice.lock("lock/contended", ttl=5):
            with pytest.raises(LeaseHeld) as held:
                async with bob.lock("lock/contended", ttl=5, wait=0.3):
                    raise AssertionError("never entered")
            assert held.value.holder == "alice"
            waiter = asyncio.create_task(_hold_once(bob, "lock/contended"))
            await until_parked(cluster, 1)  # bob queues at the primary; then free the lock
            assert not waiter.done()
        token = await asyncio.wait_for(waiter, 10)
        assert token > 0


def parked_waiters(cluster: Any) -> int:
    """Acquires parked at the primary (``paxlock_lease_waiters``, summed over the nodes)."""
    total = 0.0
    for url in cluster.urls():
        status, _, text = HARNESS.http("GET", url + "/metrics", timeout_s=1.0)
        for line in text.splitlines() if status == 200 else []:
            if line.startswith("paxlock_lease_waiters "):
                total += float(line.split()[1])
    return int(total)


async def until_parked(cluster: Any, count: int) -> None:
    deadline = time.monotonic() + 10
    while parked_waiters(cluster) < count:
        assert time.monotonic() < deadline, f"{count} waiter(s) never parked at the primary"
        await asyncio.sleep(0.02)


async def _hold_once(client: AsyncClient, name: str) -> int:
    async with client.lock(name, ttl=5, wait=10) as lease:
        return lease.token


async def test_lease_lost_when_the_cluster_says_so(cluster: Any, http: Any) -> None:
    """Renewal refused (the grant is gone): ``lost`` is set, the body is cancelled and the
    ``async with`` raises ``LeaseLost``; the release failure after loss is swallowed."""
    async with AsyncClient(cluster.urls(), identity="alice") as client:
        with pytest.raises(LeaseLost):
            async with client.lock("lock/stolen", ttl=1.5, cancel_on_loss=True) as lease:
                status, _, _ = http("POST", cluster.url("n1") + "/v1/leases/lock/stolen:release",
                                    {"holder": "alice", "token": lease.token})  # fmt: skip
                assert status == 200
                async with asyncio.timeout(5):
                    await lease.lost.wait()  # cancelled here or in the sleep, never later
                    await asyncio.sleep(5)
                raise AssertionError("the body should have been cancelled")
        assert "no longer has this grant" in (lease.lost_reason or "")


async def test_an_outside_cancellation_stays_a_cancellation(cluster: Any) -> None:
    async with AsyncClient(cluster.urls()) as client:

        async def body() -> None:
            async with client.lock("lock/cancelled", ttl=5, cancel_on_loss=True):
                await asyncio.sleep(30)

        task = asyncio.create_task(body())
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await client.get("lock/cancelled") is None



async def test_a_grant_after_a_long_wait_is_proven_fresh(cluster: Any) -> None:
    """Bob queues longer than his TTL: dated from his request's send time, the grant would
    be untrusted on arrival; one renewal dates it afresh, so he gets a full window."""
    async with AsyncClient(cluster.urls(), identity="alice") as alice, \
            AsyncClient(cluster.urls(), identity="bob") as bob:  # fmt: skip
        lease = await alice.acquire("late/x", ttl=10)
        waiter = asyncio.create_task(_enter_and_measure(bob, "late/x"))
        await until_parked(cluster, 1)
        await asyncio.sleep(1.5)  # not a synchronisation: bob must queue longer than his TTL
        await alice.release("late/x", lease.token)
        lost_at_entry, remaining_s = await asyncio.wait_for(waiter, 10)
        assert not lost_at_entry and remaining_s > 0.5


async def _enter_and_measure(client: AsyncClient, name: str) -> tuple[bool, float]:
    async with client.lock(name, ttl=1.0, wait=10) as lease:
        return lease.lost.is_set(), lease.remaining_s()


async def test_a_cancelled_waiter_leaves_no_grant_behind(cluster: Any) -> None:
    """Bob gives up waiting (his task is cancelled). Without clean-up his request would stay
    parked at the primary and be granted to nobody when alice releases."""
    async with AsyncClient(cluster.urls(), identity="alice") as alice, \
            AsyncClient(cluster.urls(), identity="carol") as carol:  # fmt: skip
        lease = await alice.acquire("ghost/x", ttl=30)
        bob = AsyncClient(cluster.urls(), identity="bob")
        waiter = asyncio.create_task(_enter_and_measure(bob, "ghost/x"))
        await until_parked(cluster, 1)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        await bob.close()  # lets the background clean-up finish
        assert parked_waiters(cluster) == 0
        await alice.release("ghost/x", lease.token)
        granted = await carol.acquire("ghost/x", ttl=5)  # would be LeaseHeld by bob's ghost
        assert granted.holder == "carol"
        await carol.release("ghost/x", granted.token)
