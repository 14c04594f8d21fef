"""Peer frames are decoded as hostile input (issue 12, the forged-frame table): every field
has bounds where it is decoded, so a forged frame is dropped before it reaches the core or
the store. The frames below each did real damage before: a ballot whose successor cannot be
encoded, promised durably by every node (the cluster bricked for good); a slot that overflows
SQLite's integer; millions of messages in one frame (a loop stalled for 13 s).

Before any frame, the handshake: only a configured member other than this node, with the
cluster token when one is set, may open the peer WebSocket; a refusal is a JSON 401/403,
counted and logged without flooding the log. And the sender side: a sender task that dies
of a bug is logged, counted and restarted (it used to die silently: a member no peer heard
from again)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from paxlock.api.server import peer
from paxlock.api.server.peer import (
    FRAME_MESSAGES_MAX,
    NODE_HEADER,
    TOKEN_HEADER,
    WS_PATH,
    Authenticator,
    PeerTransport,
    Refusal,
    Throttle,
    authenticate_peer,
    decode_batch,
    encode_batch,
    websocket_handler,
)
from paxlock.coordinator.core.ballot import ROUND_MAX, Ballot
from paxlock.coordinator.core.messages import (
    NOOP,
    SLOT_MAX,
    Accept,
    Batch,
    CatchupReply,
    ChosenEntry,
    Envelope,
    Heartbeat,
    Message,
    Prepare,
    PreVote,
)
from paxlock.coordinator.metrics import Metrics

FORGED: dict[str, list[Message]] = {
    "a ballot whose successor cannot be encoded": [Accept(Ballot(2**64 - 1, "zz"), 1, NOOP, 0)],
    "a ballot round just above the bound": [Prepare(Ballot(ROUND_MAX + 1, "n9"), 1)],
    "a slot beyond SQLite's integer": [Accept(Ballot(1, "n1"), 2**63, NOOP, 0)],
    "a chosen index beyond the bound": [Heartbeat(Ballot(1, "n1"), SLOT_MAX + 1, 1)],
    "a negative slot": [Accept(Ballot(1, "n1"), -1, NOOP, 0)],
    "a node id of 10 kB": [Prepare(Ballot(1, "n" * 10_000), 1)],
    "too many messages in one frame": [PreVote(1)] * (FRAME_MESSAGES_MAX + 1),
    "a batch of too many commands": [Accept(Ballot(1, "n1"), 1, Batch((b"x",) * 70_000), 0)],
    "a catch-up reply of too many entries": [
        CatchupReply(tuple(ChosenEntry(s, NOOP) for s in range(1, 70_002)), 70_001)],
}  # fmt: skip


def encode_unchecked(messages: list[Message]) -> bytes:
    """Encoding checks nothing (only decoding does), as a forger's encoder would."""
    return msgspec.msgpack.encode(messages)


@pytest.mark.parametrize("case", list(FORGED))
def test_a_forged_frame_is_refused_where_it_is_decoded(case: str) -> None:
    with pytest.raises(msgspec.ValidationError):
        decode_batch(encode_unchecked(FORGED[case]))


def test_honest_frames_at_the_bounds_decode() -> None:
    frame = [Accept(Ballot(ROUND_MAX, "n1"), SLOT_MAX, Batch((b"c",) * 512), SLOT_MAX),
             Heartbeat(Ballot(7, "n2"), 12, 3), PreVote(ROUND_MAX)]  # fmt: skip
    assert decode_batch(encode_batch(frame)) == frame


# -- the handshake: who may send frames ------------------------------------------------------

MEMBERS = ("n1", "n2", "n3")


def handshake(headers: dict[str, str], *, token: str | None = None,
              authenticator: Authenticator | None = None) -> str | Refusal:  # fmt: skip
    request = make_mocked_request("GET", WS_PATH, headers=headers)
    return authenticate_peer(request, node_id="n1", members=MEMBERS, cluster_token=token,
                             authenticator=authenticator)  # fmt: skip


@pytest.mark.parametrize(
    ("headers", "token", "status", "reason"),
    [
        ({NODE_HEADER: "n2"}, "s3cret", 401, "token"),
        ({NODE_HEADER: "n2", TOKEN_HEADER: "s3cre"}, "s3cret", 401, "token"),
        ({NODE_HEADER: "n1"}, None, 403, "self"),
        ({NODE_HEADER: "n9"}, None, 403, "not_member"),
        ({}, None, 403, "not_member"),
        ({NODE_HEADER: "n9", TOKEN_HEADER: "s3cret"}, "s3cret", 403, "not_member"),
    ],
)  # fmt: skip
def test_a_handshake_that_proves_no_other_member_is_refused(
    headers: dict[str, str], token: str | None, status: int, reason: str
) -> None:
    refusal = handshake(headers, token=token)
    assert isinstance(refusal, Refusal)
    assert (refusal.status, refusal.reason) == (status, reason)


def test_a_member_with_the_token_is_the_member_it_names() -> None:
    assert handshake({NODE_HEADER: "n3", TOKEN_HEADER: "s3cret"}, token="s3cret") == "n3"
    assert handshake({NODE_HEADER: "n2"}) == "n2"  # no token configured: the claim stands


def test_an_authenticator_proves_the_member_and_overrides_the_claim() -> None:
    def by_certificate(proven: str | None) -> Authenticator:
        return lambda request: proven

    assert handshake({}, authenticator=by_certificate("n2")) == "n2"
    assert handshake({NODE_HEADER: "n2"}, authenticator=by_certificate("n2")) == "n2"
    no_cert = handshake({NODE_HEADER: "n2"}, authenticator=by_certificate(None))
    assert isinstance(no_cert, Refusal) and (no_cert.status, no_cert.reason) == (401, "certificate")
    other = handshake({NODE_HEADER: "n3"}, authenticator=by_certificate("n2"))
    assert isinstance(other, Refusal) and (other.status, other.reason) == (403, "mismatch")
    outsider = handshake({}, authenticator=by_certificate("n7"))
    assert isinstance(outsider, Refusal) and outsider.reason == "not_member"


def test_the_log_throttle_holds_back_a_flood_and_counts_it() -> None:
    now = [0.0]
    throttle = Throttle(every_s=5.0, clock=lambda: now[0])
    assert throttle.due("refused:token") == 0
    assert [throttle.due("refused:token") for _ in range(99)] == [None] * 99
    assert throttle.due("refused:self") == 0  # another kind has its own line
    now[0] = 5.0
    assert throttle.due("refused:token") == 99


class Recorder:
    """Stands in for the module's logger: every event, its level and its fields."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Callable[..., None]:
        return lambda event, **fields: self.events.append((level, event, fields))

    def named(self, event: str) -> list[dict[str, Any]]:
        return [fields for _, name, fields in self.events if name == event]


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder()
    monkeypatch.setattr(peer, "log", recorder)
    return recorder


@pytest.fixture
async def inbound() -> AsyncIterator[tuple[TestClient[Any, Any], Metrics, list[Any]]]:
    """Node n1's peer endpoint alone (token ``s3cret``), delivering into a list."""
    metrics = Metrics("n1")
    delivered: list[tuple[str, list[Message]]] = []
    app = web.Application()
    app.router.add_get(WS_PATH, websocket_handler(
        "n1", "s3cret", lambda src, msgs: delivered.append((src, msgs)), members=MEMBERS,
        metrics=metrics))  # fmt: skip
    client = TestClient(TestServer(app))
    await client.start_server()
    yield client, metrics, delivered
    await client.close()


def refused(metrics: Metrics, reason: str) -> float | None:
    return metrics.registry.get_sample_value("paxlock_peer_refused_total", {"reason": reason})


async def test_a_refused_handshake_is_a_json_error_counted_and_logged_once(
    inbound: Any, recorder: Recorder
) -> None:
    client, metrics, delivered = inbound
    assert refused(metrics, "not_member") == 0  # present from the start, for dashboards
    for _ in range(20):
        async with client.get(WS_PATH, headers={NODE_HEADER: "n2"}) as resp:
            assert resp.status == 401
            assert (await resp.json())["error"] == "unauthenticated"
    async with client.get(WS_PATH, headers={NODE_HEADER: "zz", TOKEN_HEADER: "s3cret"}) as resp:
        assert resp.status == 403
        assert await resp.json() == {"error": "forbidden",
                                     "message": "X-Paxlock-Node 'zz' is not a member"}
    assert refused(metrics, "token") == 20 and refused(metrics, "not_member") == 1
    assert [f["reason"] for f in recorder.named("peer_refused")] == ["token", "not_member"]
    with pytest.raises(aiohttp.WSServerHandshakeError) as error:
        await client.ws_connect(WS_PATH, headers={NODE_HEADER: "n1", TOKEN_HEADER: "s3cret"})
    assert error.value.status == 403 and refused(metrics, "self") == 1
    assert delivered == []


async def test_a_members_bad_frame_is_dropped_and_counted_and_the_next_one_delivered(
    inbound: Any, recorder: Recorder
) -> None:
    client, metrics, delivered = inbound
    good = [PreVote(3)]
    ws = await client.ws_connect(WS_PATH, headers={NODE_HEADER: "n2", TOKEN_HEADER: "s3cret"})
    await ws.send_bytes(encode_unchecked(FORGED["a ballot whose successor cannot be encoded"]))
    await ws.send_bytes(b"\xc1 not msgpack")
    await ws.send_str("text")
    await ws.send_bytes(encode_batch(good))
    await ws.close()
    await wait_until(lambda: delivered, "the good frame delivered")
    assert delivered == [("n2", good)]
    dropped = metrics.registry.get_sample_value
    assert dropped("paxlock_peer_frames_dropped_total", {"reason": "invalid"}) == 2
    assert dropped("paxlock_peer_frames_dropped_total", {"reason": "not_binary"}) == 1
    assert len(recorder.named("peer_bad_frame")) == 2  # one per kind; the second invalid held


async def wait_until(condition: Callable[[], Any], what: str, timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)  # polling a local condition


# -- the sender: supervised, never silently dead ---------------------------------------------


@pytest.mark.parametrize("fault", ["encoder", "write"])
async def test_a_sender_that_dies_is_logged_counted_and_restarted(
    inbound: Any, recorder: Recorder, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    client, _, delivered = inbound
    metrics = Metrics("n2")
    transport = PeerTransport("n2", {"n1": str(client.make_url("/")), "n2": "http://x:1"},
                              cluster_token="s3cret", metrics=metrics)  # fmt: skip
    failures = [RuntimeError(f"planted {fault} fault")]

    def once(real: Callable[..., Any]) -> Callable[..., Any]:
        def fail_once(*args: Any) -> Any:
            if failures:
                raise failures.pop()
            return real(*args)

        return fail_once

    if fault == "encoder":
        monkeypatch.setattr(peer, "encode_batch", once(peer.encode_batch))
    else:
        real_send = aiohttp.ClientWebSocketResponse.send_bytes
        monkeypatch.setattr(aiohttp.ClientWebSocketResponse, "send_bytes", once(real_send))
    await transport.start()
    try:
        transport.send([Envelope("n2", "n1", PreVote(1))])  # lost with the dying sender
        await wait_until(lambda: not failures, "the planted fault")
        for round_ in range(2, 200):  # until the restarted sender delivers
            transport.send([Envelope("n2", "n1", PreVote(round_))])
            await asyncio.sleep(0.01)  # pacing the sends, not synchronisation
            if delivered:
                break
        await wait_until(lambda: delivered, "a frame from the restarted sender")
    finally:
        await transport.stop()
    (crash,) = recorder.named("peer_sender_crashed")
    assert crash["peer"] == "n1" and f"planted {fault} fault" in crash["error"]
    assert metrics.registry.get_sample_value("paxlock_peer_sender_restarts_total",
                                             {"peer": "n1"}) == 1  # fmt: skip
    assert all(src == "n2" for src, _ in delivered)
    assert PreVote(1) not in [m for _, msgs in delivered for m in msgs]
