"""Parts of ``scale_bench.py``: a minimal HTTP/1.1 keep-alive client on asyncio streams (a
load generator that costs little CPU beside the servers on 2 shared cores), /proc readings,
and the in-process cost of a lease-machine snapshot."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from paxlock.coordinator.core.lease_commands import Acquire
from paxlock.coordinator.core.leases import LeaseMachine

CONNECT_AT_ONCE = 200
"""Connections opened concurrently when parking thousands (the listen backlog is finite)."""


class Conn:
    """One keep-alive connection, one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 host: str) -> None:  # fmt: skip
        self.reader, self.writer, self.host = reader, writer, host

    def send(self, method: str, path: str, body: Any = None,
             headers: dict[str, str] | None = None) -> None:  # fmt: skip
        data = b"" if body is None else json.dumps(body).encode()
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
        for key, value in (headers or {}).items():
            head += f"{key}: {value}\r\n"
        self.writer.write(head.encode() + b"\r\n" + data)

    async def response(self) -> tuple[int, Any]:
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = 0
        for line in lines[1:]:
            key, _, value = line.partition(":")
            if key.lower() == "content-length":
                length = int(value)
            elif key.lower() == "transfer-encoding":
                raise AssertionError("chunked replies are not expected here")
        raw = await self.reader.readexactly(length) if length else b""
        return status, json.loads(raw) if raw else None

    async def post(self, path: str, body: Any) -> tuple[int, Any]:
        self.send("POST", path, body)
        return await self.response()

    def close(self) -> None:
        self.writer.close()


class Pool:
    """``size`` connections to ``url``: for ``each`` (a worker per connection), or parked
    with one request left unanswered (``park``, ``stream``)."""

    def __init__(self, url: str, size: int) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", int(parts.port or 80)
        self.size = size
        self.conns: list[Conn] = []

    async def _connect(self) -> Conn:
        for attempt in range(50):
            try:
                reader, writer = await asyncio.open_connection(self.host, self.port, limit=2**20)
                return Conn(reader, writer, f"{self.host}:{self.port}")
            except OSError:
                await asyncio.sleep(0.05 * (attempt + 1))
        raise RuntimeError(f"cannot connect to {self.host}:{self.port}")

    async def open(self) -> list[Conn]:
        while len(self.conns) < self.size:
            batch = min(CONNECT_AT_ONCE, self.size - len(self.conns))
            self.conns += await asyncio.gather(*(self._connect() for _ in range(batch)))
        return self.conns

    async def __aenter__(self) -> Pool:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def each(self, worker: Callable[[Conn], Awaitable[None]]) -> None:
        await asyncio.gather(*(worker(conn) for conn in self.conns))

    async def park(self, request: Callable[[int], tuple[str, Any]]) -> None:
        """Send ``POST request(i)`` on connection i and leave it waiting for its answer."""
        await self.open()
        for i, conn in enumerate(self.conns):
            conn.send("POST", *request(i))
            if i % CONNECT_AT_ONCE == 0:
                await conn.writer.drain()

    async def stream(self, path: Callable[[int], str]) -> None:
        """Open an event stream (``GET path(i)``, ``Accept: text/event-stream``) on each."""
        await self.open()
        for i, conn in enumerate(self.conns):
            conn.send("GET", path(i), headers={"Accept": "text/event-stream"})
            if i % CONNECT_AT_ONCE == 0:
                await conn.writer.drain()

    async def close(self) -> None:
        for conn in self.conns:
            conn.close()
        self.conns = []
        await asyncio.sleep(0)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as file:
        for line in file:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (fields 14 and 15 of /proc/PID/stat), in seconds."""
    with open(f"/proc/{pid}/stat") as file:
        fields = file.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def snapshot_cost(leases: int) -> dict[str, float]:
    """Encode and restore time (ms, medians of 3) and size (MB) of a lease machine's snapshot
    holding ``leases`` leases acquired as the bench acquires them (with request ids, so the
    idempotency window is as full as the servers')."""
    machine = LeaseMachine()
    for index in range(leases):
        machine.apply(Acquire(f"held/{index}", f"h{index % 997}", 600.0,
                              request_id=f"held/{index}"))  # fmt: skip
    encode, restore, data = [], [], b""
    for _ in range(3):
        started = time.perf_counter()
        data = machine.snapshot()
        encode.append(time.perf_counter() - started)
        started = time.perf_counter()
        LeaseMachine.restore(data)
        restore.append(time.perf_counter() - started)
    return {"snap_ms": statistics.median(encode) * 1e3,
            "restore_ms": statistics.median(restore) * 1e3, "snap_mb": len(data) / 2**20}
