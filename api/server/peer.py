"""The peer transport: one persistent WebSocket per peer, carrying batches of messages.

Each node dials every peer and sends on that connection only; replies come back over the
peer's own connection. Everything queued for a peer while the previous frame was being
written goes out as one frame (message batching). The queue is bounded and drops the oldest
messages when full: Paxos tolerates loss, and retransmission covers it. Connections are
authenticated with the cluster token when one is configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated

import aiohttp
import msgspec
from aiohttp import web

from paxlock._logs import get_logger
from paxlock.coordinator.core.messages import Envelope, Message

log = get_logger("paxlock.peer")

WS_PATH = "/internal/ws"
NODE_HEADER = "X-Paxlock-Node"
TOKEN_HEADER = "X-Paxlock-Cluster-Token"
QUEUE_MAX = 20_000
RECONNECT_S_MAX = 0.5

_encoder = msgspec.msgpack.Encoder()
FRAME_MESSAGES_MAX = 100_000
"""Messages in one frame: a sender's flush holds a few hundred; three million PreVotes in one
frame stalled a node's loop for 13 s."""
_decoder = msgspec.msgpack.Decoder(
    Annotated[list[Message], msgspec.Meta(max_length=FRAME_MESSAGES_MAX)]
)


def encode_batch(messages: Sequence[Message]) -> bytes:
    return _encoder.encode(list(messages))


def decode_batch(frame: bytes) -> list[Message]:
    """A peer's frame as hostile input: every field is checked against its bounds here
    (``msgspec.ValidationError``, a ``DecodeError``), so a forged or corrupt frame is a
    dropped frame, never an exception deep inside the core or the store."""
    return _decoder.decode(frame)


def token_ok(request: web.Request, token: str | None) -> bool:
    if not token:
        return True
    offered = request.headers.get(TOKEN_HEADER, "")
    return hmac.compare_digest(offered.encode(), token.encode())


class _Link:
    """The outbound half of one peer connection."""

    def __init__(self, peer: str, url: str) -> None:
        self.peer = peer
        self.url = url.rstrip("/") + WS_PATH
        self.queue: deque[Message] = deque(maxlen=QUEUE_MAX)
        self.ready = asyncio.Event()
        self.dropped = 0


class PeerTransport:
    """Implements ``coordinator.ports.Transport`` over aiohttp WebSockets."""

    def __init__(self, node_id: str, peers: dict[str, str], *, cluster_token: str | None,
                 on_frame: Callable[[int], None] | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:  # fmt: skip
        self.node_id = node_id
        self.token = cluster_token
        self.ssl_context = ssl_context
        """This node's certificate and the cluster's CA, for ``https://`` peers (api.server.tls)."""
        self.links = {peer: _Link(peer, url) for peer, url in peers.items() if peer != node_id}
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.on_frame = on_frame

    def send(self, envelopes: Sequence[Envelope]) -> None:
        for envelope in envelopes:
            link = self.links.get(envelope.dst)
            if link is None:
                continue
            if len(link.queue) == link.queue.maxlen:
                link.dropped += 1
            link.queue.append(envelope.msg)
            link.ready.set()

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, connect=1.0),
        )
        self._tasks = [
            asyncio.create_task(self._pump(link), name=f"paxlock-peer-{link.peer}")
            for link in self.links.values()
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _pump(self, link: _Link) -> None:
        assert self._session is not None
        headers = {NODE_HEADER: self.node_id}
        if self.token:
            headers[TOKEN_HEADER] = self.token
        backoff = 0.02
        while True:
            try:
                async with self._session.ws_connect(
                    link.url, headers=headers, heartbeat=5.0, max_msg_size=64 * 1024 * 1024,
                    ssl=self.ssl_context if self.ssl_context is not None else True,
                ) as ws:
                    backoff = 0.02
                    await self._write_frames(link, ws)
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as error:
                log.debug("peer_unreachable", peer=link.peer, error=repr(error))
                # What was queued for a peer that cannot be reached is stale by the time it
                # returns (retransmission and catch-up cover it): drop it, do not replay it.
                link.dropped += len(link.queue)
                link.queue.clear()
            await asyncio.sleep(backoff)  # reconnect backoff, not synchronisation
            backoff = min(backoff * 2, RECONNECT_S_MAX)

    async def _write_frames(self, link: _Link, ws: aiohttp.ClientWebSocketResponse) -> None:
        while not ws.closed:
            if not link.queue:
                link.ready.clear()
                await link.ready.wait()
            batch = list(link.queue)
            link.queue.clear()
            await ws.send_bytes(encode_batch(batch))
            if self.on_frame is not None:
                self.on_frame(len(batch))


def websocket_handler(
    node_id: str,
    cluster_token: str | None,
    deliver: Callable[[str, list[Message]], None],
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The inbound half: ``GET /internal/ws`` from a peer, frames delivered in order."""

    async def handle(request: web.Request) -> web.StreamResponse:
        if not token_ok(request, cluster_token):
            raise web.HTTPUnauthorized(
                text='{"error": "unauthenticated", "message": "bad cluster token"}',
                content_type="application/json",
            )
        src = request.headers.get(NODE_HEADER, "")
        ws = web.WebSocketResponse(max_msg_size=64 * 1024 * 1024, heartbeat=5.0)
        try:
            await ws.prepare(request)
        except ConnectionResetError:  # the peer hung up mid-handshake: it stopped or died
            return ws
        async for frame in ws:
            if frame.type is not aiohttp.WSMsgType.BINARY:
                continue
            try:
                messages = decode_batch(frame.data)
            except msgspec.DecodeError as error:
                log.warning("peer_bad_frame", peer=src, error=str(error))
                continue
            deliver(src, messages)
        return ws

    return handle
