"""Member identity on the peer channel (issue 13, item 1): a handshake names its cluster id
and member incarnation; another cluster, or an incarnation the schedule does not know (a
store made again, a removed member), is refused and counted; a node that is still
bootstrapping accepts no peer. And the sender side: every handshake carries both headers,
and ``set_peers`` follows the members as the configurations change."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from paxlock.api.server.peer import (
    CLUSTER_HEADER, INCARNATION_HEADER, NODE_HEADER, TOKEN_HEADER, WS_PATH, PeerTransport,
    websocket_handler,
)  # fmt: skip
from paxlock.coordinator.core.messages import Envelope, PreVote
from paxlock.coordinator.metrics import Metrics

KNOWN = {("n2", "inc-2"), ("n3", "inc-3")}


class Endpoint:
    """n1's peer endpoint, whose cluster id is None until ``bootstrapped``."""

    def __init__(self) -> None:
        self.cluster_id: str | None = None
        self.metrics = Metrics("n1")
        self.delivered: list[str] = []
        app = web.Application()
        app.router.add_get(WS_PATH, websocket_handler(
            "n1", "tok", lambda src, msgs: self.delivered.append(src),
            members=lambda: ("n1", "n2", "n3"), metrics=self.metrics,
            cluster_id=lambda: self.cluster_id,
            knows=lambda member, incarnation: (member, incarnation) in KNOWN,
        ))  # fmt: skip
        self.client = TestClient(TestServer(app))

    def refused(self, reason: str) -> float | None:
        return self.metrics.registry.get_sample_value("paxlock_peer_refused_total",
                                                      {"reason": reason})  # fmt: skip

    async def handshake(self, member: str, cluster_id: str, incarnation: str) -> int:
        headers = {NODE_HEADER: member, TOKEN_HEADER: "tok", CLUSTER_HEADER: cluster_id,
                   INCARNATION_HEADER: incarnation}  # fmt: skip
        async with self.client.get(WS_PATH, headers=headers) as response:
            if response.status != 400:  # 400: accepted, only not a WebSocket upgrade
                body = await response.json()
                assert set(body) >= {"error", "message"}, body
            return response.status


@pytest.fixture
async def endpoint() -> AsyncIterator[Endpoint]:
    made = Endpoint()
    await made.client.start_server()
    yield made
    await made.client.close()


async def test_a_bootstrapping_node_accepts_no_peer(endpoint: Endpoint) -> None:
    assert await endpoint.handshake("n2", "c1", "inc-2") == 503
    assert await endpoint.handshake("n2", "", "") == 503
    endpoint.cluster_id = "c1"
    assert await endpoint.handshake("n2", "c1", "inc-2") == 400, "past every check"


async def test_another_cluster_and_an_unknown_incarnation_are_refused_and_counted(
    endpoint: Endpoint,
) -> None:
    endpoint.cluster_id = "c1"
    assert endpoint.refused("unknown_cluster") == 0  # present from the start
    assert await endpoint.handshake("n2", "c2", "inc-2") == 403
    assert await endpoint.handshake("n2", "", "inc-2") == 403, "no cluster id at all"
    assert endpoint.refused("unknown_cluster") == 2
    # n2's store was lost and made again: same id, new incarnation
    assert await endpoint.handshake("n2", "c1", "inc-new") == 403
    assert await endpoint.handshake("n3", "c1", "inc-2") == 403, "another member's incarnation"
    assert endpoint.refused("unknown_incarnation") == 2
    assert await endpoint.handshake("n3", "c1", "inc-3") == 400
    assert endpoint.delivered == []


async def test_the_transport_sends_its_identity_and_follows_the_members() -> None:
    """Two stand-in peers record the handshakes; ``set_peers`` adds n4 and drops n2."""
    seen: dict[str, list[dict[str, str]]] = {"n2": [], "n3": [], "n4": []}
    frames: dict[str, asyncio.Event] = {m: asyncio.Event() for m in seen}

    def stand_in(member: str) -> web.Application:
        async def ws(request: web.Request) -> web.StreamResponse:
            seen[member].append(dict(request.headers))
            socket = web.WebSocketResponse()
            await socket.prepare(request)
            async for _ in socket:
                frames[member].set()
            return socket

        app = web.Application()
        app.router.add_get(WS_PATH, ws)
        return app

    servers = {m: TestServer(stand_in(m)) for m in seen}
    for server in servers.values():
        await server.start_server()
    url = {m: str(s.make_url("")) for m, s in servers.items()}
    transport = PeerTransport("n1", {"n1": "http://x:1", "n2": url["n2"], "n3": url["n3"]},
                              cluster_token=None, cluster_id="c1", incarnation="inc-1")
    await transport.start()
    try:
        transport.send([Envelope("n1", "n2", PreVote(1)), Envelope("n1", "n3", PreVote(1))])
        await asyncio.wait_for(asyncio.gather(frames["n2"].wait(), frames["n3"].wait()), 5)
        for headers in (seen["n2"][0], seen["n3"][0]):
            assert (headers[CLUSTER_HEADER], headers[INCARNATION_HEADER]) == ("c1", "inc-1")
        transport.set_peers({"n1": "http://x:1", "n3": url["n3"], "n4": url["n4"]})
        assert sorted(transport.links) == ["n3", "n4"]
        transport.send([Envelope("n1", "n2", PreVote(2)), Envelope("n1", "n4", PreVote(2))])
        await asyncio.wait_for(frames["n4"].wait(), 5)
        assert seen["n4"][0][NODE_HEADER] == "n1"
    finally:
        await transport.stop()
        for server in servers.values():
            await server.close()
    assert transport._tasks == {} and not transport._stopping, "every sender stopped"
