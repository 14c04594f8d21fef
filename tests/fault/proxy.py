"""Controllable TCP proxies for the peer links of a cluster under test (the "network" of a
Jepsen-style test).

Every node reaches every peer through its own proxy, one per *directed* link ``src -> dst``:
node ``src`` is started with ``--peer dst=http://127.0.0.1:<port of proxy src->dst>``, and
the proxy forwards to ``dst``'s real port. paxlock opens one WebSocket per directed link and
sends only ``src``'s messages to ``dst`` over it (replies travel on ``dst``'s own link back),
so cutting the proxy ``src -> dst`` — both directions of each TCP connection through it — is
exactly a one-way partition. Requests a follower forwards to the primary also travel on the
follower's link to the primary, as they would over a real network.

Faults, per link:

- ``cut(mode="drop")``: a black hole, as a real partition looks to TCP. Bytes already in
  flight and every later byte are discarded; new connections are accepted and then hang
  (the WebSocket handshake never completes). When the link heals, every black-holed
  connection is reset, so the peer notices and dials again (a half-delivered WebSocket frame
  must never be followed by the rest of the stream).
- ``cut(mode="refuse")``: existing connections are reset, new ones reset at once.
- ``delay(s)``: every chunk is delivered ``s`` seconds after it was read (order kept).

All proxies live on one asyncio event loop in a background thread (``ProxyNet``), so their
timing is independent of the test's own loop and of the checker; the control methods are
thread-safe and return once the change is in effect. ``close()`` stops the thread and every
connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

T = TypeVar("T")
CutMode = Literal["drop", "refuse"]
CHUNK_BYTES = 64 * 1024
QUEUE_CHUNKS_MAX = 4096
"""Chunks buffered per direction of a delayed connection before the reader waits."""
CONTROL_TIMEOUT_S = 5.0


@dataclass
class LinkStats:
    connections: int = 0
    bytes_forwarded: int = 0
    bytes_dropped: int = 0
    resets: int = 0


class _Connection:
    """One TCP connection through a link: the accepted side and (unless black-holed from
    the start) the upstream side, pumped in both directions."""

    def __init__(self, link: _Link, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:  # fmt: skip
        self.link = link
        self.client_reader, self.client_writer = reader, writer
        self.upstream_writer: asyncio.StreamWriter | None = None
        self.dead = False
        """Black-holed: nothing it carries is ever delivered again; reset on heal."""
        self.tasks: list[asyncio.Task[None]] = []

    async def run(self) -> None:
        link = self.link
        if link.cut_mode is not None:
            self.dead = True
            if link.cut_mode == "refuse":
                self.reset()
                return
            await self._drain_forever(self.client_reader)
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", link.target_port), CONTROL_TIMEOUT_S
            )
        except (OSError, TimeoutError):
            self.reset()  # the node behind the link is down: refuse, as it would
            return
        self.upstream_writer = up_writer
        if link.cut_mode is not None:  # cut while connecting
            self.dead = True
            self.reset()
            return
        self.tasks = [
            asyncio.create_task(self._pump(self.client_reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, self.client_writer)),
        ]
        await asyncio.wait(self.tasks, return_when=asyncio.FIRST_COMPLETED)
        self.reset()

    async def _drain_forever(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while chunk := await reader.read(CHUNK_BYTES):
                self.link.stats.bytes_dropped += len(chunk)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy one direction; discard everything once the connection is black-holed; hold
        each chunk back by the link's delay (read time + delay, so order is kept)."""
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(QUEUE_CHUNKS_MAX)

        async def deliver() -> None:
            while (item := await queue.get()) is not None:
                due, chunk = item
                pause = due - time.monotonic()
                if pause > 0:
                    await asyncio.sleep(pause)  # the injected latency itself
                if self.dead:
                    self.link.stats.bytes_dropped += len(chunk)
                    continue
                writer.write(chunk)
                await writer.drain()
                self.link.stats.bytes_forwarded += len(chunk)

        deliverer = asyncio.create_task(deliver())
        try:
            while True:
                chunk = await reader.read(CHUNK_BYTES)
                if not chunk:
                    break
                if self.dead:
                    self.link.stats.bytes_dropped += len(chunk)
                    continue
                await queue.put((time.monotonic() + self.link.delay_s, chunk))
            await queue.put(None)
            await deliverer
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            deliverer.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await deliverer

    def reset(self) -> None:
        """Abort both sides (an RST, not a graceful FIN: the peer must see an error)."""
        for writer in (self.client_writer, self.upstream_writer):
            if writer is not None and not writer.transport.is_closing():
                writer.transport.abort()
        for task in self.tasks:
            task.cancel()


@dataclass
class _Link:
    src: str
    dst: str
    target_port: int
    server: asyncio.Server | None = None
    port: int = 0
    cut_mode: CutMode | None = None
    delay_s: float = 0.0
    connections: set[_Connection] = field(default_factory=set)
    stats: LinkStats = field(default_factory=LinkStats)


class ProxyNet:
    """The proxies of one cluster, on their own event loop in a daemon thread."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="paxlock-proxies",
                                        daemon=True)  # fmt: skip
        self._thread.start()
        self._links: dict[tuple[str, str], _Link] = {}
        self.closed = False

    # -- plumbing -----------------------------------------------------------------------

    def _call(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run ``make()`` on the proxy loop and wait for it (any thread but the proxy's)."""
        assert threading.current_thread() is not self._thread
        assert not self.closed, "the proxy net is closed"
        return asyncio.run_coroutine_threadsafe(make(), self._loop).result(CONTROL_TIMEOUT_S)

    def link(self, src: str, dst: str) -> _Link:
        return self._links[(src, dst)]

    @property
    def links(self) -> list[tuple[str, str]]:
        return sorted(self._links)

    def add_link(self, src: str, dst: str, target_port: int) -> int:
        """A proxy for ``src -> dst`` forwarding to ``target_port``; returns its port."""
        assert (src, dst) not in self._links, (src, dst)
        link = _Link(src, dst, target_port)

        async def start() -> int:
            async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                connection = _Connection(link, reader, writer)
                link.connections.add(connection)
                link.stats.connections += 1
                try:
                    await connection.run()
                finally:
                    link.connections.discard(connection)
                    connection.reset()

            link.server = await asyncio.start_server(accept, "127.0.0.1", 0)
            return int(link.server.sockets[0].getsockname()[1])

        link.port = self._call(start)
        self._links[(src, dst)] = link
        return link.port

    # -- faults -------------------------------------------------------------------------

    def cut(self, src: str, dst: str, mode: CutMode = "drop") -> None:
        """One-way partition: nothing from ``src`` reaches ``dst`` on this link."""
        self.cut_many([(src, dst)], mode)

    def cut_many(self, pairs: Iterable[tuple[str, str]], mode: CutMode = "drop") -> None:
        links = [self._links[pair] for pair in pairs]

        async def apply() -> None:
            for link in links:
                link.cut_mode = mode
                for connection in list(link.connections):
                    connection.dead = True
                    if mode == "refuse":
                        connection.reset()
                        link.stats.resets += 1

        self._call(apply)

    def heal(self, src: str, dst: str) -> None:
        self.heal_many([(src, dst)])

    def heal_many(self, pairs: Iterable[tuple[str, str]]) -> None:
        links = [self._links[pair] for pair in pairs]

        async def apply() -> None:
            for link in links:
                link.cut_mode = None
                for connection in list(link.connections):
                    if connection.dead:  # black-holed: reset so that the peer redials
                        connection.reset()
                        link.stats.resets += 1

        self._call(apply)

    def heal_all(self) -> None:
        """Every link up, without delay."""
        self.heal_many(self.links)
        self.delay_many(self.links, 0.0)

    def delay(self, src: str, dst: str, seconds: float) -> None:
        self.delay_many([(src, dst)], seconds)

    def delay_many(self, pairs: Iterable[tuple[str, str]], seconds: float) -> None:
        assert seconds >= 0
        links = [self._links[pair] for pair in pairs]

        async def apply() -> None:
            for link in links:
                link.delay_s = seconds

        self._call(apply)

    def is_cut(self, src: str, dst: str) -> bool:
        return self._links[(src, dst)].cut_mode is not None

    def stats(self) -> dict[tuple[str, str], LinkStats]:
        return {pair: link.stats for pair, link in sorted(self._links.items())}

    # -- shutdown -----------------------------------------------------------------------

    def close(self) -> None:
        """Stop every proxy and connection, then the loop and its thread. Idempotent."""
        if self.closed:
            return

        async def shutdown() -> None:
            for link in self._links.values():
                if link.server is not None:
                    link.server.close()
                for connection in list(link.connections):
                    connection.reset()
            current = asyncio.current_task()
            others = [t for t in asyncio.all_tasks() if t is not current]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        try:
            self._call(shutdown)
        finally:
            self.closed = True
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(CONTROL_TIMEOUT_S)
            if not self._thread.is_alive():
                self._loop.close()
