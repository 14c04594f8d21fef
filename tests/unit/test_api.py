"""The HTTP edge (DESIGN.md §4) against an in-memory ``Leasing``: every route, every error
code, forwarding to the primary, long polls and event streams, metrics.

Real aiohttp servers on OS-chosen loopback ports; no sleeping: waits are on conditions the
fake signals (``observing``), each under a deadline.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.typedefs import Handler

from paxlock.api.server.app import PRIMARY_HEADER, create_app
from paxlock.api.server.routes import METRICS
from paxlock.coordinator.errors import Held, NotFound, NotHolder, NotPrimary, Unavailable
from paxlock.coordinator.errors import RequestExpired
from paxlock.coordinator.metrics import Metrics
from paxlock.coordinator.views import LeaseView

DEADLINE_S = 5.0


class FakeLeasing:
    """``Leasing`` in memory: a dict of leases and a revision counter, no clock. ``primary``
    other than ``node_id`` makes every operation but stale reads raise ``NotPrimary``."""

    def __init__(self, node_id: str = "n1", primary: str | None = "n1") -> None:
        self.node_id = node_id
        self.primary = primary
        self.leases: dict[str, LeaseView] = {}
        self.revision = 0
        self.unavailable: Unavailable | None = None
        self.ready: tuple[bool, str] = (True, "primary n1, 0 slots behind")
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.changed = asyncio.Condition()
        self.observing = asyncio.Event()
        """Set whenever an observe starts waiting: a test's cue to make the change."""

    def _enter(self, op: str, /, *, local_ok: bool = False, **args: Any) -> None:
        self.calls.append((op, args))
        if self.unavailable is not None:
            raise self.unavailable
        if not local_ok and self.primary != self.node_id:
            raise NotPrimary(self.primary)

    def _held(self, name: str) -> LeaseView | None:
        view = self.leases.get(name)
        return view if view is not None and view.holder is not None else None

    async def _change(self, name: str, **fields: Any) -> LeaseView:
        self.revision += 1
        base = self.leases.get(name) or LeaseView(name, None, None, 0, None, None, None, 0.0)
        view = LeaseView(**{**_fields(base), "revision": self.revision, **fields})
        self.leases[name] = view
        async with self.changed:
            self.changed.notify_all()
        return view

    def _holder_check(self, name: str, holder: str, token: int) -> LeaseView:
        view = self._held(name)
        if view is None or view.holder != holder or view.token != token:
            raise NotHolder(f"{holder} does not hold {name} with token {token}")
        return view

    async def acquire(self, name: str, *, holder: str, ttl: float, wait: float = 0.0,
                      value: str | None = None, lock_delay: float = 0.0,
                      request_id: str | None = None, principal: str = "",
                      session: str | None = None) -> LeaseView:  # fmt: skip
        self._enter("acquire", name=name, holder=holder, ttl=ttl, wait=wait, value=value,
                    lock_delay=lock_delay, request_id=request_id)  # fmt: skip
        held = self._held(name)
        if held is not None:
            raise Held(f"{name} is held", holder=held.holder, expires_in=held.expires_in,
                       token=held.token)  # fmt: skip
        return await self._change(name, holder=holder, token=self.revision + 1, ttl=ttl,
                                  expires_in=ttl, value=value, lock_delay=lock_delay)  # fmt: skip

    async def renew(self, name: str, *, holder: str, token: int,
                    principal: str = "") -> LeaseView:  # fmt: skip
        self._enter("renew", name=name, holder=holder, token=token)
        return self._holder_check(name, holder, token)

    async def release(self, name: str, *, holder: str, token: int,
                      request_id: str | None = None, principal: str = "") -> None:  # fmt: skip
        self._enter("release", name=name, holder=holder, token=token, request_id=request_id)
        self._holder_check(name, holder, token)
        await self._change(name, holder=None, token=None, ttl=None, expires_in=None, value=None)

    async def proclaim(self, name: str, *, holder: str, token: int, value: str | None,
                       request_id: str | None = None, principal: str = "") -> LeaseView:  # fmt: skip
        self._enter("proclaim", name=name, holder=holder, token=token, value=value)
        self._holder_check(name, holder, token)
        return await self._change(name, value=value)

    async def get(self, name: str, *, consistent: bool = True) -> LeaseView:
        self._enter("get", local_ok=not consistent, name=name, consistent=consistent)
        view = self._held(name)
        if view is None:
            raise NotFound(f"nobody holds {name}")
        return view

    async def list(self, prefix: str = "", *, consistent: bool = True) -> list[LeaseView]:
        self._enter("list", local_ok=not consistent, prefix=prefix, consistent=consistent)
        return [v for n, v in sorted(self.leases.items()) if n.startswith(prefix) and v.holder]

    async def verify(self, name: str, *, token: int) -> tuple[bool, int | None]:
        self._enter("verify", name=name, token=token)
        view = self._held(name)
        current = None if view is None else view.token
        return current == token, current

    async def observe(self, name: str, *, after: int, timeout: float) -> LeaseView | None:
        self._enter("observe", name=name, after=after, timeout=timeout)

        def passed() -> bool:
            view = self.leases.get(name)
            return view is not None and view.revision > after

        async with self.changed:
            if not passed() and timeout > 0:
                self.observing.set()
                try:
                    await asyncio.wait_for(self.changed.wait_for(passed), timeout)
                except TimeoutError:
                    pass
        return self.leases[name] if passed() else None

    def known_primary(self) -> str | None:
        return self.primary

    def cluster(self) -> dict[str, Any]:
        return {"node": self.node_id, "primary": self.primary, "ballot": "3.n1",
                "learn_mode": "broadcast", "chosen_index": 7, "applied_index": 7,
                "members": [{"id": self.node_id, "url": "http://x", "reachable": True,
                             "chosen_index": 7}]}  # fmt: skip

    def readiness(self) -> tuple[bool, str]:
        return self.ready


def _fields(view: LeaseView) -> dict[str, Any]:
    return {f: getattr(view, f) for f in LeaseView.__slots__}


Serve = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start an app for a fake on its own port, with its own ``Metrics`` registry."""
    clients: list[TestClient[web.Request, web.Application]] = []

    async def start(service: FakeLeasing, *, peers: dict[str, str] | None = None,
                    setup: Callable[[web.Application], None] | None = None,
                    **kw: Any) -> TestClient[web.Request, web.Application]:  # fmt: skip
        peers = peers or {service.node_id: "http://127.0.0.1:9"}
        app = create_app(service, peers=peers, metrics=Metrics(service.node_id), **kw)
        if setup is not None:
            setup(app)
        client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in reversed(clients):
        await client.close()


@pytest.fixture
async def fake_client(serve: Serve) -> tuple[FakeLeasing, TestClient[web.Request, web.Application]]:
    fake = FakeLeasing()
    return fake, await serve(fake)


async def call(client: TestClient[web.Request, web.Application], method: str, path: str,
               body: Any = None, **kw: Any) -> tuple[int, Any, Any]:  # fmt: skip
    """(status, JSON body or None, headers) of one request."""
    async with client.request(method, path, json=body, **kw) as resp:
        text = await resp.text()
        payload = await resp.json() if text and resp.content_type == "application/json" else None
        assert resp.headers["X-Paxlock-Node"], "every answer names its node"
        return resp.status, payload, resp.headers


def metrics_of(client: TestClient[web.Request, web.Application]) -> Metrics:
    assert isinstance(client.server, TestServer)
    return client.server.app[METRICS]


ACQ = {"holder": "alice", "ttl": 10}

# -- leases --------------------------------------------------------------------------------


async def test_acquire_returns_the_lease_object(fake_client: Any) -> None:
    fake, client = fake_client
    acquire = {**ACQ, "value": "v", "lock_delay": 2, "wait": 0}
    status, body, headers = await call(client, "POST", "/v1/leases/db/primary:acquire", acquire)
    assert status == 200
    assert body == {"name": "db/primary", "holder": "alice", "token": 1, "revision": 1,
                    "ttl": 10.0, "expires_in": 10.0, "value": "v", "lock_delay": 2.0,
                    "session": None, "waiters": 0}  # fmt: skip
    assert headers["X-Paxlock-Node"] == "n1" and headers[PRIMARY_HEADER] == "n1"


async def test_acquire_of_a_held_name_is_409_held_with_holder_and_expires_in(
        fake_client: Any) -> None:  # fmt: skip
    _, client = fake_client
    await call(client, "POST", "/v1/leases/x:acquire", ACQ)
    status, body, _ = await call(client, "POST", "/v1/leases/x:acquire", {**ACQ, "holder": "bob"})
    assert status == 409
    assert body["error"] == "held" and body["holder"] == "alice" and body["expires_in"] == 10.0
    assert body["message"]


async def test_request_id_comes_from_body_or_idempotency_key(fake_client: Any) -> None:
    fake, client = fake_client
    await call(client, "POST", "/v1/leases/a:acquire", ACQ, headers={"Idempotency-Key": "k1"})
    await call(client, "POST", "/v1/leases/b:acquire", {**ACQ, "request_id": "k2"},
               headers={"Idempotency-Key": "k2"})  # fmt: skip
    assert [args["request_id"] for op, args in fake.calls] == ["k1", "k2"]
    status, body, _ = await call(client, "POST", "/v1/leases/c:acquire",
                                 {**ACQ, "request_id": "k3"}, headers={"Idempotency-Key": "k4"})
    assert status == 400 and "Idempotency-Key" in body["message"]


async def test_renew_release_verify_get_and_list(fake_client: Any) -> None:
    fake, client = fake_client
    _, lease, _ = await call(client, "POST", "/v1/leases/jobs/a:acquire", ACQ)
    await call(client, "POST", "/v1/leases/other:acquire", ACQ)
    token = lease["token"]
    status, body, _ = await call(client, "POST", "/v1/leases/jobs/a:renew",
                                 {"holder": "alice", "token": token})  # fmt: skip
    assert status == 200 and body["token"] == token
    assert (await call(client, "POST", "/v1/leases/jobs/a:verify", {"token": token}))[1] == {
        "current": True, "token": token}  # fmt: skip
    assert (await call(client, "GET", "/v1/leases/jobs/a"))[1]["holder"] == "alice"
    status, body, _ = await call(client, "GET", "/v1/leases?prefix=jobs/")
    assert status == 200 and [lease["name"] for lease in body["leases"]] == ["jobs/a"]
    status, body, _ = await call(client, "POST", "/v1/leases/jobs/a:release",
                                 {"holder": "alice", "token": token, "request_id": "r"})
    assert (status, body) == (200, {"released": True})
    assert (await call(client, "POST", "/v1/leases/jobs/a:verify", {"token": token}))[1] == {
        "current": False, "token": None}  # fmt: skip
    status, body, _ = await call(client, "GET", "/v1/leases/jobs/a")
    assert status == 404 and body["error"] == "not_found"


async def test_consistent_false_reaches_the_service(fake_client: Any) -> None:
    fake, client = fake_client
    await call(client, "GET", "/v1/leases/a?consistent=false")
    await call(client, "GET", "/v1/leases?consistent=false")
    await call(client, "GET", "/v1/elections/a?consistent=false")
    assert [args["consistent"] for _, args in fake.calls] == [False, False, False]


@pytest.mark.parametrize("path,body", [
    ("/v1/leases/x:renew", {"holder": "bob", "token": 1}),
    ("/v1/leases/x:release", {"holder": "alice", "token": 99}),
    ("/v1/elections/x:proclaim", {"candidate": "bob", "token": 1, "value": "v"}),
    ("/v1/elections/x:renew", {"candidate": "bob", "token": 1}),
    ("/v1/elections/x:resign", {"candidate": "bob", "token": 1}),
])  # fmt: skip
async def test_not_holder_is_409(fake_client: Any, path: str, body: dict[str, Any]) -> None:
    _, client = fake_client
    await call(client, "POST", "/v1/leases/x:acquire", ACQ)
    status, payload, _ = await call(client, "POST", path, body)
    assert status == 409 and payload["error"] == "not_holder"


async def test_a_retry_the_cluster_no_longer_remembers_is_409_request_expired(
    fake_client: Any,
) -> None:  # fmt: skip
    fake, client = fake_client
    fake.unavailable = RequestExpired("the result of this request_id is no longer kept")  # type: ignore[assignment]
    status, payload, _ = await call(client, "POST", "/v1/leases/x:acquire",
                                    {**ACQ, "request_id": "r1"})  # fmt: skip
    assert status == 409 and payload["error"] == "request_expired"
    assert "no longer kept" in payload["message"]


def test_the_sdk_raises_request_expired_for_it() -> None:
    from paxlock.api.client.errors import RequestExpired as SdkRequestExpired
    from paxlock.api.client.errors import error_from_response

    error = error_from_response(409, {"error": "request_expired", "message": "gone"})
    assert isinstance(error, SdkRequestExpired) and error.code == "request_expired"


# -- elections -----------------------------------------------------------------------------


async def test_election_lifecycle(fake_client: Any) -> None:
    _, client = fake_client
    status, leader, _ = await call(client, "POST", "/v1/elections/svc:campaign",
                                   {"candidate": "c1", "value": "http://c1", "ttl": 5})
    assert status == 200
    assert leader == {"name": "svc", "leader": "c1", "value": "http://c1", "token": 1,
                      "revision": 1, "ttl": 5.0, "expires_in": 5.0, "session": None,
                      "waiters": 0}  # fmt: skip
    status, body, _ = await call(client, "POST", "/v1/elections/svc:campaign",
                                 {"candidate": "c2", "value": "x", "ttl": 5})
    assert status == 409 and body["error"] == "held" and body["holder"] == "c1"
    cand = {"candidate": "c1", "token": 1}
    status, body, _ = await call(client, "POST", "/v1/elections/svc:proclaim",
                                 {**cand, "value": "http://c1:2"})
    assert status == 200 and body["value"] == "http://c1:2" and body["revision"] == 2
    assert (await call(client, "POST", "/v1/elections/svc:renew", cand))[1]["leader"] == "c1"
    assert (await call(client, "GET", "/v1/elections/svc"))[1]["value"] == "http://c1:2"
    status, body, _ = await call(client, "POST", "/v1/elections/svc:resign", cand)
    assert (status, body) == (200, {"released": True})
    status, body, _ = await call(client, "GET", "/v1/elections/svc")
    assert status == 404 and body["error"] == "not_found"


async def test_observe_long_poll_answers_once_revision_passes_after(fake_client: Any) -> None:
    fake, client = fake_client
    poll = asyncio.create_task(call(client, "GET", "/v1/elections/e:observe?after=0&timeout=60"))
    await asyncio.wait_for(fake.observing.wait(), DEADLINE_S)
    await call(client, "POST", "/v1/elections/e:campaign", {"candidate": "c", "ttl": 5})
    status, body, _ = await asyncio.wait_for(poll, DEADLINE_S)
    assert status == 200 and body["leader"] == "c" and body["revision"] == 1


async def test_observe_long_poll_times_out_with_204(fake_client: Any) -> None:
    fake, client = fake_client
    status, body, _ = await call(client, "GET", "/v1/elections/e:observe?after=0&timeout=0")
    assert (status, body) == (204, None)


async def test_observe_reports_no_leader_as_null(fake_client: Any) -> None:
    _, client = fake_client
    await call(client, "POST", "/v1/elections/e:campaign", {"candidate": "c", "ttl": 5})
    await call(client, "POST", "/v1/elections/e:resign", {"candidate": "c", "token": 1})
    status, body, _ = await call(client, "GET", "/v1/elections/e:observe?after=1&timeout=0")
    assert status == 200 and body["leader"] is None and body["revision"] == 2


async def read_event(resp: Any) -> bytes:
    return bytes(await asyncio.wait_for(resp.content.readuntil(b"\n\n"), DEADLINE_S))


async def test_observe_event_stream_delivers_every_change(fake_client: Any) -> None:
    fake, client = fake_client
    await call(client, "POST", "/v1/elections/e:campaign", {"candidate": "c", "ttl": 5})
    async with client.get("/v1/elections/e:observe",
                          headers={"Accept": "text/event-stream"}) as resp:  # fmt: skip
        assert resp.status == 200 and resp.content_type == "text/event-stream"
        assert resp.headers["X-Paxlock-Node"] == "n1"
        first = await read_event(resp)
        assert first.startswith(b"id: 1\ndata: {") and b'"leader":"c"' in first
        await call(client, "POST", "/v1/elections/e:proclaim",
                   {"candidate": "c", "token": 1, "value": "v2"})  # fmt: skip
        second = await read_event(resp)
        assert second.startswith(b"id: 2\n") and b'"value":"v2"' in second


async def test_event_stream_opens_with_a_keepalive_and_resumes_from_last_event_id(
        fake_client: Any) -> None:  # fmt: skip
    fake, client = fake_client
    await call(client, "POST", "/v1/elections/e:campaign", {"candidate": "c", "ttl": 5})
    headers = {"Accept": "text/event-stream", "Last-Event-ID": "1"}
    async with client.get("/v1/elections/e:observe", headers=headers) as resp:
        assert await read_event(resp) == b": keepalive\n\n"
        await call(client, "POST", "/v1/elections/e:resign", {"candidate": "c", "token": 1})
        assert b'"leader":null' in await read_event(resp)


async def test_event_stream_ends_when_the_client_goes_away_without_cancellation() -> None:
    """Production runners do not cancel handlers on disconnect: the heartbeat finds out."""
    fake, ended = FakeLeasing(), asyncio.Event()

    @web.middleware
    async def watch(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        finally:
            ended.set()

    app = create_app(fake, peers={}, metrics=Metrics("n1"), sse_heartbeat_s=0.02)
    app.middlewares.append(watch)
    runner = web.AppRunner(app, handler_cancellation=False, shutdown_timeout=DEADLINE_S)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/v1/elections/e:observe",
                                   headers={"Accept": "text/event-stream"}) as resp:  # fmt: skip
                assert await read_event(resp) == b": keepalive\n\n"
        await asyncio.wait_for(ended.wait(), DEADLINE_S)
    finally:
        await runner.cleanup()


async def test_shutdown_ends_open_event_streams(serve: Serve) -> None:
    """A node stops promptly although a stream never ends by itself (local or relayed)."""
    upstream = await serve(FakeLeasing("n2", primary="n2"))
    app = create_app(FakeLeasing("n1", primary="n2"), metrics=Metrics("n1"),
                     peers={"n1": "http://127.0.0.1:9", "n2": str(upstream.make_url(""))})
    runner = web.AppRunner(app, handler_cancellation=False, shutdown_timeout=60)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    sse = {"Accept": "text/event-stream"}
    async with ClientSession() as session:
        local = await session.get(str(upstream.make_url("/v1/elections/e:observe")), headers=sse)
        relayed = await session.get(f"http://127.0.0.1:{port}/v1/elections/e:observe", headers=sse)
        for resp in (local, relayed):
            assert await read_event(resp) == b": keepalive\n\n"
        await asyncio.wait_for(runner.cleanup(), DEADLINE_S)  # the relay, upstream still open
        assert isinstance(upstream.server, TestServer) and upstream.server.runner is not None
        await asyncio.wait_for(upstream.server.runner.cleanup(), DEADLINE_S)  # a local stream
        local.close()
        relayed.close()


# -- the error shape -----------------------------------------------------------------------

BAD_BODIES: list[tuple[str, bytes | dict[str, Any], str]] = [
    ("/v1/leases/x:acquire", b"{not json", "malformed JSON"),
    ("/v1/leases/x:acquire", b"", "must be a JSON object"),
    ("/v1/leases/x:acquire", b"[1, 2]", "Expected `object`"),
    ("/v1/leases/x:acquire", {"holder": "a"}, "`ttl`"),
    ("/v1/leases/x:acquire", {"holder": 3, "ttl": 1}, "$.holder"),
    ("/v1/leases/x:acquire", {"holder": "a", "ttl": "10"}, "$.ttl"),
    ("/v1/leases/x:acquire", {**ACQ, "colour": "red"}, "colour"),
    ("/v1/leases/x:acquire", {"holder": "a", "ttl": 0}, "$.ttl"),
    ("/v1/leases/x:acquire", {"holder": "a", "ttl": 3601}, "$.ttl"),
    ("/v1/leases/x:acquire", {**ACQ, "wait": -1}, "$.wait"),
    ("/v1/leases/x:acquire", {**ACQ, "wait": 3601}, "$.wait"),
    ("/v1/leases/x:acquire", {**ACQ, "lock_delay": 3601}, "$.lock_delay"),
    ("/v1/leases/x:acquire", {**ACQ, "holder": ""}, "$.holder"),
    ("/v1/leases/x:acquire", {**ACQ, "holder": "h" * 257}, "$.holder"),
    ("/v1/leases/x:acquire", {**ACQ, "value": "é" * 2049}, "4096 bytes"),
    ("/v1/leases/x:renew", {"holder": "a", "token": True}, "$.token"),
    ("/v1/leases/x:verify", {}, "`token`"),
    ("/v1/elections/x:campaign", {"candidate": "c"}, "`ttl`"),
    ("/v1/elections/x:proclaim", {"candidate": "c", "token": 1}, "`value`"),
    ("/v1/elections/x:campaign", {"candidate": "c", "ttl": 1, "holder": "h"}, "holder"),
]


@pytest.mark.parametrize("path,body,needle", BAD_BODIES)
async def test_bad_bodies_are_400_bad_request(fake_client: Any, path: str,
                                              body: Any, needle: str) -> None:  # fmt: skip
    fake, client = fake_client
    kw = {"data": body} if isinstance(body, bytes) else {"json": body}
    async with client.post(path, **kw) as resp:
        payload = await resp.json()
    assert resp.status == 400 and payload["error"] == "bad_request", payload
    assert needle in payload["message"], payload["message"]
    assert fake.calls == [], "nothing invalid reaches the service"


@pytest.mark.parametrize("path", [
    "/v1/leases/bad%20name:acquire", "/v1/leases/a:b:acquire", "/v1/leases/:acquire",
    "/v1/leases/" + "n" * 257 + ":acquire", "/v1/leases/caf%C3%A9",
    "/v1/leases?prefix=a%20b", "/v1/leases/a?consistent=maybe",
    "/v1/elections/a:observe?after=-1", "/v1/elections/a:observe?timeout=x",
    "/v1/elections/a:observe?timeout=3601",
])  # fmt: skip
async def test_bad_names_and_query_parameters_are_400(fake_client: Any, path: str) -> None:
    _, client = fake_client
    method = "POST" if path.endswith(":acquire") else "GET"
    status, body, _ = await call(client, method, path, ACQ if method == "POST" else None)
    assert status == 400 and body["error"] == "bad_request", body


async def test_body_over_one_mebibyte_is_413(fake_client: Any) -> None:
    _, client = fake_client
    big = b'{"holder": "' + b"a" * (1024 * 1024) + b'", "ttl": 1}'
    status, body, _ = await call(client, "POST", "/v1/leases/x:acquire", data=io.BytesIO(big))
    assert status == 413 and body["error"] == "payload_too_large"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: aiohttp's own limit
        for _ in range(17):
            yield b" " * 65536

    status, body, _ = await call(client, "POST", "/v1/leases/x:acquire", data=chunks())
    assert status == 413 and body["error"] == "payload_too_large"


async def test_unavailable_is_503_with_retry_after(fake_client: Any) -> None:
    fake, client = fake_client
    fake.unavailable = Unavailable("no quorum", retry_after_s=2.5)
    status, body, headers = await call(client, "POST", "/v1/leases/x:acquire", ACQ)
    assert status == 503 and body["error"] == "unavailable" and body["message"] == "no quorum"
    assert headers["Retry-After"] == "3" and body["retry_after_s"] == 2.5


@pytest.mark.parametrize("method,path,status,code", [
    ("GET", "/nowhere", 404, "not_found"),
    ("GET", "/v1/leases/x:frobnicate", 404, "not_found"),
    ("GET", "/v1/leases/x:acquire", 405, "method_not_allowed"),
    ("DELETE", "/v1/elections/x", 405, "method_not_allowed"),
    ("POST", "/healthz", 405, "method_not_allowed"),
])  # fmt: skip
async def test_unknown_routes_and_methods_answer_json(fake_client: Any, method: str, path: str,
                                                      status: int, code: str) -> None:  # fmt: skip
    _, client = fake_client
    got, body, headers = await call(client, method, path)
    assert (got, body["error"]) == (status, code) and body["message"]
    if status == 405:
        assert headers["Allow"]


# -- operations ----------------------------------------------------------------------------


async def test_cluster_healthz_and_readyz(fake_client: Any) -> None:
    fake, client = fake_client
    status, body, _ = await call(client, "GET", "/v1/cluster")
    assert status == 200 and body["node"] == "n1" and body["members"][0]["reachable"] is True
    assert (await call(client, "GET", "/healthz"))[0] == 200
    status, body, _ = await call(client, "GET", "/readyz")
    assert status == 200 and body["ready"] is True and body["reason"]
    fake.ready = (False, "no primary known")
    status, body, headers = await call(client, "GET", "/readyz")
    assert status == 503 and body["error"] == "unavailable" and body["ready"] is False
    assert body["reason"] == "no primary known" and headers["Retry-After"]
    assert (await call(client, "GET", "/healthz"))[0] == 200, "alive while not ready"


async def test_metrics_count_requests_by_route_template(fake_client: Any) -> None:
    _, client = fake_client
    await call(client, "POST", "/v1/leases/a/b:acquire", ACQ)
    await call(client, "POST", "/v1/leases/c:acquire", ACQ)
    await call(client, "GET", "/v1/leases/zz")
    await call(client, "GET", "/no/such/route")
    async with client.get("/metrics") as resp:
        text = await resp.text()
    assert resp.status == 200 and resp.content_type == "text/plain"
    assert "paxlock_http_requests_total" in text and "paxlock_is_primary" in text
    sample = metrics_of(client).registry.get_sample_value

    def requests(route: str, method: str, status: str) -> float | None:
        labels = {"route": route, "method": method, "status": status}
        return sample("paxlock_http_requests_total", labels)

    assert requests("/v1/leases/{name}:acquire", "POST", "200") == 2
    assert requests("/v1/leases/{name}", "GET", "404") == 1
    assert requests("unmatched", "GET", "404") == 1
    assert sample("paxlock_http_request_duration_seconds_count",
                  {"route": "/v1/leases/{name}:acquire", "method": "POST"}) == 2  # fmt: skip


def test_metrics_use_their_own_registry() -> None:
    one, two = Metrics("n1"), Metrics("n2")  # the global registry would raise Duplicated...
    one.grants.inc()
    assert one.registry.get_sample_value("paxlock_lease_grants_total") == 1
    assert two.registry.get_sample_value("paxlock_lease_grants_total") == 0
    assert one.registry.get_sample_value("paxlock_node_info", {"node": "n1"}) == 1


def _internal(app: web.Application) -> None:
    async def ping(request: web.Request) -> web.Response:
        return web.json_response({"pong": True})

    app.router.add_get("/internal/ping", ping)


async def test_internal_routes_need_the_cluster_token(serve: Serve) -> None:
    client = await serve(FakeLeasing(), cluster_token="s3cret", setup=_internal)
    status, body, _ = await call(client, "GET", "/internal/ping")
    assert status == 401 and body["error"] == "unauthenticated"
    bad = {"X-Paxlock-Cluster-Token": "guess"}
    assert (await call(client, "GET", "/internal/ping", headers=bad))[0] == 401
    good = {"X-Paxlock-Cluster-Token": "s3cret"}
    assert (await call(client, "GET", "/internal/ping", headers=good))[1] == {"pong": True}
    assert (await call(client, "GET", "/v1/cluster"))[0] == 200, "public routes stay public"
    open_client = await serve(FakeLeasing(), setup=_internal)
    assert (await call(open_client, "GET", "/internal/ping"))[0] == 200


async def test_mounts_as_a_sub_app_under_a_prefix(serve: Serve) -> None:
    fake, metrics = FakeLeasing(), Metrics("n1")
    app = create_app(fake, peers={"n1": "http://127.0.0.1:9/paxlock"}, metrics=metrics,
                     cluster_token="t")  # fmt: skip
    _internal(app)
    host = web.Application()
    host.add_subapp("/paxlock", app)
    async with TestClient(TestServer(host)) as client:
        status, body, headers = await call(client, "POST", "/paxlock/v1/leases/a:acquire", ACQ)
        assert status == 200 and headers[PRIMARY_HEADER] == "n1"
        assert (await call(client, "GET", "/paxlock/internal/ping"))[0] == 401
        assert (await call(client, "GET", "/paxlock/v1/cluster"))[0] == 200
    labels = {"route": "/v1/cluster", "method": "GET", "status": "200"}
    assert metrics.registry.get_sample_value("paxlock_http_requests_total", labels) == 1


# -- forwarding to the primary -------------------------------------------------------------


async def unused_url(serve: Serve) -> str:
    """The URL of a server that has stopped: connections to it are refused."""
    client = await serve(FakeLeasing("gone"))
    url = str(client.make_url(""))
    await client.close()
    return url


async def test_a_follower_forwards_to_the_primary(serve: Serve) -> None:
    primary = FakeLeasing("n2", primary="n2")
    upstream = await serve(primary)
    follower = FakeLeasing("n1", primary="n2")
    peers = {"n1": "http://127.0.0.1:9", "n2": str(upstream.make_url(""))}
    client = await serve(follower, peers=peers)
    status, body, headers = await call(client, "POST", "/v1/leases/a/b:acquire?x=1",
                                       {**ACQ, "wait": 1}, headers={"Idempotency-Key": "k"})
    assert status == 200 and body["holder"] == "alice"
    assert headers["X-Paxlock-Node"] == "n1" and headers[PRIMARY_HEADER] == "n2"
    assert primary.calls == [("acquire", {"name": "a/b", "holder": "alice", "ttl": 10.0,
                                          "wait": 1.0, "value": None, "lock_delay": 0.0,
                                          "request_id": "k"})]  # fmt: skip
    status, body, headers = await call(client, "POST", "/v1/leases/a/b:acquire",
                                       {**ACQ, "holder": "bob"})  # errors come back as they are
    assert status == 409 and body["holder"] == "alice" and headers[PRIMARY_HEADER] == "n2"
    status, body, _ = await call(client, "GET", "/v1/leases?prefix=a/")
    assert status == 200 and len(body["leases"]) == 1
    status, body, _ = await call(client, "GET", "/v1/elections/e:observe?after=0&timeout=0")
    assert (status, body) == (204, None), "a long poll's timeout comes back as it is"
    status, body, _ = await call(client, "GET", "/v1/leases/a/b?consistent=false")
    assert status == 404, "a stale read is served locally, not forwarded"
    assert metrics_of(upstream).registry is not metrics_of(client).registry
    forwarded = metrics_of(client).registry.get_sample_value(
        "paxlock_http_forwarded_total", {"outcome": "ok"})  # fmt: skip
    assert forwarded == 4


async def test_a_forwarded_request_is_never_forwarded_again(serve: Serve) -> None:
    stale = FakeLeasing("n2", primary="n1")  # n2 believes n1 is primary, n1 believes n2
    second = await serve(stale, peers={"n1": "http://127.0.0.1:9", "n2": "http://127.0.0.1:9"})
    follower = FakeLeasing("n1", primary="n2")
    peers = {"n1": "http://127.0.0.1:9", "n2": str(second.make_url(""))}
    client = await serve(follower, peers=peers)
    status, body, headers = await call(client, "POST", "/v1/leases/x:acquire", ACQ)
    assert status == 503 and body["error"] == "unavailable" and headers["Retry-After"]
    assert headers[PRIMARY_HEADER] == "n2"
    assert len(follower.calls) == 1 and len(stale.calls) == 1, "one hop, no loop"


@pytest.mark.parametrize("primary", [None, "stranger"])
async def test_no_known_primary_is_503(serve: Serve, primary: str | None) -> None:
    client = await serve(FakeLeasing("n1", primary=primary))
    status, body, headers = await call(client, "POST", "/v1/leases/x:acquire", ACQ)
    assert status == 503 and body["error"] == "unavailable" and headers["Retry-After"]
    assert body["primary"] == primary


async def test_an_unreachable_primary_is_503(serve: Serve) -> None:
    peers = {"n1": "http://127.0.0.1:9", "n2": await unused_url(serve)}
    client = await serve(FakeLeasing("n1", primary="n2"), peers=peers)
    status, body, headers = await call(client, "POST", "/v1/leases/x:acquire", ACQ)
    assert status == 503 and headers["Retry-After"]
    primary_url = peers["n2"].rstrip("/")
    assert body["message"] == f"the primary n2 at {primary_url} did not answer: connection refused"


async def test_event_streams_are_forwarded_too(serve: Serve) -> None:
    primary = FakeLeasing("n2", primary="n2")
    upstream = await serve(primary)
    peers = {"n1": "http://127.0.0.1:9", "n2": str(upstream.make_url(""))}
    client = await serve(FakeLeasing("n1", primary="n2"), peers=peers)
    await call(upstream, "POST", "/v1/elections/e:campaign", {"candidate": "c", "ttl": 5})
    async with client.get("/v1/elections/e:observe",
                          headers={"Accept": "text/event-stream"}) as resp:  # fmt: skip
        assert resp.status == 200 and resp.headers[PRIMARY_HEADER] == "n2"
        assert (await read_event(resp)).startswith(b"id: 1\n")
        await call(upstream, "POST", "/v1/elections/e:resign", {"candidate": "c", "token": 1})
        assert b'"leader":null' in await read_event(resp)


def test_an_embedded_call_forwarded_to_the_primary_keeps_every_field_of_its_answer() -> None:
    """``EmbeddedLeases`` rebuilds the view from the primary's JSON: the session a lease is
    bound to and its waiters must survive the trip (both were dropped)."""
    from paxlock.api.server.embedded import _view

    view = LeaseView("a/b", "h", 7, 9, 15.0, 14.5, "v", 0.0, session="s3", waiters=2)
    assert _view(view.as_lease()) == view
    assert _view(view.as_leader()) == view
