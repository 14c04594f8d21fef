"""Real clusters for tests: one ``paxlock serve`` process per member on free loopback ports,
with temporary data dirs; always cleaned up. Loaded by ``tests/conftest.py`` and exposed as
the ``cluster`` fixture (pytest runs with --import-mode=importlib, so tests get it through
the fixture rather than by importing this module). A test module that needs more — a
module-scoped cluster (``running_cluster``), raw requests, event streams — takes the module
conftest registered: ``harness = sys.modules["paxlock_test_harness"]``.

Beyond ``Cluster``, ``http`` and ``wait_for``: ``try_http`` (None when a node is down),
``raw_request`` (exact body bytes, chunked uploads), ``EventStream`` (a server-sent-events
client), ``metric_value`` / ``Cluster.metric`` (one Prometheus sample), and
``Cluster.restart_all`` / ``start_many`` / ``followers``."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import signal
import random
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http import client as http_client
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


def _listen_ports() -> range:
    """Ports for the tests' members to listen on: the 12,000 just below the kernel's
    ephemeral range. A port picked by binding port 0 comes from that range, and before the
    member binds it, it can become the source port of one of the many client connections
    the tests open (a member then failed with "address already in use")."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as file:
            low = int(file.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return range(max(1024, low - 12_000), low)


def load_module(name: str, path: Path) -> Any:
    """The Python file ``path`` as module ``name`` (once; tests are not a package), such as
    ``tests/membership_ops.py``, which test modules and benchmarks share."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # before running it: dataclasses look their module up
        spec.loader.exec_module(module)
    return sys.modules[name]


LISTEN_PORTS = _listen_ports()
_ports_rng = random.SystemRandom()  # not the global one: pytest-randomly seeds it alike in every worker


def free_port() -> int:
    """A port free now on 127.0.0.1, outside the ephemeral range (``LISTEN_PORTS``)."""
    for _ in range(1000):
        port = _ports_rng.choice(LISTEN_PORTS)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {LISTEN_PORTS}")


def free_ports_in_a_row(count: int = 3) -> int:
    """A base port whose next ``count - 1`` ports are free too (``paxlock up`` takes a run)."""
    for _ in range(50):
        base = free_port()
        sockets: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise AssertionError(f"no {count} consecutive free ports")


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


def try_http(method: str, url: str, body: Any = None, timeout_s: float = 1.0,
             headers: dict[str, str] | None = None
             ) -> tuple[int, dict[str, str], Any] | None:  # fmt: skip
    """``http`` for a cluster in trouble: None instead of raising when the node is down,
    refuses the connection or does not answer within ``timeout_s``."""
    try:
        return http(method, url, body, timeout_s=timeout_s, headers=headers)
    except (OSError, http_client.HTTPException):
        return None


def raw_request(url: str, method: str, body: bytes | None,
                headers: dict[str, str | bytes] | None = None, timeout_s: float = 5.0,
                chunked: bool = False) -> tuple[int, dict[str, str], Any]:  # fmt: skip
    """A request with exactly these body bytes (malformed JSON, non-UTF-8, chunked uploads),
    which ``http`` cannot send because it encodes its body as JSON. Header values may be
    bytes, sent as they are. A server that answers (413) and closes before reading the
    whole body is fine: its answer is still read."""
    parts = urlsplit(url)
    connection = http_client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port,
                                            timeout=timeout_s)  # fmt: skip
    try:
        connection.putrequest(method, parts.path + (f"?{parts.query}" if parts.query else ""))
        for key, value in (headers or {}).items():
            connection.putheader(key, value)
        if chunked:
            connection.putheader("Transfer-Encoding", "chunked")
        elif body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders()
        step = 64 * 1024
        try:
            for start in range(0, len(body or b""), step):
                chunk = (body or b"")[start:start + step]
                connection.send(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            if chunked:
                connection.send(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered (and closed) before reading everything
        response = connection.getresponse()
        raw = response.read()
        got = dict(response.headers)
        status = response.status
    finally:
        connection.close()
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw.decode(errors="replace")
    return status, got, parsed


class EventStream:
    """A client of one server-sent-events response (``Accept: text/event-stream``).

    ``next_event(timeout_s)`` returns the next event as ``{"id", "event", "data"}`` (``data``
    parsed as JSON), skipping comments (keepalives); it fails after ``timeout_s``."""

    def __init__(self, url: str, headers: dict[str, str] | None = None,
                 timeout_s: float = 10.0) -> None:  # fmt: skip
        parts = urlsplit(url)
        self.connection = http_client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port,
                                                     timeout=timeout_s)  # fmt: skip
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        self.connection.request("GET", path, headers={"Accept": "text/event-stream",
                                                      **(headers or {})})  # fmt: skip
        self.response = self.connection.getresponse()
        self.status = self.response.status
        self.headers = dict(self.response.headers)

    def next_event(self, timeout_s: float = 5.0) -> dict[str, Any]:
        assert self.connection.sock is not None
        self.connection.sock.settimeout(timeout_s)
        event: dict[str, Any] = {}
        data: list[str] = []
        while True:
            try:
                line = self.response.readline()
            except TimeoutError:
                raise AssertionError(f"no server-sent event within {timeout_s}s") from None
            if not line:
                raise AssertionError("the event stream ended")
            text = line.decode().rstrip("\r\n")
            if text == "":
                if data or event:
                    event["data"] = json.loads("\n".join(data)) if data else None
                    return event
                continue
            if text.startswith(":"):
                continue  # a comment: the server's keepalive
            key, _, value = text.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if key == "data":
                data.append(value)
            else:
                event[key] = value

    def close(self) -> None:
        self.connection.close()


METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


def metric_value(text: str, name: str, labels: str = "") -> float | None:
    """One sample of a Prometheus text exposition; ``labels`` is the ``{...}`` part as
    written by prometheus-client (``""`` for an unlabelled sample)."""
    for line in text.splitlines():
        match = METRIC_LINE.match(line)
        if match and match.group(1) == name and (match.group(2) or "") == labels:
            return float(match.group(3))
    return None


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
    headers: dict[str, str] = field(default_factory=dict)
    """Sent with the harness's own requests (an ``Authorization`` under ``--auth``)."""

    def __post_init__(self) -> None:
        for i in range(self.size):
            node_id = f"n{i + 1}"
            self.members[node_id] = Member(node_id, free_port(), self.root / node_id,
                                           self.root / f"{node_id}.log")  # fmt: skip

    # -- processes -----------------------------------------------------------------------------

    def command(self, node_id: str, extra_args: list[str] | None = None) -> list[str]:
        me = self.members[node_id]
        command = [sys.executable, "-m", "paxlock.api.cli", "serve", "--id", node_id,
                   "--listen", f"127.0.0.1:{me.port}", "--data-dir", str(me.data_dir),
                   *self.extra_args, *(extra_args or [])]  # fmt: skip
        for other in self.members.values():
            if other.id != node_id:
                command += ["--peer", f"{other.id}={other.url}"]
        return command

    def start(self, node_id: str, extra_args: list[str] | None = None) -> None:
        """Start one member; ``extra_args`` go after the cluster's own, for this start only
        (a later flag wins: one member with its own ``--election-timeout``, say)."""
        member = self.members[node_id]
        assert member.process is None or member.process.poll() is not None
        member.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(member.log_path, "ab")
        member.process = subprocess.Popen(self.command(node_id, extra_args), stdout=log,
                                          stderr=log,
                                          env=dict(os.environ, PYTHONUNBUFFERED="1"))  # fmt: skip
        log.close()

    def start_joiner(self, node_id: str, join_url: str, port: int | None = None,
                     extra_args: list[str] | None = None) -> Member:  # fmt: skip
        """Start a member with ``serve --join join_url`` on an empty data dir of its own (a
        new id, or an id given again: its old data dir is left alone, a replacement is an
        incarnation made anew); ``port`` keeps a URL. Returns once it answers /healthz."""
        dirs = sum(1 for p in self.root.glob(f"{node_id}*") if p.is_dir())
        name = node_id if dirs == 0 else f"{node_id}.{dirs}"
        member = Member(node_id, port or free_port(), self.root / name, self.root / f"{name}.log")
        assert node_id not in self.members or not self.alive(node_id), f"{node_id} runs"
        self.members[node_id] = member
        command = [sys.executable, "-m", "paxlock.api.cli", "serve", "--id", node_id,
                   "--listen", f"127.0.0.1:{member.port}", "--data-dir", str(member.data_dir),
                   "--join", join_url, *self.extra_args, *(extra_args or [])]  # fmt: skip
        self.root.mkdir(parents=True, exist_ok=True)
        with open(member.log_path, "ab") as log:
            member.process = subprocess.Popen(command, stdout=log, stderr=log,
                                              env=dict(os.environ, PYTHONUNBUFFERED="1"))  # fmt: skip
        wait_for(lambda: try_http("GET", member.url + "/healthz") is not None, 20.0,
                 f"{node_id} to answer")  # fmt: skip
        return member

    def start_all(self) -> Cluster:
        for node_id in self.members:
            self.start(node_id)
        self.wait_ready()
        return self

    def start_many(self, node_ids: list[str] | None = None, timeout_s: float = 20.0) -> str:
        """Start these members (every member by default) and wait for an agreed primary."""
        for node_id in node_ids if node_ids is not None else list(self.members):
            self.start(node_id)
        try:
            return self.wait_ready(timeout_s)
        except AssertionError:
            views = {n: (self.alive(n), self.cluster_view(n)) for n in self.members}
            print(f"members (alive, /v1/cluster): {views}\n{self.logs()}")  # shown on failure
            raise

    def restart_all(self, sig: int = signal.SIGKILL, timeout_s: float = 20.0) -> str:
        """Stop every member with ``sig`` (SIGKILL: a power cut; SIGTERM: a clean stop),
        start them all on the same ports and data dirs, and return the agreed primary."""
        for node_id in self.members:
            if self.alive(node_id):
                self.members[node_id].process.send_signal(sig)  # type: ignore[union-attr]
        for member in self.members.values():
            if member.process is not None:
                member.process.wait(timeout=15)
        return self.start_many(timeout_s=timeout_s)

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

    def followers(self, primary: str | None = None) -> list[str]:
        """The live members other than ``primary`` (the agreed primary by default)."""
        primary = primary or self.wait_ready()
        return [n for n in self.members if n != primary and self.alive(n)]

    def metric(self, node_id: str, name: str, labels: str = "") -> float | None:
        """A sample of ``/metrics`` of one member (None if absent or unreachable)."""
        try:
            status, _, body = http("GET", self.url(node_id) + "/metrics", timeout_s=2.0)
        except OSError:
            return None
        return metric_value(body, name, labels) if status == 200 else None

    def urls(self) -> list[str]:
        return [m.url for m in self.members.values()]

    def cluster_view(self, node_id: str) -> dict[str, Any] | None:
        try:
            status, _, body = http("GET", self.url(node_id) + "/v1/cluster", timeout_s=1.0,
                                   headers=self.headers)  # fmt: skip
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


@contextlib.contextmanager
def running_cluster(root: Path, size: int = 3, extra_args: list[str] | None = None
                    ) -> Iterator[Cluster]:  # fmt: skip
    """A started ``Cluster`` for a ``with`` block (a module-scoped fixture, typically); its
    members' logs are printed when it fails to start, and every process is stopped after."""
    cluster = Cluster(root, size, extra_args or [])
    try:
        try:
            cluster.start_all()
        except AssertionError:
            print(cluster.logs())
            raise
        yield cluster
    finally:
        cluster.stop_all()
