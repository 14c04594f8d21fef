"""The nemesis of a run: faults (recorded in the history as they happen), observations of
the cluster (who is primary, who caught up), and the durability probe. Scenarios drive it;
``runner`` builds it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from cluster import ClusterProbe, FaultCluster, wait_until
from history import Op
from proxy import CutMode
from report import Failover
from workload import Recorder, Workload

LIVENESS_TIMEOUT_S = 10.0
"""After healing: a new primary and a successful write within this."""


@dataclass
class Deposed:
    """``node`` lost office: a successor was seen in office at ``since`` and ``node`` was seen
    following (or down) at ``until``. In between, ``node`` must not grant or renew anything
    requested after ``since``."""

    node: str
    since: float
    until: float | None = None


class Nemesis:
    """The fault injector a scenario drives; every fault is recorded in the history."""

    def __init__(self, cluster: FaultCluster, probe: ClusterProbe, recorder: Recorder,
                 workload: Workload) -> None:  # fmt: skip
        self.cluster = cluster
        self.probe = probe
        self.recorder = recorder
        self.workload = workload
        self.failovers: list[Failover] = []
        self.deposed: list[Deposed] = []
        self.checks: dict[str, Any] = {}
        self.primary_now: str | None = None
        self._background: list[asyncio.Future[Any]] = []

    def now(self) -> float:
        return self.recorder.now()

    def note(self, what: str, *, fault: bool = True) -> float:
        return self.recorder.event(what, fault=fault).t

    @property
    def ids(self) -> list[str]:
        return self.cluster.ids

    # -- faults (process control runs in a thread: a SIGTERM'd member may take a second to
    # -- stop, and the workload shares this event loop) ------------------------------------

    async def kill(self, *nodes: str) -> float:
        t = self.note(f"kill -9 {','.join(nodes)}")
        for node in nodes:
            await asyncio.to_thread(self.cluster.kill, node)
        return t

    async def start(self, *nodes: str) -> float:
        for node in nodes:
            await asyncio.to_thread(self.cluster.start, node)
        return self.note(f"start {','.join(nodes)}")

    async def restart(self, node: str, *, clean: bool = False) -> float:
        t = self.note(f"restart {node}" + (" (SIGTERM)" if clean else " (SIGKILL)"))
        await asyncio.to_thread(self.cluster.restart, node, clean=clean)
        return t

    async def pause(self, node: str) -> float:
        t = self.note(f"SIGSTOP {node}")
        self.cluster.pause(node)
        return t

    async def resume(self, node: str) -> float:
        self.cluster.resume(node)
        return self.note(f"SIGCONT {node}")

    async def partition(self, *groups: list[str], mode: CutMode = "drop") -> float:
        shown = " | ".join(",".join(g) for g in groups)
        t = self.note(f"partition {shown} ({mode})")
        await asyncio.to_thread(self.cluster.partition, *groups, mode=mode)
        return t

    async def cut(self, pairs: list[tuple[str, str]], mode: CutMode = "drop") -> float:
        t = self.note("cut " + ", ".join(f"{a}->{b}" for a, b in pairs) + f" ({mode})")
        await asyncio.to_thread(self.cluster.net.cut_many, pairs, mode)
        return t

    async def heal_links(self, pairs: list[tuple[str, str]]) -> float:
        await asyncio.to_thread(self.cluster.net.heal_many, pairs)
        return self.note("heal " + ", ".join(f"{a}->{b}" for a, b in pairs))

    async def delay(self, pairs: list[tuple[str, str]], seconds: float) -> float:
        await asyncio.to_thread(self.cluster.net.delay_many, pairs, seconds)
        return self.note(f"delay {seconds * 1000:.0f}ms on "
                         + ", ".join(f"{a}->{b}" for a, b in pairs))  # fmt: skip

    async def heal(self) -> float:
        await asyncio.to_thread(self.cluster.heal)
        return self.note("heal all links")

    def background(self, coro: Awaitable[Any]) -> None:
        """Run ``coro`` alongside the scenario (e.g. requests a paused member sits on);
        ``settle`` waits for it."""
        self._background.append(asyncio.ensure_future(coro))

    async def hold(self, seconds: float) -> None:
        """Let the current fault last (a duration, not a synchronisation)."""
        await asyncio.sleep(seconds)

    # -- observations -----------------------------------------------------------------------

    async def primary(self, among: list[str] | None = None, exclude: list[str] | tuple[str, ...]
                      = (), timeout_s: float = 15.0) -> str:  # fmt: skip
        primary = await self.probe.wait_primary(among, exclude, timeout_s)
        if primary != self.primary_now:
            self.note(f"primary {primary}", fault=False)
        self.primary_now = primary
        return primary

    async def failover(self, fault: str, at: float, old: str | None,
                       among: list[str] | None = None, timeout_s: float = 15.0,
                       *, exclude_old: bool = True) -> str:  # fmt: skip
        """Wait for a primary agreed by ``among`` (the survivors; everyone by default), other
        than ``old`` unless ``exclude_old`` is off (a restarted member may win again)."""
        record = Failover(fault, at, old)
        self.failovers.append(record)
        new = await self.primary(among, [old] if old and exclude_old else [], timeout_s)
        record.new_primary, record.primary_after_s = new, self.now() - at
        return new

    async def depose(self, old: str, since: float) -> Deposed:
        """Record that ``old`` was replaced at ``since``; ``settled`` closes the window."""
        record = Deposed(old, since)
        self.deposed.append(record)
        return record

    async def settled(self, record: Deposed, timeout_s: float = 10.0) -> None:
        """Close ``record`` once its node no longer thinks it is primary (or is down)."""
        node = record.node

        async def follows() -> bool:
            if not self.cluster.running(node):
                return True
            view = await self.probe.view(node)
            return view is not None and view["primary"] not in (node,)

        await wait_until(follows, timeout_s, f"{node} to stop acting as primary")
        record.until = self.now()

    async def caught_up(self, nodes: list[str] | None = None, timeout_s: float = 15.0) -> None:
        await self.probe.wait_caught_up(nodes or self.ids, timeout_s)

    async def ok_write_since(self, t: float, timeout_s: float = LIVENESS_TIMEOUT_S) -> float:
        """Wait until a client's acquire/renew/release invoked after ``t`` succeeded."""

        async def seen() -> float | None:
            ends = [op.end for op in self.recorder.history.ops
                    if op.type == "ok" and op.f != "read" and op.inv >= t]  # fmt: skip
            return min(ends) if ends else None

        return await wait_until(seen, timeout_s, f"a successful write invoked after t={t:.2f}")

    async def settle(self) -> None:
        """Heal every link, resume paused members, start dead ones; then a primary agreed by
        all, every member caught up, and a successful write (liveness after the faults)."""
        await self.heal()
        for node in self.ids:
            if self.cluster.members[node].paused:
                await self.resume(node)
            elif not self.cluster.alive(node):
                await self.start(node)
        t = self.note("settle: all links healed, all members running")
        if self._background:
            await asyncio.gather(*self._background)
            self._background.clear()
        await self.primary(timeout_s=LIVENESS_TIMEOUT_S)
        for record in self.deposed:
            if record.until is None:
                await self.settled(record)
        await self.caught_up(timeout_s=LIVENESS_TIMEOUT_S)
        await self.ok_write_since(t)
        self.note("settled: primary agreed, members caught up, writes succeed", fault=False)


# -- durability probe -------------------------------------------------------------------


class DurabilityProbe:
    """Long-TTL grants and releases acknowledged before a restart, read back after it: nothing
    acknowledged may be lost ("probe" is one more holder of the history, so the checker
    verifies the same facts)."""

    TTL_S = 600.0

    def __init__(self, nemesis: Nemesis, count: int = 3) -> None:
        self.nemesis = nemesis
        self.names = [f"dur{i}" for i in range(count)]
        self.expected: dict[str, tuple[str, int] | None] = {}

    async def _until_ok(self, attempt: Callable[[str], Awaitable[Op]], what: str,
                        accept: Callable[[Op], bool], timeout_s: float = 10.0) -> Op:  # fmt: skip
        nodes = self.nemesis.ids
        tries = [0]

        async def once() -> Op | None:
            node = nodes[tries[0] % len(nodes)]
            tries[0] += 1
            if not self.nemesis.cluster.running(node):
                return None
            op = await attempt(node)
            return op if accept(op) else None

        return await wait_until(once, timeout_s, what, interval_s=0.05)

    async def write(self) -> None:
        """Grant every probe name (ttl 600 s) and release the last one, all acknowledged."""
        async with self.nemesis.workload.probe_client("probe") as client:
            for name in self.names:

                async def acquire(node: str, name: str = name) -> Op:
                    return await client.acquire(name, node, ttl=self.TTL_S, wait=0.0)

                op = await self._until_ok(
                    acquire, f"probe grant of {name}",
                    lambda op: op.type == "ok" or (op.error == "held" and op.current is not None
                                                   and op.current.holder == "probe"),
                )  # fmt: skip
                grant = op.lease if op.type == "ok" else op.current
                assert grant is not None
                self.expected[name] = (grant.holder, grant.token)
            released = self.names[-1]
            held = self.expected[released]
            assert held is not None
            await self._until_ok(
                lambda node: client.release(released, node, held[1]),
                f"probe release of {released}",
                lambda op: op.type == "ok" or op.error == "not_holder",
            )  # fmt: skip
            self.expected[released] = None
        self.nemesis.note(f"durability probe written: {self.expected}", fault=False)

    async def verify(self) -> list[str]:
        """Read every probe name back (linearizable reads); return what was lost."""
        lost = []
        async with self.nemesis.workload.probe_client("probe-reader") as client:
            for name, expected in self.expected.items():

                async def read(node: str, name: str = name) -> Op:
                    return await client.read(name, node)

                op = await self._until_ok(read, f"probe read of {name}",
                                          lambda op: op.type == "ok")  # fmt: skip
                got = (op.lease.holder, op.lease.token) if op.lease is not None else None
                if got != expected:
                    lost.append(f"{name}: acknowledged {expected or 'released'}, read back "
                                f"{got or 'not_found'} (op {op.id})")  # fmt: skip
        self.nemesis.checks["durability"] = "ok" if not lost else "; ".join(lost)
        return lost
