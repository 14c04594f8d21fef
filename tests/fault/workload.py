"""The workload: concurrent clients, each one holder, doing acquire (with a small wait), renew,
release and linearizable reads on a few contended names, every request recorded as an ``Op``.

Clients speak raw HTTP (aiohttp) to members directly, a member chosen at random per request
(a member that is down refuses; a paused one never answers; a follower forwards to the
primary over its peer link). Nothing is retried: each request is one operation of the
history. A new TCP connection per request (``force_close``) makes a refused connection a
definite "never reached a server". Each client remembers the grants it knows of — from its
own acquires, and from a 409 or a read that names it — and renews or releases them.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from history import Event, Function, Grant, History, Op

MUTATIONS = ("acquire", "renew", "release")


@dataclass(frozen=True)
class WorkloadConfig:
    names: tuple[str, ...] = ("a", "b", "c")
    clients: int = 6
    ttl_s: float = 2.0
    wait_s: float = 0.25
    """Acquire ``wait``: parks at the primary that long for a held name."""
    timeout_s: float = 2.0
    """Client-side timeout of one request, beyond its ``wait``: then the op is ``info``."""
    think_s: float = 0.03
    """Upper bound of the random pause between two requests of one client."""
    patience_s: float = 0.6
    """Beyond ``wait``: how long a client waits for an answer before it sends its next
    request anyway (the slow one goes on in the background)."""
    in_flight_max: int = 4
    """Requests one client may have outstanding."""
    retries: int = 2
    """An acquire or release without a definite answer is sent again (to another member)
    this many times with the same ``request_id``, as the SDK does."""
    retry_backoff_s: float = 0.05
    """Upper bound of the random pause before a retry (full jitter, as the SDK does)."""
    lock_delay_share: float = 0.3
    """The share of acquires that ask for a lock-delay (DESIGN.md §3)..."""
    lock_delay_s: float = 0.5
    """...of this many seconds."""
    margin: float = 0.2
    """The client's conservative share of the TTL (DESIGN.md §3)."""
    seed: int = 0


class Recorder:
    """The run's clock (seconds since ``t0``, monotonic) and its history."""

    def __init__(self, meta: dict[str, Any] | None = None) -> None:
        self.t0 = time.monotonic()
        self.history = History(meta=dict(meta or {}))
        self._next_id = 0

    def now(self) -> float:
        return time.monotonic() - self.t0

    def next_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def record(self, op: Op) -> None:
        self.history.ops.append(op)

    def event(self, what: str, *, fault: bool = True) -> Event:
        event = Event(self.now(), what, fault)
        self.history.events.append(event)
        return event


@dataclass
class Known:
    token: int
    valid_until: float
    """Client-side conservative end of use (``-inf`` for a grant learned from a 409)."""


class Client:
    """One holder. ``urls`` maps member id to its client URL."""

    def __init__(self, holder: str, urls: dict[str, str], config: WorkloadConfig,
                 recorder: Recorder, rng: random.Random) -> None:  # fmt: skip
        self.holder = holder
        self.urls = urls
        self.config = config
        self.recorder = recorder
        self.rng = rng
        self.known: dict[str, Known] = {}
        self.session: aiohttp.ClientSession | None = None
        self.stopping = False
        self._requests = 0
        self.last_token = 0
        """The highest token this client has seen (a guess for ``verify``)."""

    async def __aenter__(self) -> Client:
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.session is not None:
            await self.session.close()

    # -- one request = one op ---------------------------------------------------------------

    async def call(self, f: Function, name: str, node: str, body: dict[str, Any] | None = None,
                   *, wait: float = 0.0, timeout_s: float | None = None,
                   attempt: int = 1) -> Op:  # fmt: skip
        assert self.session is not None
        rec = self.recorder
        op = Op(rec.next_id(), self.holder, f, name, rec.now(), 0.0, "info", node=node,
                wait=wait, attempt=attempt)  # fmt: skip
        if body is not None:
            op.holder, op.token, op.ttl = body.get("holder"), body.get("token"), body.get("ttl")
            op.request_id, op.lock_delay = body.get("request_id"), body.get("lock_delay", 0.0)
        path = f"/v1/leases/{name}" + ("" if f == "read" else f":{f}")
        method = "GET" if f == "read" else "POST"
        timeout = aiohttp.ClientTimeout(total=(timeout_s or self.config.timeout_s) + wait)
        try:
            async with self.session.request(method, self.urls[node] + path, json=body,
                                            timeout=timeout) as response:  # fmt: skip
                raw = await response.read()
                op.end = rec.now()
                op.status = response.status
                op.answered_by = response.headers.get("X-Paxlock-Node")
                named = response.headers.get("X-Paxlock-Primary")
                # forwarded (or naming another primary): that one decided; else the answerer
                op.decided_by = named if named and named != op.answered_by else op.answered_by
                _classify(op, response.status, _json(raw))
        except aiohttp.ClientConnectorError:
            op.end, op.type, op.error = rec.now(), "fail", "connection_refused"
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            op.end, op.type, op.error = rec.now(), "info", type(error).__name__
        rec.record(op)
        return op

    async def _retried(self, f: Function, name: str, node: str, body: dict[str, Any], *,
                       wait: float = 0.0, timeout_s: float | None = None) -> Op:  # fmt: skip
        """Send, and while the outcome is unknown, send the very same request (same
        ``request_id``) to another member, up to ``retries`` times: the cluster answers a
        retry with the first result. Each attempt is one op of the history."""
        op = await self.call(f, name, node, body, wait=wait, timeout_s=timeout_s)
        while op.type == "info" and op.attempt <= self.config.retries and not self.stopping:
            await asyncio.sleep(self.rng.uniform(0, self.config.retry_backoff_s))  # jitter
            node = self.rng.choice([n for n in self.urls if n != node] or [node])
            op = await self.call(f, name, node, body, wait=wait, timeout_s=timeout_s,
                                 attempt=op.attempt + 1)  # fmt: skip
        return op

    def _request_id(self) -> str:
        self._requests += 1
        return f"{self.holder}-{self._requests}"

    async def acquire(self, name: str, node: str, *, ttl: float | None = None,
                      wait: float | None = None, timeout_s: float | None = None,
                      lock_delay: float = 0.0) -> Op:  # fmt: skip
        wait = self.config.wait_s if wait is None else wait
        body = {"holder": self.holder, "ttl": ttl or self.config.ttl_s, "wait": wait,
                "lock_delay": lock_delay, "request_id": self._request_id()}  # fmt: skip
        op = await self._retried("acquire", name, node, body, wait=wait, timeout_s=timeout_s)
        if op.type == "ok" and op.lease is not None:
            first = min(o.inv for o in self.recorder.history.ops
                        if o.request_id == body["request_id"] and o.process == self.holder)  # fmt: skip
            self._hold(name, op.lease.token, first + op.lease.ttl_or(self.config.ttl_s))
        self._learn(name, op)
        return op

    async def renew(self, name: str, node: str, token: int, *,
                    timeout_s: float | None = None) -> Op:  # fmt: skip
        op = await self.call("renew", name, node, {"holder": self.holder, "token": token},
                             timeout_s=timeout_s)  # fmt: skip
        if op.type == "ok" and op.lease is not None:
            self._hold(name, token, op.inv + op.lease.ttl_or(self.config.ttl_s))
        elif op.type == "fail" and op.error == "not_holder":
            self.known.pop(name, None)
        self._learn(name, op)
        return op

    async def release(self, name: str, node: str, token: int, *,
                      timeout_s: float | None = None) -> Op:  # fmt: skip
        body = {"holder": self.holder, "token": token, "request_id": self._request_id()}
        op = await self._retried("release", name, node, body, timeout_s=timeout_s)
        if op.type != "info" or op.error != "connection_refused":
            self.known.pop(name, None)  # released, refused, or unknown: a read will tell
        self._learn(name, op)
        return op

    async def read(self, name: str, node: str, *, timeout_s: float | None = None) -> Op:
        op = await self.call("read", name, node, timeout_s=timeout_s)
        self._learn(name, op)
        return op

    async def verify(self, name: str, node: str, token: int) -> Op:
        """A resource server's fencing check (Chubby's CheckSequencer) of ``token``."""
        return await self.call("verify", name, node, {"token": token})

    def _hold(self, name: str, token: int, until: float) -> None:
        self.known[name] = Known(token, until - self.config.ttl_s * self.config.margin)

    def _learn(self, name: str, op: Op) -> None:
        """A definite answer naming this holder's grant: remember the token (to renew or
        release it), but not as usable — the client never saw it granted or renewed."""
        seen = op.lease if op.type == "ok" else op.current
        if seen is not None:
            self.last_token = max(self.last_token, seen.token)
        if seen is not None and seen.holder == self.holder and name not in self.known:
            self.known[name] = Known(seen.token, float("-inf"))
        elif op.f == "read" and op.type == "ok" and (seen is None or seen.holder != self.holder):
            self.known.pop(name, None)

    # -- the random loop --------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Requests one after another, but never stuck behind one: a request that outlasts
        the client's patience keeps running in the background (it is recorded when it ends,
        as ``info`` once its timeout passes) while the client goes on, preferring members
        that are not sitting on one of its requests — as a client of a real cluster fails
        over from an unresponsive endpoint. This keeps the workload going through a pause
        and lets requests pile up at a paused member, to be answered when it resumes."""
        config, rng = self.config, self.rng
        in_flight: dict[asyncio.Task[Op], str] = {}
        patience_s = config.wait_s + config.patience_s
        while not stop.is_set():
            stuck = set(in_flight.values())
            healthy = [n for n in self.urls if n not in stuck]
            node = rng.choice(healthy if healthy and rng.random() < 0.75 else list(self.urls))
            task = asyncio.create_task(self._random_op(node))
            in_flight[task] = node
            task.add_done_callback(lambda t: in_flight.pop(t, None))
            await asyncio.wait([task], timeout=patience_s)
            while len(in_flight) >= config.in_flight_max:
                await asyncio.wait(list(in_flight), return_when=asyncio.FIRST_COMPLETED)
            with contextlib.suppress(TimeoutError):
                # think time between requests; ends early when the workload stops
                await asyncio.wait_for(stop.wait(), rng.uniform(0, config.think_s))
        if in_flight:
            await asyncio.gather(*in_flight)

    async def _random_op(self, node: str) -> Op:
        config, rng = self.config, self.rng
        names = config.names
        mine = [n for n in names if n in self.known]
        free = [n for n in names if n not in self.known]
        roll = rng.random()
        if mine and roll < 0.45:
            name = rng.choice(mine)
            return await self.renew(name, node, self.known[name].token)
        if mine and roll < 0.6:
            name = rng.choice(mine)
            return await self.release(name, node, self.known[name].token)
        if free and roll < 0.8:
            delay = config.lock_delay_s if rng.random() < config.lock_delay_share else 0.0
            return await self.acquire(rng.choice(free), node, lock_delay=delay)
        if roll < 0.9:
            return await self.read(rng.choice(names), node)
        name = rng.choice(names)
        token = self.known[name].token if name in self.known else self.last_token
        return await self.verify(name, node, token)


def _json(raw: bytes) -> Any:
    import json

    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def _grant(body: Any) -> Grant | None:
    if not isinstance(body, dict) or body.get("holder") is None or body.get("token") is None:
        return None
    return Grant(str(body["holder"]), int(body["token"]), body.get("ttl"))


def _classify(op: Op, status: int, body: Any) -> None:
    error = body.get("error") if isinstance(body, dict) else None
    op.error = error
    if status == 200 and op.f == "verify":
        op.type = "ok"
        current = body.get("token") if isinstance(body, dict) else None
        op.current_token = current
        if not isinstance(body, dict) or body.get("current") != (current == op.token):
            op.error = "inconsistent_verify"
    elif status == 200:
        op.type = "ok"
        op.lease = _grant(body) if op.f != "release" else None
    elif status == 404 and op.f == "read" and error == "not_found":
        op.type, op.lease = "ok", None
    elif status == 409:
        op.type = "fail"
        op.current = _grant(body)
        if error == "not_holder" and not (isinstance(body, dict) and "holder" in body):
            op.error = "not_holder_unspecified"  # names nothing: constrains nothing
    elif status >= 500:
        # 503 may mean "outcome unknown" (and a forwarded request may have been applied);
        # a read changes nothing, so a failed read is simply failed
        op.type = "info" if op.f in MUTATIONS else "fail"
        op.error = error or f"http_{status}"
    else:
        op.type = "fail"
        op.error = error or f"http_{status}"


@dataclass
class Workload:
    """``clients`` holders ``c1..cN`` running until ``stop()``."""

    urls: dict[str, str]
    config: WorkloadConfig
    recorder: Recorder
    clients: list[Client] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)

    async def start(self) -> None:
        for i in range(self.config.clients):
            rng = random.Random(f"{self.config.seed}/c{i + 1}")
            client = Client(f"c{i + 1}", self.urls, self.config, self.recorder, rng)
            await self._stack.enter_async_context(client)
            self.clients.append(client)
        self._tasks = [asyncio.create_task(c.run(self._stop), name=f"client-{c.holder}")
                       for c in self.clients]  # fmt: skip

    async def stop(self) -> None:
        """Ask every client to stop and wait for its requests in flight (each is bounded by
        its own timeout; retries stop)."""
        self._stop.set()
        for client in self.clients:
            client.stopping = True
        try:
            if self._tasks:
                await asyncio.gather(*self._tasks)
        finally:
            for task in self._tasks:
                task.cancel()
            await self._stack.aclose()

    def probe_client(self, holder: str = "probe") -> Client:
        """A client outside the random loop (enter it with ``async with``)."""
        return Client(holder, self.urls, self.config, self.recorder, random.Random(holder))


def since(ops: list[Op], t: float, predicate: Callable[[Op], bool]) -> list[Op]:
    return [op for op in ops if op.inv >= t and predicate(op)]
