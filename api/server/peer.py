"""The peer transport: one persistent WebSocket per peer, carrying batches of messages.

Each node dials every peer and sends on that connection only; replies come back over the
peer's own connection. Everything queued for a peer while the previous frame was being
written goes out as one frame (message batching). The queue is bounded and drops the oldest
messages when full: Paxos tolerates loss, and retransmission covers it.

The inbound handshake is the peer channel's edge (issue 12): a sender must be a configured
member other than this node, with the cluster token when one is set (and, with an extra
authenticator such as a client certificate, proven to be the member it names). Then member
identity (issue 13): it names the cluster id and its member incarnation, and is refused
unless the cluster is this node's and the schedule knows the incarnation — a wiped and
restarted store, a removed member, another cluster's member. A node still bootstrapping
accepts no peer at all (503). A refused handshake is a JSON 401/403/503, counted and logged
(throttled); frames from an accepted member are decoded as hostile input, and a frame that
fails is dropped and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, NoReturn

import aiohttp
import msgspec
from aiohttp import web

from paxlock._logs import get_logger
from paxlock.api.client.transport import why_no_answer
from paxlock.api.server.errors import error_response
from paxlock.coordinator.core.messages import Envelope, Message
from paxlock.coordinator.relay import RelayMessage

if TYPE_CHECKING:
    from paxlock.coordinator.metrics import Metrics

log = get_logger("paxlock.peer")

WS_PATH = "/internal/ws"
NODE_HEADER = "X-Paxlock-Node"
TOKEN_HEADER = "X-Paxlock-Cluster-Token"
CLUSTER_HEADER = "X-Paxlock-Cluster-Id"
INCARNATION_HEADER = "X-Paxlock-Incarnation"
QUEUE_MAX = 20_000
RECONNECT_S_MAX = 0.5
RESTART_S_MIN = 0.05
RESTART_S_MAX = 5.0
"""A sender that died is restarted after a backoff between these (doubling per crash)."""
RESTART_RESET_S = 30.0
"""A sender that ran this long before dying starts its backoff over."""
LOG_EVERY_S = 5.0
"""At most one warning per kind of refusal or drop in this long; the rest are counted."""
FRAME_BYTES_MAX = 64 * 1024 * 1024

_encoder = msgspec.msgpack.Encoder()
FRAME_MESSAGES_MAX = 100_000
"""Messages in one frame: a sender's flush holds a few hundred; three million PreVotes in one
frame stalled a node's loop for 13 s."""
PeerMessage = Message | RelayMessage
"""What a frame carries: the Paxos messages, and lease requests a follower relays to the
primary with their replies (``coordinator.relay``)."""
_decoder = msgspec.msgpack.Decoder(
    Annotated[list[PeerMessage], msgspec.Meta(max_length=FRAME_MESSAGES_MAX)]
)

Authenticator = Callable[[web.Request], "str | None"]
"""The member a request proves to be beyond its headers (mutual TLS: the member named by its
client certificate), or None when it proves none."""

REFUSAL_REASONS = ("token", "certificate", "mismatch", "self", "not_member",
                   "unknown_cluster", "unknown_incarnation")  # fmt: skip
Knows = Callable[[str, str], bool]
"""Whether a (member id, incarnation) is one this node's schedule knows."""
DROP_REASONS = ("invalid", "not_binary")


def encode_batch(messages: Sequence[PeerMessage]) -> bytes:
    return _encoder.encode(list(messages))


def decode_batch(frame: bytes) -> list[PeerMessage]:
    """A peer's frame as hostile input: every field is checked against its bounds here
    (``msgspec.ValidationError``, a ``DecodeError``), so a forged or corrupt frame is a
    dropped frame, never an exception deep inside the core or the store."""
    return _decoder.decode(frame)


def token_ok(request: web.Request, token: str | None) -> bool:
    if not token:
        return True
    offered = request.headers.get(TOKEN_HEADER, "")
    return hmac.compare_digest(offered.encode(), token.encode())


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a peer handshake is refused: 401 (no credential) or 403 (not a member we accept);
    ``reason`` is the label of ``paxlock_peer_refused_total``."""

    status: int
    reason: str
    message: str


def authenticate_peer(request: web.Request, *, node_id: str, members: Collection[str],
                      cluster_token: str | None, authenticator: Authenticator | None = None
                      ) -> str | Refusal:  # fmt: skip
    """The member a ``/internal/ws`` handshake proves it is, or why it is refused.

    The cluster token (when set) proves membership of the cluster; ``authenticator`` (when
    given) proves which member, and the named one must match it. Without either, the named
    member is only a claim: the frame bounds and the core's own checks are what hold then."""
    if not token_ok(request, cluster_token):
        return Refusal(401, "token", f"missing or wrong {TOKEN_HEADER}")
    claimed = request.headers.get(NODE_HEADER, "")
    if authenticator is not None:
        proven = authenticator(request)
        if proven is None:
            return Refusal(401, "certificate", "no client certificate of a member")
        if claimed and claimed != proven:
            return Refusal(403, "mismatch", f"{NODE_HEADER} {claimed[:64]!r} is not "
                                            f"{proven[:64]!r}, the member proven")  # fmt: skip
        claimed = proven
    if claimed == node_id:
        return Refusal(403, "self", f"{NODE_HEADER} {claimed!r} is this node itself")
    if claimed not in members:
        return Refusal(403, "not_member", f"{NODE_HEADER} {claimed[:64]!r} is not a member")
    return claimed


def check_identity(request: web.Request, member: str | None, *, cluster_id: str,
                   knows: Knows) -> Refusal | None:  # fmt: skip
    """Member identity, after ``authenticate_peer``: the cluster id must be this node's and
    the incarnation of ``member`` (unless None) one its schedule knows."""
    offered = request.headers.get(CLUSTER_HEADER, "")
    if not hmac.compare_digest(offered.encode(), cluster_id.encode()):
        return Refusal(403, "unknown_cluster", f"{CLUSTER_HEADER} {offered[:64]!r} is not "
                                               f"this cluster ({cluster_id})")  # fmt: skip
    incarnation = request.headers.get(INCARNATION_HEADER, "")
    if member is not None and not knows(member, incarnation):
        return Refusal(403, "unknown_incarnation", f"{member} incarnation {incarnation[:64]!r} "
                       f"is in no configuration of this cluster (a store made again, or a "
                       f"removed member: paxlock member add)")  # fmt: skip
    return None


class Throttle:
    """At most one log line per key every ``every_s``: a flood of refused handshakes or bad
    frames must not flood the log. ``due(key)`` is None while held back, else the count of
    lines held back since the last one. Keys are a fixed small set (reasons, peers)."""

    def __init__(self, every_s: float = LOG_EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.every_s = every_s
        self.clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def due(self, key: str) -> int | None:
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.every_s:
            self._held[key] = self._held.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._held.pop(key, 0)


class _Link:
    """The outbound half of one peer connection."""

    def __init__(self, peer: str, url: str) -> None:
        self.peer = peer
        self.url = url.rstrip("/") + WS_PATH
        self.queue: deque[PeerMessage] = deque(maxlen=QUEUE_MAX)
        self.ready = asyncio.Event()
        self.dropped = 0
        self.restarts = 0


class PeerTransport:
    """Implements ``coordinator.ports.Transport`` over aiohttp WebSockets. ``ssl_context`` is
    used to dial ``https://`` peers (None: the default verification)."""

    def __init__(self, node_id: str, peers: dict[str, str], *, cluster_token: str | None,
                 on_frame: Callable[[int], None] | None = None,
                 metrics: Metrics | None = None,
                 ssl_context: ssl.SSLContext | None = None,
                 cluster_id: str | None = None, incarnation: str | None = None) -> None:  # fmt: skip
        self.node_id = node_id
        self.token = cluster_token
        self.identity = {CLUSTER_HEADER: cluster_id or "", INCARNATION_HEADER: incarnation or ""}
        """Sent with every handshake (``check_identity`` on the other side)."""
        self.ssl_context = ssl_context
        """This node's certificate and the cluster's CA, for ``https://`` peers (api.server.tls)."""
        self.links = {peer: _Link(peer, url) for peer, url in peers.items() if peer != node_id}
        self._session: aiohttp.ClientSession | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        self.on_frame = on_frame
        self.metrics = metrics
        self.ssl_context = ssl_context
        self._throttle = Throttle()
        self.on_unreachable: Callable[[str, str], None] | None = None
        """Called with a peer's id and why (``connection refused``) when its link fails:
        the requests relayed to it fail at once."""

    def send(self, envelopes: Sequence[Envelope]) -> None:
        for envelope in envelopes:
            self.send_message(envelope.dst, envelope.msg)

    def send_message(self, peer: str, message: PeerMessage) -> None:
        """Queue one message for ``peer`` (a relayed request or its reply); dropped when
        ``peer`` is not a member this node talks to."""
        link = self.links.get(peer)
        if link is None:
            return
        if len(link.queue) == link.queue.maxlen:
            link.dropped += 1
        link.queue.append(message)
        link.ready.set()

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, connect=1.0),
        )
        for link in self.links.values():
            self._start_sender(link)

    def _start_sender(self, link: _Link) -> None:
        self._tasks[link.peer] = asyncio.create_task(self._supervise(link),
                                                     name=f"paxlock-peer-{link.peer}")

    def set_peers(self, urls: dict[str, str]) -> None:
        """The members to talk to now (id -> URL; this node's own entry is ignored): a
        sender starts for each new member or new URL, and stops for each one gone."""
        wanted = {peer: url for peer, url in urls.items() if peer != self.node_id}
        for peer, link in list(self.links.items()):
            if wanted.get(peer, "").rstrip("/") + WS_PATH != link.url:
                del self.links[peer]
                task = self._tasks.pop(peer, None)
                if task is not None:
                    task.cancel()
                    self._stopping.add(task)  # awaited by stop()
                    task.add_done_callback(self._stopping.discard)
        for peer, url in wanted.items():
            if peer not in self.links:
                self.links[peer] = link = _Link(peer, url)
                if self._session is not None:
                    self._start_sender(link)

    async def stop(self) -> None:
        tasks = [*self._tasks.values(), *self._stopping]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = {}
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _supervise(self, link: _Link) -> NoReturn:
        """Keep the link's sender running: one that dies of an unexpected error (a bug, a
        value the encoder cannot take) is logged with the error, counted and restarted after
        a backoff. A sender that died silently was a member no peer heard from again."""
        loop = asyncio.get_running_loop()
        restart_s = RESTART_S_MIN
        while True:
            started = loop.time()
            try:
                await self._pump(link)
            except Exception as error:  # not CancelledError (a BaseException): stop() works
                link.restarts += 1
                if self.metrics is not None:
                    self.metrics.peer_sender_restarts.labels(peer=link.peer).inc()
                if loop.time() - started > RESTART_RESET_S:
                    restart_s = RESTART_S_MIN
                log.error("peer_sender_crashed", peer=link.peer, error=repr(error),
                          restart_in_s=restart_s, exc_info=error)  # fmt: skip
            await asyncio.sleep(restart_s)  # restart backoff, not synchronisation
            restart_s = min(restart_s * 2, RESTART_S_MAX)

    async def _pump(self, link: _Link) -> NoReturn:
        assert self._session is not None
        headers = {NODE_HEADER: self.node_id, **self.identity}
        if self.token:
            headers[TOKEN_HEADER] = self.token
        backoff = 0.02
        while True:
            try:
                async with self._session.ws_connect(
                    link.url, headers=headers, heartbeat=5.0, max_msg_size=FRAME_BYTES_MAX,
                    ssl=self.ssl_context if self.ssl_context is not None else True,
                ) as ws:
                    backoff = 0.02
                    await self._write_frames(link, ws)
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as error:
                self._unreachable(link, error)
            await asyncio.sleep(backoff)  # reconnect backoff, not synchronisation
            backoff = min(backoff * 2, RECONNECT_S_MAX)

    def _unreachable(self, link: _Link, error: BaseException) -> None:
        status = error.status if isinstance(error, aiohttp.WSServerHandshakeError) else None
        if status in (401, 403):  # a misconfigured member (token, id): say so, not at debug
            held = self._throttle.due(link.peer)
            if held is not None:
                log.warning("peer_refused_us", peer=link.peer, status=status, held_back=held)
        else:
            log.debug("peer_unreachable", peer=link.peer, error=repr(error))
        # What was queued for a peer that cannot be reached is stale by the time it
        # returns (retransmission and catch-up cover it): drop it, do not replay it.
        link.dropped += len(link.queue)
        link.queue.clear()
        if self.on_unreachable is not None:
            self.on_unreachable(link.peer, why_no_answer(error))

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
    deliver: Callable[[str, list[PeerMessage]], None],
    *,
    members: Collection[str] | Callable[[], Collection[str]],
    metrics: Metrics | None = None,
    authenticator: Authenticator | None = None,
    cluster_id: Callable[[], str | None] | None = None,
    knows: Knows | None = None,
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The inbound half: ``GET /internal/ws`` from a member (``authenticate_peer``, then
    ``check_identity`` when ``cluster_id`` and ``knows`` are given), its frames delivered in
    order; a refused handshake or a dropped frame is counted in
    ``paxlock_peer_refused_total`` / ``paxlock_peer_frames_dropped_total`` and logged.
    ``members`` may be a callable (the members known now); ``cluster_id`` returns None while
    this node bootstraps: every handshake is then a 503."""
    fixed = None if callable(members) else frozenset(members)

    def current_members() -> Collection[str]:
        return fixed if fixed is not None else members()  # type: ignore[operator]
    throttle = Throttle()
    if metrics is not None:  # every reason present from the start, at 0, for dashboards
        for reason in REFUSAL_REASONS:
            metrics.peer_refused.labels(reason=reason)
        for reason in DROP_REASONS:
            metrics.peer_frames_dropped.labels(reason=reason)

    def refuse(request: web.Request, refusal: Refusal) -> web.Response:
        if metrics is not None:
            metrics.peer_refused.labels(reason=refusal.reason).inc()
        held = throttle.due(f"refused:{refusal.reason}")
        if held is not None:
            log.warning("peer_refused", reason=refusal.reason, remote=request.remote,
                        node=request.headers.get(NODE_HEADER, "")[:64], held_back=held)  # fmt: skip
        code = "unauthenticated" if refusal.status == 401 else "forbidden"
        return error_response(refusal.status, code, refusal.message)

    def identity_refusal(request: web.Request, member: str | None) -> web.Response | None:
        """After the credentials: 503 while bootstrapping, else ``check_identity`` (with
        ``member`` None, the cluster id only: another cluster's member may well use a
        member id this cluster does not have, and is told so rather than ``not_member``)."""
        if cluster_id is None or knows is None:
            return None
        ours = cluster_id()
        if ours is None:
            return error_response(503, "unavailable", "bootstrapping: this member has no "
                                  "cluster id yet", details={"reason": "bootstrapping"})
        refusal = check_identity(request, member, cluster_id=ours, knows=knows)
        return None if refusal is None else refuse(request, refusal)

    def drop(src: str, reason: str, error: str) -> None:
        if metrics is not None:
            metrics.peer_frames_dropped.labels(reason=reason).inc()
        held = throttle.due(f"dropped:{reason}")
        if held is not None:
            log.warning("peer_bad_frame", peer=src, reason=reason, error=error[:200],
                        held_back=held)  # fmt: skip

    async def handle(request: web.Request) -> web.StreamResponse:
        src = authenticate_peer(request, node_id=node_id, members=current_members(),
                                cluster_token=cluster_token,
                                authenticator=authenticator)  # fmt: skip
        if isinstance(src, Refusal) and src.reason != "not_member":
            return refuse(request, src)
        refused = identity_refusal(request, None if isinstance(src, Refusal) else src)
        if refused is not None:
            return refused
        if isinstance(src, Refusal):
            return refuse(request, src)
        ws = web.WebSocketResponse(max_msg_size=FRAME_BYTES_MAX, heartbeat=5.0)
        try:
            await ws.prepare(request)
        except ConnectionResetError:  # the peer hung up mid-handshake: it stopped or died
            return ws
        async for frame in ws:
            if frame.type is not aiohttp.WSMsgType.BINARY:
                drop(src, "not_binary", f"a {frame.type.name} frame")
                continue
            try:
                messages = decode_batch(frame.data)
            except msgspec.DecodeError as error:
                drop(src, "invalid", str(error))
                continue
            deliver(src, messages)
        return ws

    return handle
