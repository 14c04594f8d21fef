"""Elections through the SDK on a real cluster: campaign / proclaim / resign as seen by
``observe()``, and leadership across the death of the primary node and of the leader."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from paxlock.api.client.aio import AsyncClient
from paxlock.api.client.errors import LeaseHeld
from paxlock.api.client.types import Leader

CHILD = Path(__file__).with_name("sdk_holder_child.py")
SEEN_TIMEOUT_S = 10.0


class Watcher:
    """Runs ``observe()`` in a task and queues what it yields."""

    def __init__(self, client: AsyncClient, name: str, after: int = 0) -> None:
        self.seen: list[Leader | None] = []
        self.revisions: list[int] = []
        self._queue: asyncio.Queue[Leader | None] = asyncio.Queue()
        self._task = asyncio.create_task(self._run(client, name, after))

    async def _run(self, client: AsyncClient, name: str, after: int) -> None:
        async for leader in client.election(name).observe(after=after, poll_s=2):
            self.seen.append(leader)
            await self._queue.put(leader)

    async def next(self) -> Leader | None:
        async with asyncio.timeout(SEEN_TIMEOUT_S):
            return await self._queue.get()

    async def until(self, predicate: Any) -> Leader | None:
        """The first yielded state that satisfies ``predicate`` (earlier ones are skipped)."""
        while True:
            leader = await self.next()
            if predicate(leader):
                return leader

    def pending(self) -> int:
        return self._queue.qsize()

    async def stop(self) -> None:
        self._task.cancel()
        with_suppress = asyncio.gather(self._task, return_exceptions=True)
        await with_suppress


async def test_observe_sees_every_change(cluster: Any) -> None:
    """Each step waits until the watcher saw the previous one, so every change is a state of
    its own: campaign, proclaim, resign, another campaign, resign."""
    urls = cluster.urls()
    async with AsyncClient(urls, identity="alice") as alice, \
            AsyncClient(urls, identity="bob") as bob, \
            AsyncClient(urls, identity="watcher") as watching:  # fmt: skip
        watcher = Watcher(watching, "elect/every")
        try:
            assert await alice.election("elect/every").leader() is None
            async with alice.election("elect/every").campaign("a1", ttl=5) as term:
                seen = await watcher.next()
                assert seen is not None
                assert (seen.leader, seen.value, seen.token) == ("alice", "a1", term.token)
                proclaimed = await term.proclaim("a2")
                seen2 = await watcher.next()
                assert seen2 == proclaimed or (seen2 is not None and seen2.value == "a2")
                assert seen2 is not None and seen2.token == term.token
                assert seen2.revision > seen.revision
                assert await bob.election("elect/every").leader() is not None
                with pytest.raises(LeaseHeld) as held:
                    async with bob.election("elect/every").campaign("b0", ttl=5, wait=0):
                        raise AssertionError("bob cannot lead while alice does")
                assert held.value.holder == "alice"
            assert await watcher.next() is None  # alice resigned
            async with bob.election("elect/every").campaign("b1", ttl=5) as term_b:
                seen3 = await watcher.next()
                assert seen3 is not None and (seen3.leader, seen3.value) == ("bob", "b1")
                assert seen3.token == term_b.token > term.token
            assert await watcher.next() is None
            assert await alice.election("elect/every").leader() is None
            assert watcher.pending() == 0
            assert len(watcher.seen) == 5
        finally:
            await watcher.stop()


async def test_observe_after_a_revision_and_bursts_end_on_the_latest_state(cluster: Any) -> None:
    """Changes faster than a poll may coalesce, but the latest state always arrives, states
    come in revision order, and ``after`` skips what was already seen."""
    urls = cluster.urls()
    async with AsyncClient(urls, identity="alice") as alice, \
            AsyncClient(urls, identity="watcher") as watching:  # fmt: skip
        election = alice.election("elect/burst")
        async with election.campaign("v0", ttl=5) as term:
            for i in range(1, 6):
                await term.proclaim(f"v{i}")
            last = term.leader
        watcher = Watcher(watching, "elect/burst")
        late = Watcher(watching, "elect/burst", after=last.revision)
        try:
            assert await watcher.until(lambda x: x is None) is None
            revisions = [x.revision for x in watcher.seen if x is not None]
            assert revisions == sorted(set(revisions))
            async with election.campaign("again", ttl=5):
                seen = await late.next()  # the resign (before "again") or "again" itself
                if seen is None:
                    seen = await late.next()
                assert seen is not None and seen.value == "again"
        finally:
            await watcher.stop()
            await late.stop()


def _events(path: Path) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    return {e["event"]: e for e in map(json.loads, path.read_text().splitlines())}


async def _wait_event(path: Path, event: str, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while (found := _events(path).get(event)) is None:
        assert time.monotonic() < deadline, f"no {event!r} event within {timeout_s}s"
        await asyncio.sleep(0.02)
    return found


async def test_leadership_across_primary_failure_then_handover_on_leader_death(
    cluster: Any, tmp_path: Path
) -> None:
    """A leader process keeps (or, if its renewals could not get through in time, gives up)
    its term while the primary node is killed; when the leader process itself is killed,
    the waiting candidate takes over. The watcher sees it all, across the failover."""
    ttl_s, urls, events = 3.0, cluster.urls(), tmp_path / "events"
    primary = await asyncio.to_thread(cluster.wait_ready)
    log = open(tmp_path / "leader.log", "wb")
    leader_process = subprocess.Popen(
        [sys.executable, str(CHILD), "--endpoints", ",".join(urls), "--events", str(events),
         "--mode", "campaign", "--name", "elect/handover", "--identity", "alice",
         "--ttl", str(ttl_s), "--value", "alice-value"],
        stdout=log, stderr=log, env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )  # fmt: skip
    log.close()
    bob_leads, bob_done = asyncio.Event(), asyncio.Event()
    bob_terms: list[int] = []

    async def bob_campaign(client: AsyncClient) -> None:
        async with client.election("elect/handover").campaign("bob-value", ttl=ttl_s) as term:
            bob_terms.append(term.token)
            bob_leads.set()
            await bob_done.wait()

    try:
        async with AsyncClient(urls, identity="bob") as bob, \
                AsyncClient(urls, identity="watcher") as watching:  # fmt: skip
            watcher = Watcher(watching, "elect/handover")
            leading = await _wait_event(events, "leading", 20)
            first = await watcher.until(lambda x: x is not None)
            assert first is not None and (first.leader, first.token) == ("alice", leading["token"])
            bob_task = asyncio.create_task(bob_campaign(bob))
            # the watcher follows the primary: its long poll dies with the node
            assert watching._transport.primary_url == cluster.url(primary)
            await asyncio.to_thread(cluster.kill, primary)
            new_primary = await asyncio.to_thread(cluster.wait_ready)
            assert new_primary != primary
            # two TTLs after the failover, alice still leads only if her renewals got through
            window_end = time.monotonic() + 2 * ttl_s
            while time.monotonic() < window_end and "term_lost" not in _events(events):
                current = await bob.election("elect/handover").leader()
                assert current is not None
                if current.leader != "alice":
                    break
                assert current.token == leading["token"]
                await asyncio.sleep(0.1)
            kept = "term_lost" not in _events(events) and not bob_leads.is_set()
            if kept:
                leader_process.kill()  # the leader dies without resigning: bob after its TTL
            async with asyncio.timeout(ttl_s * 3):
                await bob_leads.wait()
            seen = await watcher.until(lambda x: x is not None and x.leader == "bob")
            assert seen is not None and seen.token == bob_terms[0] > leading["token"]
            bob_done.set()
            await asyncio.wait_for(bob_task, 10)
            assert await watcher.until(lambda x: x is None) is None
            await watcher.stop()
            revisions = [x.revision for x in watcher.seen if x is not None]
            assert revisions == sorted(set(revisions)), watcher.seen
            assert [x.leader if x else None for x in watcher.seen][-2:] == ["bob", None]
    finally:
        if leader_process.poll() is None:
            leader_process.send_signal(signal.SIGKILL)
        leader_process.wait(timeout=10)
