"""A cluster of ``paxlock serve`` processes whose peer links all run through ``ProxyNet``.

Like ``tests/harness.Cluster`` (free loopback ports, temporary data dirs, logs per member),
but node ``i`` knows peer ``j`` by the URL of the proxy ``i -> j``, so that a test can cut,
delay and one-way-partition any directed link; plus SIGKILL, SIGSTOP/SIGCONT and restarts
of any member. Clients reach members directly, never through a proxy.

``ClusterProbe`` asks members about themselves (``/v1/cluster``, ``/readyz``) from the
test's event loop, and waits for conditions with deadlines.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from proxy import CutMode, ProxyNet

T = TypeVar("T")
STOP_WAIT_S = 15.0
PROBE_TIMEOUT_S = 0.5


def free_port() -> int:
    return int(sys.modules["paxlock_test_harness"].free_port())  # outside the ephemeral range


@dataclass
class Member:
    id: str
    port: int
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    paused: bool = False
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class FaultCluster:
    """Processes plus proxies. Always ``close()`` it (the fixture does)."""

    def __init__(self, root: Path, size: int = 3, *, election_timeout_s: float = 0.3,
                 extra_args: Iterable[str] = ()) -> None:  # fmt: skip
        assert size in (1, 3, 5), size
        self.root = root
        self.election_timeout_s = election_timeout_s
        self.extra_args = list(extra_args)
        self.members: dict[str, Member] = {}
        for i in range(size):
            node_id = f"n{i + 1}"
            self.members[node_id] = Member(node_id, free_port(), root / node_id,
                                           root / f"{node_id}.log")  # fmt: skip
        self.net = ProxyNet()
        for src in self.members:
            for dst, member in self.members.items():
                if src != dst:
                    self.net.add_link(src, dst, member.port)

    @property
    def ids(self) -> list[str]:
        return list(self.members)

    def url(self, node_id: str) -> str:
        return self.members[node_id].url

    # -- processes ----------------------------------------------------------------------

    def command(self, node_id: str) -> list[str]:
        me = self.members[node_id]
        command = [sys.executable, "-m", "paxlock.api.cli", "serve", "--id", node_id,
                   "--listen", f"127.0.0.1:{me.port}", "--data-dir", str(me.data_dir),
                   "--election-timeout", str(self.election_timeout_s), *self.extra_args]  # fmt: skip
        for other in self.members:
            if other != node_id:
                port = self.net.link(node_id, other).port
                command += ["--peer", f"{other}=http://127.0.0.1:{port}"]
        return command

    def start(self, node_id: str) -> None:
        member = self.members[node_id]
        assert not self.alive(node_id), f"{node_id} is already running"
        member.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(member.log_path, "ab") as log:
            log.write(f"=== start {member.starts + 1} at {time.monotonic():.3f} ===\n".encode())
            log.flush()
            member.process = subprocess.Popen(self.command(node_id), stdout=log, stderr=log,
                                              env=dict(os.environ, PYTHONUNBUFFERED="1"))  # fmt: skip
        member.paused = False
        member.starts += 1

    def start_all(self) -> None:
        for node_id in self.members:
            self.start(node_id)

    def kill(self, node_id: str) -> None:
        """SIGKILL (a power cut: only what was fsynced survives) and reap."""
        member = self.members[node_id]
        process = member.process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(STOP_WAIT_S)
        member.paused = False

    def terminate(self, node_id: str) -> None:
        """SIGTERM: a clean stop."""
        member = self.members[node_id]
        process = member.process
        if process is not None and process.poll() is None:
            if member.paused:
                process.send_signal(signal.SIGCONT)
            process.terminate()
            try:
                process.wait(STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_WAIT_S)
        member.paused = False

    def restart(self, node_id: str, *, clean: bool = False) -> None:
        """Stop (SIGKILL, or SIGTERM when ``clean``) and start again on the same port and
        data dir."""
        (self.terminate if clean else self.kill)(node_id)
        self.start(node_id)

    def pause(self, node_id: str) -> None:
        """SIGSTOP: the process keeps its sockets (the kernel still accepts connections and
        buffers bytes) but runs nothing — a GC pause or a VM freeze."""
        member = self.members[node_id]
        assert self.alive(node_id) and not member.paused, node_id
        assert member.process is not None
        member.process.send_signal(signal.SIGSTOP)
        member.paused = True

    def resume(self, node_id: str) -> None:
        member = self.members[node_id]
        if member.process is not None and member.paused:
            member.process.send_signal(signal.SIGCONT)
        member.paused = False

    def alive(self, node_id: str) -> bool:
        process = self.members[node_id].process
        return process is not None and process.poll() is None

    def running(self, node_id: str) -> bool:
        """Alive and not paused: able to answer."""
        return self.alive(node_id) and not self.members[node_id].paused

    def exits(self) -> dict[str, int]:
        """Members whose process ended by itself (not killed by the test): id -> status."""
        out = {}
        for node_id, member in self.members.items():
            code = member.process.poll() if member.process is not None else None
            if code is not None and code != -signal.SIGKILL and code != 0:
                out[node_id] = code
        return out

    def close(self) -> None:
        """Kill every process (SIGKILL also ends a stopped one) and the proxies."""
        try:
            for node_id in self.members:
                self.kill(node_id)
        finally:
            self.net.close()

    def logs(self, tail_chars: int = 3000) -> str:
        return "\n".join(
            f"--- {m.id} ---\n{m.log_path.read_text(errors='replace')[-tail_chars:]}"
            for m in self.members.values() if m.log_path.exists()
        )  # fmt: skip

    # -- network ------------------------------------------------------------------------

    def between(self, a: Iterable[str], b: Iterable[str]) -> list[tuple[str, str]]:
        """Every directed link from a member of ``a`` to a member of ``b``."""
        return [(x, y) for x in a for y in b if x != y]

    def partition(self, *groups: Iterable[str], mode: CutMode = "drop") -> None:
        """Symmetric partition into ``groups`` (members left out form one more group)."""
        sets = [set(g) for g in groups]
        rest = set(self.members) - set().union(*sets)
        if rest:
            sets.append(rest)
        pairs = [(x, y) for x in self.members for y in self.members
                 if x != y and not any(x in s and y in s for s in sets)]  # fmt: skip
        self.net.cut_many(pairs, mode)

    def isolate(self, node_id: str, mode: CutMode = "drop") -> None:
        self.partition([node_id], mode=mode)

    def heal(self) -> None:
        self.net.heal_all()


# -- probing ------------------------------------------------------------------------------


async def wait_until(condition: Callable[[], Awaitable[T | None]], timeout_s: float, what: str,
                     interval_s: float = 0.05) -> T:  # fmt: skip
    """Await ``condition()`` until it returns something truthy, or fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = await condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.1f}s waiting for {what}")
        await asyncio.sleep(interval_s)  # polling interval, bounded by the deadline


class ClusterProbe:
    """Members' own view of the cluster, asked directly (not through proxies)."""

    def __init__(self, cluster: FaultCluster, session: aiohttp.ClientSession) -> None:
        self.cluster = cluster
        self.session = session

    async def _get(self, node_id: str, path: str) -> tuple[int, Any] | None:
        if not self.cluster.running(node_id):
            return None
        try:
            async with self.session.get(
                self.cluster.url(node_id) + path,
                timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S),
            ) as response:
                return response.status, await response.json(content_type=None)
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
            return None

    async def view(self, node_id: str) -> dict[str, Any] | None:
        got = await self._get(node_id, "/v1/cluster")
        return got[1] if got is not None and got[0] == 200 else None

    async def ready(self, node_id: str) -> bool:
        got = await self._get(node_id, "/readyz")
        return got is not None and got[0] == 200

    async def primary_among(self, among: Iterable[str], exclude: Iterable[str] = ()
                            ) -> str | None:  # fmt: skip
        """The primary that every running member of ``among`` names, if it is one of them
        (and not excluded), and says it is ready (in office)."""
        among = [n for n in among if self.cluster.running(n)]
        if not among:
            return None
        views = await asyncio.gather(*(self.view(n) for n in among))
        if any(v is None for v in views):
            return None
        primaries = {v["primary"] for v in views if v is not None}
        if len(primaries) != 1:
            return None
        (primary,) = primaries
        if primary is None or primary not in among or primary in set(exclude):
            return None
        return primary if await self.ready(primary) else None

    async def wait_primary(self, among: Iterable[str] | None = None, exclude: Iterable[str] = (),
                           timeout_s: float = 15.0) -> str:  # fmt: skip
        among = list(among) if among is not None else self.cluster.ids
        exclude = list(exclude)
        return await wait_until(lambda: self.primary_among(among, exclude), timeout_s,
                                f"a primary agreed by {among}"
                                + (f" other than {exclude}" if exclude else ""))  # fmt: skip

    async def wait_caught_up(self, node_ids: Iterable[str], timeout_s: float = 15.0) -> None:
        """Every listed member applied at least what the primary had chosen when asked."""
        node_ids = list(node_ids)
        primary = await self.wait_primary(timeout_s=timeout_s)
        target_view = await self.view(primary)
        assert target_view is not None
        target = target_view["chosen_index"]

        async def caught_up() -> bool:
            views = await asyncio.gather(*(self.view(n) for n in node_ids))
            return all(v is not None and v["applied_index"] >= target for v in views)

        await wait_until(caught_up, timeout_s, f"{node_ids} to apply slot {target}")
