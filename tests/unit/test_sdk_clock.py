"""The SDK's conservative clock keeps running while the host is suspended (DESIGN.md §3, the
client's own view of a grant): on Linux it is ``CLOCK_BOOTTIME``, which counts a suspend,
not ``CLOCK_MONOTONIC`` (``time.monotonic()``), which stops during one while the servers'
clocks go on. Where ``CLOCK_BOOTTIME`` does not exist, ``time.monotonic()``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from paxlock.api.client import clock
from paxlock.api.client.aio import AsyncClient
from paxlock.api.client.errors import LeaseLost
from paxlock.api.client.keepalive import LOSS_CHECK_S_MAX

BOOTTIME = getattr(time, "CLOCK_BOOTTIME", None)
linux_only = pytest.mark.skipif(BOOTTIME is None, reason="CLOCK_BOOTTIME is Linux's")
SUSPEND_S = 3600.0


def simulate_suspend(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """From now on ``CLOCK_BOOTTIME`` reads ``seconds`` later, as after a suspend of that
    long; ``time.monotonic()`` (``CLOCK_MONOTONIC``) does not move, as in a real one."""
    real = time.clock_gettime

    def after_suspend(clock_id: int) -> float:
        return real(clock_id) + (seconds if clock_id == BOOTTIME else 0.0)

    monkeypatch.setattr(time, "clock_gettime", after_suspend)


@linux_only
def test_the_sdk_clock_reads_clock_boottime() -> None:
    assert BOOTTIME is not None
    before = time.clock_gettime(BOOTTIME)
    now = clock.now()
    after = time.clock_gettime(BOOTTIME)
    assert before <= now <= after
    if abs(time.clock_gettime(BOOTTIME) - time.monotonic()) > 0.01:  # a host once suspended
        assert abs(clock.now() - time.monotonic()) > 0.01


@linux_only
def test_a_suspend_moves_the_sdk_clock_and_not_the_monotonic_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sdk_before, monotonic_before = clock.now(), time.monotonic()
    simulate_suspend(monkeypatch, SUSPEND_S)
    assert clock.now() - sdk_before >= SUSPEND_S
    assert time.monotonic() - monotonic_before < 1.0


def test_without_clock_boottime_the_sdk_clock_is_monotonic(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(time, "CLOCK_BOOTTIME", raising=False)
    before = time.monotonic()
    now = clock.now()
    after = time.monotonic()
    assert before <= now <= after


@pytest.fixture
async def fake_node() -> AsyncIterator[str]:
    """A node that grants, renews and releases ``x`` to whoever asks (on a port from the
    OS): the cluster side of a lease that nothing else contends for."""

    async def grant(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"name": "x", "holder": body["holder"], "token": 1,
                                  "revision": 1, "ttl": 30, "expires_in": 30, "value": None,
                                  "lock_delay": 0})  # fmt: skip

    async def release(request: web.Request) -> web.Response:
        return web.json_response({"released": True})

    app = web.Application()
    app.router.add_post("/v1/leases/x:acquire", grant)
    app.router.add_post("/v1/leases/x:renew", grant)
    app.router.add_post("/v1/leases/x:release", release)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@linux_only
async def test_a_lease_held_across_a_suspend_is_lost_on_resume(
    fake_node: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The host sleeps for an hour with a 30 s lease held: on resume the SDK reports it lost
    at once (``remaining_s``, ``check``) and sets ``lost`` within the loss timer's period,
    although the event loop's clock, like ``time.monotonic()``, says almost no time passed."""
    async with AsyncClient(fake_node, identity="laptop") as client:
        async with client.lock("x", ttl=30) as lease:
            assert lease.remaining_s() > 20
            await asyncio.sleep(0)  # the renewal task starts, to sleep ttl/3 by the loop's clock
            simulate_suspend(monkeypatch, SUSPEND_S)
            assert lease.remaining_s() == 0
            with pytest.raises(LeaseLost):
                lease.check()
            await asyncio.wait_for(lease.lost.wait(), 3 * LOSS_CHECK_S_MAX)
            assert lease.lost_reason is not None and "client's clock" in lease.lost_reason
