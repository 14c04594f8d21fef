"""Limits at the HTTP edge (issue 12 item 5), against in-process nodes on free ports: each
limit, once reached, answers 429 ``too_many`` at once — JSON shape, ``limit`` named, a
``Retry-After`` — while another client keeps being served (its latency is checked only as a
sanity bound of seconds); slowloris connections are closed; aiohttp's parser errors are JSON;
parked waiters do not exhaust a follower's forwarding pool; a stalled event-stream reader is
cut off. Clients that must count as different IPs connect from other loopback addresses
(``127.0.0.2``, ...: all of 127/8 is loopback on Linux)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from paxlock import Node, NodeConfig
from paxlock.api.server.limits import LIMITER, Limits

harness = sys.modules["paxlock_test_harness"]
SANITY_S = 3.0
"""A bound on the other client's request while a limit refuses: seconds, not a benchmark."""

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="127.0.0.2 is loopback on Linux")

Factory = Callable[..., Any]


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[Factory]:
    """``await nodes(size, limits=..., cluster_token=...)`` -> started nodes, stopped after."""
    started: list[Node] = []

    async def make(size: int = 1, **options: Any) -> list[Node]:
        peers = {f"n{i}": f"http://127.0.0.1:{harness.free_port()}" for i in range(1, size + 1)}
        made = [Node(NodeConfig(n, peers, tmp_path / n, **options)) for n in peers]
        starts = await asyncio.gather(*(node.start() for node in made),
                                      return_exceptions=True)  # they bootstrap together
        started.extend(node for node, failed in zip(made, starts) if failed is None)
        for failed in starts:
            if failed is not None:
                raise failed
        for node in made:
            await node.wait_ready()
        return made

    yield make
    for node in reversed(started):
        await node.stop()


def client(source_ip: str = "127.0.0.1") -> aiohttp.ClientSession:
    """A session whose connections come from ``source_ip``, without a pool cap."""
    connector = aiohttp.TCPConnector(limit=0, local_addr=(source_ip, 0))
    return aiohttp.ClientSession(connector=connector)


async def call(session: aiohttp.ClientSession, method: str, url: str,
               body: Any = None) -> tuple[int, Any, Any]:  # fmt: skip
    async with session.request(method, url, json=body) as response:
        payload = await response.json() if response.content_type == "application/json" else None
        return response.status, response.headers, payload


def assert_too_many(status: int, headers: Any, body: Any, limit: str) -> None:
    assert status == 429, (status, body)
    assert body["error"] == "too_many" and body["limit"] == limit, body
    assert isinstance(body["message"], str) and body["message"]
    assert 1 <= int(headers["Retry-After"]) <= 2 * max(1, body["retry_after_s"]), headers
    assert body["retry_after_s"] >= 1.0


async def served_meanwhile(session: aiohttp.ClientSession, url: str, name: str) -> float:
    """Another client acquires and releases ``name``; returns its acquire's seconds."""
    started = time.monotonic()
    status, _, lease = await call(session, "POST", f"{url}/v1/leases/{name}:acquire",
                                  {"holder": "other", "ttl": 5})  # fmt: skip
    took = time.monotonic() - started
    assert status == 200, lease
    status, _, _ = await call(session, "POST", f"{url}/v1/leases/{name}:release",
                              {"holder": "other", "token": lease["token"]})  # fmt: skip
    assert status == 200 and took < SANITY_S, took
    return took


def refusals(node: Node, limit: str) -> float:
    value = node.metrics.registry.get_sample_value("paxlock_limit_refusals_total",
                                                   {"limit": limit})  # fmt: skip
    return value or 0.0


# -- request rate -----------------------------------------------------------------------------


async def test_a_client_over_its_rate_is_refused_while_another_ip_is_served(nodes: Factory) -> None:
    (node,) = await nodes(1, limits=Limits(rate_per_s=0.5, rate_burst=5))
    async with client("127.0.0.2") as greedy, client("127.0.0.3") as other:
        for _ in range(5):
            status, _, _ = await call(greedy, "GET", f"{node.url}/v1/cluster")
            assert status == 200
        status, headers, body = await call(greedy, "GET", f"{node.url}/v1/cluster")
        assert_too_many(status, headers, body, "rate")
        await served_meanwhile(other, node.url, "rate/other")
        status, _, _ = await call(greedy, "GET", f"{node.url}/healthz")  # not /v1/: not counted
        assert status == 200
    assert refusals(node, "rate") == 1


async def test_with_auth_the_rate_is_counted_by_principal_not_by_ip(
    nodes: Factory, tmp_path: Path,
) -> None:
    """Two principals on one IP: one over its rate is refused, the other is served."""
    auth = tmp_path / "auth.toml"
    auth.write_text("".join(
        f'[principals.{name}]\ntoken_sha256 = "{hashlib.sha256(name.encode()).hexdigest()}"\n'
        f'roles = [{{ prefix = "", role = "lock" }}]\n\n' for name in ("greedy", "other")
    ))  # fmt: skip
    (node,) = await nodes(1, limits=Limits(rate_per_s=0.5, rate_burst=3), auth_file=auth)
    async with client() as session:
        def call_as(principal: str) -> Any:
            return session.get(f"{node.url}/v1/cluster",
                               headers={"Authorization": f"Bearer {principal}"})  # fmt: skip

        for _ in range(3):
            async with call_as("greedy") as response:
                assert response.status == 200
        async with call_as("greedy") as response:
            body = await response.json()
            assert_too_many(response.status, response.headers, body, "rate")
            assert "greedy" in body["message"]
        async with call_as("other") as response:
            assert response.status == 200


async def test_retry_after_is_spread_over_refused_clients(nodes: Factory) -> None:
    (node,) = await nodes(1, limits=Limits(rate_per_s=0.1, rate_burst=1))
    waits = []
    async with client("127.0.0.2") as greedy:
        await call(greedy, "GET", f"{node.url}/v1/cluster")
        for _ in range(12):
            status, _, body = await call(greedy, "GET", f"{node.url}/v1/cluster")
            assert status == 429
            waits.append(body["retry_after_s"])
    assert len(set(waits)) > 1, waits  # all equal: every refused client comes back at once
    assert all(10.0 <= wait < 20.0 for wait in waits), waits  # [base, 2 x base), base 1/rate


async def test_a_forwarded_request_is_counted_once_at_the_node_the_client_reached(
    nodes: Factory,
) -> None:
    """With the cluster token, the primary trusts ``X-Paxlock-Forwarded`` and does not count
    the request again — else every client behind a follower would share the follower's IP
    bucket at the primary, and the second client here would be refused."""
    cluster = await nodes(3, limits=Limits(rate_per_s=0.1, rate_burst=4), cluster_token="s3")
    primary = await stable_primary(cluster)
    follower = next(n for n in cluster if n is not primary)
    async with client("127.0.0.2") as first, client("127.0.0.3") as second:
        for session in (first, second):
            for i in range(4):
                status, headers, body = await call(session, "POST",
                                                   f"{follower.url}/v1/leases/fwd:verify",
                                                   {"token": 1})  # fmt: skip
                assert status == 200, body
                assert headers["X-Paxlock-Node"] != headers["X-Paxlock-Primary"]  # forwarded
        status, headers, body = await call(first, "POST", f"{follower.url}/v1/leases/fwd:verify",
                                           {"token": 1})  # fmt: skip
        assert_too_many(status, headers, body, "rate")


# -- streams and waiters ----------------------------------------------------------------------


async def test_observe_streams_beyond_the_limit_are_refused(nodes: Factory) -> None:
    (node,) = await nodes(1, limits=Limits(streams_max=3))
    url = f"{node.url}/v1/elections/s:observe"
    async with client() as session:
        polls = [asyncio.ensure_future(call(session, "GET", f"{url}?timeout=30"))
                 for _ in range(2)]  # fmt: skip
        stream = await session.get(url, headers={"Accept": "text/event-stream"})
        assert stream.status == 200
        await wait_until(lambda: node.app[LIMITER].streams_open == 3, "3 observers")
        status, headers, body = await call(session, "GET", f"{url}?timeout=1")
        assert_too_many(status, headers, body, "streams")
        async with session.get(url, headers={"Accept": "text/event-stream"}) as refused:
            assert refused.status == 429 and (await refused.json())["limit"] == "streams"
        await served_meanwhile(session, node.url, "streams/other")
        stream.close()
        for poll in polls:
            poll.cancel()
        await asyncio.gather(*polls, return_exceptions=True)
        await wait_until(lambda: node.app[LIMITER].streams_open == 0, "the slots freed")
        status, _, _ = await call(session, "GET", f"{url}?timeout=0.01")
        assert status == 204
    assert refusals(node, "streams") == 2


async def test_timed_out_observers_leave_the_watcher_list(nodes: Factory) -> None:
    (node,) = await nodes(1)
    async with client() as session:
        answers = await asyncio.gather(*(
            call(session, "GET", f"{node.url}/v1/elections/w{i % 5}:observe?timeout=0.2")
            for i in range(60)
        ))  # fmt: skip
    assert {status for status, _, _ in answers} == {204}
    assert node.service.watches.watching == 0
    assert node.app[LIMITER].streams_open == 0


async def test_waiters_beyond_the_limit_per_name_are_refused(nodes: Factory) -> None:
    (node,) = await nodes(1, limits=Limits(waiters_per_name_max=3))
    url = f"{node.url}/v1/leases/busy:acquire"
    async with client() as session:
        status, _, held = await call(session, "POST", url, {"holder": "h", "ttl": 30})
        assert status == 200
        parked = [asyncio.ensure_future(call(session, "POST", url,
                                             {"holder": f"w{i}", "ttl": 5, "wait": 30}))
                  for i in range(3)]  # fmt: skip
        await wait_until(lambda: len(node.service.waiting) == 3, "3 parked acquires")
        status, headers, body = await call(session, "POST", url,
                                           {"holder": "late", "ttl": 5, "wait": 30})  # fmt: skip
        assert_too_many(status, headers, body, "waiters_per_name")
        status, _, body = await call(session, "POST", url, {"holder": "now", "ttl": 5})
        assert status == 409 and body["error"] == "held"  # wait=0 is not a waiter
        await served_meanwhile(session, node.url, "busy/other")
        await call(session, "POST", f"{node.url}/v1/leases/busy:release",
                   {"holder": "h", "token": held["token"]})  # fmt: skip
        status, _, first = await parked[0]
        assert status == 200 and first["holder"] == "w0"
        for waiter in parked[1:]:
            waiter.cancel()
        await asyncio.gather(*parked, return_exceptions=True)
    await wait_until(lambda: len(node.service.waiting) == 0, "the waiters gone")


async def test_waiters_parked_through_a_follower_leave_its_forwarding_working(
    nodes: Factory,
) -> None:
    """150 waiters parked through one follower (relayed over the peer link; when they were
    proxied, aiohttp's pool cap of 100 starved the rest): another client's relayed acquire
    is still served, and the 151st waiter is refused 429 — by the follower, which counts the
    waiters it relays, or by the primary — and counted once."""
    cluster = await nodes(3, limits=Limits(waiters_per_name_max=150), election_timeout_s=2.0,
                          heartbeat_s=0.1)
    primary = await stable_primary(cluster)
    follower = next(n for n in cluster if n is not primary)
    url = f"{follower.url}/v1/leases/crowded:acquire"
    async with client("127.0.0.2") as crowd, client("127.0.0.3") as other:
        status, _, _ = await call(crowd, "POST", url, {"holder": "h", "ttl": 30})
        assert status == 200
        parked: list[asyncio.Future[Any]] = []
        for batch in range(6):  # 25 connections at a time: within the listeners' backlog
            parked += [asyncio.ensure_future(call(crowd, "POST", url,
                                                  {"holder": f"w{i}", "ttl": 5, "wait": 30}))
                       for i in range(25 * batch, 25 * batch + 25)]  # fmt: skip
            await wait_until(lambda: primary.service.replica.status().waiters == len(parked),
                             f"{len(parked)} parked", 20)  # fmt: skip
        await served_meanwhile(other, follower.url, "crowded/other")
        status, headers, body = await call(other, "POST", url,
                                           {"holder": "late", "ttl": 5, "wait": 30})  # fmt: skip
        assert_too_many(status, headers, body, "waiters_per_name")
        assert (headers["X-Paxlock-Node"], headers["X-Paxlock-Primary"]) == (
            follower.config.node_id, primary.config.node_id)
        assert refusals(primary, "waiters_per_name") + refusals(follower, "waiters_per_name") == 1
        for waiter in parked:
            waiter.cancel()
        await asyncio.gather(*parked, return_exceptions=True)


# -- connections ------------------------------------------------------------------------------


async def test_a_trickled_header_is_closed_within_the_header_timeout(nodes: Factory) -> None:
    (node,) = await nodes(1, limits=Limits(header_timeout_s=1.0, body_timeout_s=1.0))
    port = int(node.url.rsplit(":", 1)[1])
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    silent = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /v1/cluster HTTP/1.1\r\n")
    closed_after = None
    async with client("127.0.0.2") as other:
        for _ in range(50):  # a header line every 0.2 s: aiohttp alone waits for ever
            await served_meanwhile(other, node.url, "slowloris/other")
            await asyncio.sleep(0.2)  # the attack's pace, not a synchronisation
            if reader.at_eof() or writer.is_closing():
                break
            try:
                writer.write(b"X-Trickle: 1\r\n")
                await writer.drain()
            except ConnectionError:
                break
            if await at_eof(reader):
                break
        closed_after = time.monotonic() - started
    assert closed_after < 3.0, closed_after  # header timeout 1 s, the trickle's pace 0.2 s
    assert await at_eof(silent[0], 2.0)  # a connection that sends nothing at all, too
    writer.close()
    silent[1].close()
    assert refusals(node, "header_timeout") == 2


async def test_a_trickled_body_is_closed_within_the_body_timeout(nodes: Factory) -> None:
    (node,) = await nodes(1, limits=Limits(body_timeout_s=1.0))
    port = int(node.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    writer.write(b"POST /v1/leases/b:acquire HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                 b"Content-Type: application/json\r\n\r\n{")  # fmt: skip
    assert await at_eof(reader, 5.0)
    assert time.monotonic() - started < 3.0
    writer.close()
    assert refusals(node, "body_timeout") == 1
    async with client() as session:  # a keep-alive connection between requests stays open
        for _ in range(2):
            await served_meanwhile(session, node.url, "body/other")


async def test_a_websocket_peer_link_outlives_the_header_timeout(nodes: Factory) -> None:
    """The peer links are upgraded connections: the guard must leave them alone."""
    cluster = await nodes(3, limits=Limits(header_timeout_s=0.3))
    await asyncio.sleep(1.0)  # three header timeouts pass, the cluster stays one
    assert refusals(cluster[0], "header_timeout") == 0
    async with client() as session:
        for node in cluster:
            await served_meanwhile(session, node.url, f"ws/{node.config.node_id}")


@pytest.mark.parametrize("raw, what", [
    (b"GET /v1/le\x00ases/a HTTP/1.1\r\nHost: x\r\n\r\n", "NUL in the path"),
    (b"GET /v1/leases/a HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
     "a header over 8 KiB"),
    (b"POST /v1/leases/a:acquire HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "conflicting lengths"),
])  # fmt: skip
async def test_errors_of_the_http_parser_have_the_json_shape(nodes: Factory, raw: bytes,
                                                             what: str) -> None:  # fmt: skip
    (node,) = await nodes(1)
    reader, writer = await asyncio.open_connection("127.0.0.1", int(node.url.rsplit(":", 1)[1]))
    writer.write(raw)
    answer = await asyncio.wait_for(reader.read(), 5.0)
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.") and b" 400 " in head.split(b"\r\n")[0], (what, answer)
    assert b"Content-Type: application/json" in head, (what, head)
    payload = json.loads(body)
    assert payload["error"] == "bad_request", payload
    assert payload["message"].startswith("malformed HTTP request: "), payload
    assert "\n" not in payload["message"]


async def test_a_stalled_event_stream_reader_is_cut_off(nodes: Factory) -> None:
    (node,) = await nodes(1, limits=Limits(stream_write_timeout_s=0.5))
    port = int(node.url.rsplit(":", 1)[1])
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    stalled.setblocking(False)
    await asyncio.get_running_loop().sock_connect(stalled, ("127.0.0.1", port))
    stalled.send(b"GET /v1/elections/feed:observe HTTP/1.1\r\nHost: x\r\n"
                 b"Accept: text/event-stream\r\n\r\n")  # fmt: skip
    await wait_until(lambda: node.app[LIMITER].streams_open == 1, "the stream open")
    leader = await node.service.acquire("feed", holder="c", ttl=60)
    value = "v" * 4000
    deadline = time.monotonic() + 20
    async with client("127.0.0.2") as other:
        for i in range(100_000):  # changes until the unread stream is cut (never read above)
            await node.service.proclaim("feed", holder="c", token=leader.token,
                                        value=f"{i}{value}")  # fmt: skip
            if refusals(node, "slow_reader") or time.monotonic() > deadline:
                break
            if i % 200 == 0:
                await served_meanwhile(other, node.url, "feed/other")
    assert refusals(node, "slow_reader") == 1
    await wait_until(lambda: node.app[LIMITER].streams_open == 0, "the stream closed")
    stalled.close()


# -- helpers ----------------------------------------------------------------------------------


async def stable_primary(cluster: list[Node]) -> Node:
    """The primary once it is in office and every member names it (a first primary may step
    down while the others start: a follower's view from before that would be stale)."""

    def agreed() -> Node | None:
        named = {node.service.known_primary() for node in cluster}
        primary = next((n for n in cluster if {n.config.node_id} == named), None)
        return primary if primary is not None and primary.service.readiness()[1] == "primary" \
            else None  # fmt: skip

    await wait_until(lambda: agreed() is not None, "a primary every member names")
    primary = agreed()
    assert primary is not None
    return primary


async def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.01)  # polling in-process state; the server runs meanwhile


async def at_eof(reader: asyncio.StreamReader, timeout_s: float = 0.0) -> bool:
    """True once the server closed the connection (read returns b"" or the reset)."""
    try:
        data = await asyncio.wait_for(reader.read(1024), timeout_s) if timeout_s else (
            await asyncio.wait_for(reader.read(1024), 0.01))  # fmt: skip
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    return data == b""

