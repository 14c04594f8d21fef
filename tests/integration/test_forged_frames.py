"""A forged peer frame sent to every member of a real cluster (issue 12's table): the frame
that bricked a cluster for good — an Accept at a ballot whose successor round cannot be
encoded, durably promised by every node — is now dropped where it is decoded, and the cluster
keeps serving and electing."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from typing import Any

import aiohttp
import msgspec

from paxlock.api.server.peer import NODE_HEADER, WS_PATH
from paxlock.coordinator.core.ballot import Ballot
from paxlock.coordinator.core.messages import NOOP, Accept

harness = sys.modules["paxlock_test_harness"]  # registered by tests/conftest.py
http = harness.http
try_http = harness.try_http


async def send_frame(url: str, frame: bytes, claimed: str) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url + WS_PATH, headers={NODE_HEADER: claimed}) as ws:
            await ws.send_bytes(frame)
            await ws.close()


def write_succeeds(cluster: Any, nodes: list[str], name: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    body = {"holder": "after", "ttl": 30, "request_id": f"forged-{name}"}
    while time.monotonic() < deadline:
        for node in nodes:
            answer = try_http("POST", f"{cluster.url(node)}/v1/leases/{name}:acquire", body)
            if answer is not None and answer[0] == 200:
                return True
    return False


def test_a_ballot_at_the_integer_limit_sent_to_every_node_harms_nothing(cluster: Any) -> None:
    primary = cluster.wait_ready()
    frame = msgspec.msgpack.encode([Accept(Ballot(2**64 - 1, "zz"), 1, NOOP, 0)])
    for node in cluster.members:
        asyncio.run(send_frame(cluster.url(node), frame, claimed=primary))
    nodes = list(cluster.members)
    assert write_succeeds(cluster, nodes, "forged/first", 10.0), cluster.logs()
    # and the cluster can still elect: the brick showed only at the next election
    cluster.members[primary].process.send_signal(signal.SIGKILL)
    cluster.members[primary].process.wait(timeout=10)
    survivors = [n for n in nodes if n != primary]
    assert write_succeeds(cluster, survivors, "forged/second", 15.0), cluster.logs()
    assert "peer_bad_frame" in cluster.logs()
