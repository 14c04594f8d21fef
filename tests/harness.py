"""Real clusters for tests: one ``paxlock serve`` process per member on free loopback ports,
with temporary data dirs; always cleaned up. Loaded by ``tests/conftest.py`` and exposed as
the ``cluster`` fixture (pytest runs with --import-mode=importlib, so tests get it through
the fixture rather than by importing this module)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str,
             interval_s: float = 0.02) -> Any:  # fmt: skip
    """Poll ``condition`` until it returns something truthy, or fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(interval_s)


def http(method: str, url: str, body: Any = None, timeout_s: float = 5.0,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:  # fmt: skip
    """One JSON request; returns (status, headers, parsed body or None)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            raw = response.read()
            status, got = response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        raw, status, got = error.read(), error.code, dict(error.headers)
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw.decode(errors="replace")
    return status, got, parsed


@dataclass
class Member:
    id: str
    port: int
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Cluster:
    root: Path
    size: int = 3
    extra_args: list[str] = field(default_factory=list)
    members: dict[str, Member] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for i in range(self.size):
            node_id = f"n{i + 1}"
            self.members[node_id] = Member(node_id, free_port(), self.root / node_id,
                                           self.root / f"{node_id}.log")  # fmt: skip

    # -- processes -----------------------------------------------------------------------------

    def command(self, node_id: str) -> list[str]:
        me = self.members[node_id]
        command = [sys.executable, "-m", "paxlock.api.cli", "serve", "--id", node_id,
                   "--listen", f"127.0.0.1:{me.port}", "--data-dir", str(me.data_dir),
                   *self.extra_args]  # fmt: skip
        for other in self.members.values():
            if other.id != node_id:
                command += ["--peer", f"{other.id}={other.url}"]
        return command

    def start(self, node_id: str) -> None:
        member = self.members[node_id]
        assert member.process is None or member.process.poll() is not None
        member.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(member.log_path, "ab")
        member.process = subprocess.Popen(self.command(node_id), stdout=log, stderr=log,
                                          env=dict(os.environ, PYTHONUNBUFFERED="1"))  # fmt: skip
        log.close()

    def start_all(self) -> Cluster:
        for node_id in self.members:
            self.start(node_id)
        self.wait_ready()
        return self

    def kill(self, node_id: str, sig: int = signal.SIGKILL) -> None:
        member = self.members[node_id]
        if member.process is not None and member.process.poll() is None:
            member.process.send_signal(sig)
            if sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
                member.process.wait(timeout=15)

    def pause(self, node_id: str) -> None:
        self.kill(node_id, signal.SIGSTOP)

    def resume(self, node_id: str) -> None:
        self.kill(node_id, signal.SIGCONT)

    def alive(self, node_id: str) -> bool:
        process = self.members[node_id].process
        return process is not None and process.poll() is None

    def stop_all(self) -> None:
        for member in self.members.values():
            process = member.process
            if process is None or process.poll() is not None:
                continue
            process.send_signal(signal.SIGCONT)
            process.terminate()
        for member in self.members.values():
            process = member.process
            if process is None:
                continue
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def logs(self) -> str:
        return "\n".join(f"--- {m.id} ---\n{m.log_path.read_text(errors='replace')[-4000:]}"
                         for m in self.members.values() if m.log_path.exists())  # fmt: skip

    # -- state -------------------------------------------------------------------------------

    def url(self, node_id: str) -> str:
        return self.members[node_id].url

    def urls(self) -> list[str]:
        return [m.url for m in self.members.values()]

    def cluster_view(self, node_id: str) -> dict[str, Any] | None:
        try:
            status, _, body = http("GET", self.url(node_id) + "/v1/cluster", timeout_s=1.0)
        except OSError:
            return None
        return body if status == 200 else None

    def primary(self) -> str | None:
        """The primary that every live member agrees on and that says it is ready."""
        views = [self.cluster_view(n) for n in self.members if self.alive(n)]
        if not views or any(v is None for v in views):
            return None
        primaries = {v["primary"] for v in views if v}
        if len(primaries) != 1:
            return None
        (primary,) = primaries
        if primary is None or not self.alive(primary):
            return None
        try:
            status, _, _ = http("GET", self.url(primary) + "/readyz", timeout_s=1.0)
        except OSError:
            return None
        return primary if status == 200 else None

    def wait_ready(self, timeout_s: float = 20.0) -> str:
        primary: str = wait_for(self.primary, timeout_s, "a primary agreed by every member")
        return primary
