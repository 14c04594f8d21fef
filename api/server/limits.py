"""Limits at the HTTP edge (issue 12 item 5): each a setting with a default, a metric, and a
clear answer — 429 ``too_many`` with a jittered ``Retry-After`` — never a slowdown for the
other clients.

- request rate per principal (``--auth``) or, when a rate is given explicitly, per client IP
  without it: a token bucket each;
- open observe streams (long polls and SSE) per node;
- acquires waiting per name (counted by ``LeaseService``, refused there, counted here);
- slowloris: a request's header must arrive within ``header_timeout_s`` of its first byte
  (or of the connection), its body within ``body_timeout_s`` of its header, else the
  connection is closed; an idle keep-alive connection is closed after ``idle_timeout_s``;
- a stalled reader of an event stream is cut off after ``stream_write_timeout_s``.

The connection guard is an ``aiohttp`` ``RequestHandler`` subclass, built by ``GuardedRunner``
(aiohttp has no header or body read timeout of its own). It also answers errors of aiohttp's
own HTTP parser — which happen before any middleware — in the JSON error shape.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from paxlock.api.server.errors import protocol_error_response
from paxlock.coordinator.errors import TooMany
from paxlock.coordinator.metrics import Metrics


RATE_PER_PRINCIPAL_S = 1000.0
"""The default request rate of one principal under ``--auth`` (per node)."""
EDGE_LIMITS = frozenset({"rate", "streams", "waiters_per_name"})
"""The 429s this module counts and spreads (``LeaseService`` raises ``waiters_per_name``)."""
STREAM_SNDBUF_BYTES = 64 * 1024
"""The kernel send buffer of an event stream's socket (events are a few KiB at most)."""


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits of one node; ``paxlock serve`` has one flag per field (README, Limits)."""

    rate_per_s: float | None = None
    """Requests per second per principal; 0: no limit. None (the default): 1,000/s per
    principal under ``--auth``, and no limit without it — an IP is no principal (every client
    behind one NAT, or on one host as in a benchmark, would share one bucket), so a per-IP
    rate applies only when given explicitly."""
    rate_burst: int = 2000
    """Requests a principal may send at once above its rate (the bucket's size)."""
    waiters_per_name_max: int = 1000
    """Acquires (and campaigns) with ``wait`` > 0 in flight for one name at the primary."""
    streams_max: int = 10_000
    """Open observe requests (long polls and event streams) at this node."""
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    idle_timeout_s: float = 75.0
    """A keep-alive connection with no request in progress is closed after this long."""
    stream_write_timeout_s: float = 10.0
    """An event stream whose reader takes no bytes for this long is closed."""
    stream_buffer_bytes_max: int = 1 << 20
    """An event stream with more unsent bytes than this queued is closed."""
    retry_after_s: float = 1.0
    """The base of a refusal's Retry-After; each answer draws from [base, 2 x base)."""

    def __post_init__(self) -> None:
        if self.rate_per_s is not None and not self.rate_per_s >= 0:
            raise ValueError(f"rate_per_s must be 0 (off) or above, not {self.rate_per_s}")
        for name in ("rate_burst", "waiters_per_name_max", "streams_max",
                     "stream_buffer_bytes_max"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        for name in ("header_timeout_s", "body_timeout_s", "idle_timeout_s",
                     "stream_write_timeout_s", "retry_after_s"):  # fmt: skip
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be above 0 seconds, not {getattr(self, name)}")


class TokenBuckets:
    """One token bucket per key, least recently used first; at most ``keys_max`` kept (an
    evicted key comes back with a full bucket: memory stays bounded, whatever the keys)."""

    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float],
                 keys_max: int = 100_000) -> None:  # fmt: skip
        assert rate_per_s > 0 and burst >= 1 and keys_max >= 1
        self.rate_per_s = rate_per_s
        self.burst = float(burst)
        self.clock = clock
        self.keys_max = keys_max
        self._buckets: dict[str, tuple[float, float]] = {}
        """key -> (tokens, when counted); insertion order is recency order."""

    def take(self, key: str) -> float:
        """Spend one token of ``key``'s bucket: 0.0 when there was one, else the seconds
        until there will be (and nothing is spent)."""
        now = self.clock()
        tokens, then = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - then) * self.rate_per_s)
        wait_s = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait_s = (1.0 - tokens) / self.rate_per_s
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.keys_max:
            del self._buckets[next(iter(self._buckets))]
        return wait_s

    def __len__(self) -> int:
        return len(self._buckets)


class Limiter:
    """The limits of one node's HTTP app, with the counts they need (app key ``LIMITER``)."""

    def __init__(self, limits: Limits, metrics: Metrics, *,
                 clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:  # fmt: skip
        self.limits = limits
        self.metrics = metrics
        self.rng = rng or random.Random()
        rate = RATE_PER_PRINCIPAL_S if limits.rate_per_s is None else limits.rate_per_s
        self.rate_per_s = rate
        self.buckets = (TokenBuckets(rate, limits.rate_burst, clock)
                        if rate > 0 else None)  # fmt: skip
        self.by_ip = limits.rate_per_s is not None
        """Without ``--auth``, requests are counted by client IP only under an explicit rate."""
        self.streams_open = 0
        metrics.streams_open.set_function(lambda: float(self.streams_open))

    def count(self, limit: str) -> None:
        self.metrics.limit_refusals.labels(limit=limit).inc()

    def spread(self, error: TooMany) -> TooMany:
        """Count a refusal of the edge (``EDGE_LIMITS``) and draw its Retry-After from
        [base, 2 x base), so that clients refused together do not all come back together.
        The hold limits of the replicated state are counted and spread by the service."""
        limit = str(error.details.get("limit", ""))
        if limit not in EDGE_LIMITS:
            return error
        self.count(limit)
        base_s = max(error.retry_after_s, self.limits.retry_after_s)
        error.retry_after_s = round(base_s * (1.0 + self.rng.random()), 3)
        return error

    def admit(self, principal: str | None, ip: str | None) -> None:
        """Take one request out of the bucket of its principal (None without ``--auth``: of
        its client IP, under an explicit rate), or raise ``TooMany`` (limit rate)."""
        if self.buckets is None or (principal is None and not self.by_ip):
            return
        key = principal if principal is not None else f"ip:{ip}"
        wait_s = self.buckets.take(key)
        if wait_s > 0:
            raise TooMany(
                f"request rate above {self.rate_per_s:g}/s (burst "
                f"{self.limits.rate_burst}) for {key}", retry_after_s=wait_s, limit="rate",
            )  # fmt: skip

    @contextlib.contextmanager
    def stream(self, request: web.Request, *, events: bool = False) -> Iterator[None]:
        """Hold one of the node's observe slots for the duration, or raise ``TooMany``. For
        an event stream (``events``), the socket's kernel send buffer is kept small too, so
        that a stalled reader holds ``STREAM_SNDBUF_BYTES`` there, not megabytes."""
        if self.streams_open >= self.limits.streams_max:
            raise TooMany(f"{self.streams_open} observe requests are open at this node "
                          f"(limit {self.limits.streams_max})", limit="streams")  # fmt: skip
        sock = request.transport.get_extra_info("socket") if request.transport else None
        if events and sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, STREAM_SNDBUF_BYTES)
        self.streams_open += 1
        try:
            yield
        finally:
            self.streams_open -= 1

    async def write(self, request: web.Request, response: web.StreamResponse,
                    data: bytes) -> None:  # fmt: skip
        """Write to an event stream, or cut a reader that does not keep up: more than
        ``stream_buffer_bytes_max`` unsent, or a write stuck ``stream_write_timeout_s`` (the
        writer waits for the buffer to drain). Raises ``ConnectionResetError`` when cut."""
        transport = request.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("the reader went away")
        if transport.get_write_buffer_size() > self.limits.stream_buffer_bytes_max:
            self._cut(transport)
        try:
            async with asyncio.timeout(self.limits.stream_write_timeout_s):
                await response.write(data)
        except TimeoutError:
            self._cut(transport)

    def _cut(self, transport: asyncio.BaseTransport) -> None:
        self.count("slow_reader")
        if isinstance(transport, asyncio.Transport):
            transport.abort()  # close() would wait to flush to the reader that does not read
        else:
            transport.close()
        raise ConnectionResetError("a slow reader was cut off")


LIMITER = web.AppKey("paxlock_limiter", Limiter)


# -- connections: header and body read timeouts, parser errors as JSON ----------------------


class GuardedRequestHandler(RequestHandler):
    """aiohttp's connection protocol with two deadlines: a request's header must be complete
    within ``header_timeout_s`` of its first byte (for a new connection: of the connection),
    its body within ``body_timeout_s`` of the header. A connection past either is closed, so
    a client that trickles a byte every few seconds holds its socket for seconds, not
    forever. Idle keep-alive connections are aiohttp's ``keepalive_timeout``."""

    def __init__(self, manager: web.Server, *, limiter: Limiter, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.limiter = limiter
        self._deadline: asyncio.TimerHandle | None = None
        self._body: Any = None
        """The payload of the last request whose header arrived (its body is being read)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm(self.limiter.limits.header_timeout_s, "header_timeout")

    def data_received(self, data: bytes) -> None:
        parsed, reading_body = self._request_count, self._reading_body()
        super().data_received(data)
        if getattr(self, "_upgraded", False):  # a WebSocket: no longer HTTP requests
            self._disarm()
        elif self._request_count != parsed:  # a header is complete
            self._body = self._messages[-1][1] if self._messages else None
            if self._reading_body():
                self._arm(self.limiter.limits.body_timeout_s, "body_timeout")
            else:
                self._disarm()
        elif reading_body:
            if not self._reading_body():
                self._disarm()  # the body is complete (a handler may run on for long)
        elif data and self._deadline is None:
            self._arm(self.limiter.limits.header_timeout_s, "header_timeout")

    def _reading_body(self) -> bool:
        return self._body is not None and not self._body.is_eof()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, delay_s: float, limit: str) -> None:
        self._disarm()
        self._deadline = asyncio.get_running_loop().call_later(delay_s, self._expire, limit)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self, limit: str) -> None:
        self._deadline = None
        if limit == "body_timeout" and not self._reading_body():
            return  # completed between the last bytes and now
        self.limiter.count(limit)
        self.force_close()

    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:  # fmt: skip
        """aiohttp's own errors (a request its parser refuses, a crash outside the
        middlewares) in the JSON error shape instead of ``text/plain``."""
        if request.writer.output_size > 0:
            raise ConnectionError("a response was sent already; cannot send an error")
        response = protocol_error_response(status, message, exc)
        response.force_close()
        return response


class GuardedServer(web.Server):
    """An ``aiohttp`` server whose connections are ``GuardedRequestHandler``s."""

    limiter: Limiter

    def __call__(self) -> RequestHandler:
        return GuardedRequestHandler(self, loop=self._loop, limiter=self.limiter, **self._kwargs)


class GuardedRunner(web.AppRunner):
    """``web.AppRunner`` serving through ``GuardedServer``; ``keepalive_timeout`` is the
    limits' ``idle_timeout_s``."""

    def __init__(self, app: web.Application, limiter: Limiter, **kwargs: Any) -> None:
        super().__init__(app, keepalive_timeout=limiter.limits.idle_timeout_s, **kwargs)
        self.limiter = limiter

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = GuardedServer  # the same server; only its protocol factory differs
        assert isinstance(server, GuardedServer)
        server.limiter = self.limiter
        return server
