"""The HTTP application of one node: routes, middlewares, forwarding to the primary.

Middlewares, outermost first: HTTP metrics (they see the final status, errors included);
the JSON error shape; the cluster-token check of ``/internal/``; with ``--auth``, bearer
tokens and roles (``auth``); the limits (request rate by the principal ``auth`` set; every
429 of the edge counted and its Retry-After spread); forwarding of ``NotPrimary``.

Forwarding: a node that is not the primary proxies the request — same method, path, query
and body — to the primary over one shared keep-alive ``ClientSession``, and answers with the
primary's status and body plus ``X-Paxlock-Node`` (itself) and ``X-Paxlock-Primary``. The
proxied request carries ``X-Paxlock-Forwarded``; a node that receives a forwarded request and
is not the primary either (a stale hint) answers 503 instead of forwarding again, so a
request crosses at most one hop and no loop can form. The SDK retries 503s. The session's
pool has no cap (aiohttp's default of 100 connections let 100 parked waiters starve every
other forwarded request): what bounds it is what bounds the requests — the primary's limits
on waiters and streams, the rate limit. With a cluster token, a forwarded request carries
``X-Paxlock-Forwarded-Proof`` (an HMAC of the forwarding node's id under the token, not the
token itself: that would make the primary take it for a member's own call under ``--auth``),
so that the primary can trust ``X-Paxlock-Forwarded`` and not count its rate twice.

Embedding: ``create_app`` returns a complete ``web.Application``; a host mounts it with
``host.add_subapp("/paxlock", app)`` and lists base URLs *with* that prefix in ``peers``
(the prefix of this node's own URL is how the app knows where it is mounted).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from yarl import URL

from paxlock.api.client.transport import did_not_answer
from paxlock.api.server.auth import Authenticator, auth_middleware
from paxlock.api.server.errors import error_middleware, error_response
from paxlock.api.server.limits import LIMITER, Limiter, Limits
from paxlock.api.server.members import IDENTITY_OF, MEMBERSHIP, MemberService, identity_fetcher
from paxlock.api.server.peer import NODE_HEADER, TOKEN_HEADER, WS_PATH, token_ok
from paxlock.api.server.routes import (
    METRICS, PRINCIPAL, ROUTE, SERVICE, SSE_HEARTBEAT_S, STREAMS, WAIT_S,
    add_routes, cancel_streams, open_stream,
)
from paxlock.api.server.wire import IDEMPOTENCY_HEADER, MAX_BODY_BYTES
from paxlock.coordinator.errors import NotPrimary, TooMany, Unavailable
from paxlock.coordinator.leasing import Leasing
from paxlock.coordinator.metrics import Metrics

PRIMARY_HEADER = "X-Paxlock-Primary"
FORWARDED_HEADER = "X-Paxlock-Forwarded"
FORWARDED_PROOF_HEADER = "X-Paxlock-Forwarded-Proof"
FORWARD_MARGIN_S = 5.0
"""Proxy timeout beyond the request's own ``wait``/``timeout``: the primary's quorum round."""
FORWARD_CONNECT_S = 1.0
PASSED_HEADERS = ("Content-Type", "Accept", IDEMPOTENCY_HEADER, "Last-Event-ID", "Authorization")
"""Request headers that mean something to the primary; hop-by-hop ones are not passed."""
RETURNED_HEADERS = ("Content-Type", "Retry-After", "Allow", "Cache-Control")


class Forwarder:
    """Proxies requests to the primary; owns the shared session (opened in ``cleanup_ctx``)."""

    def __init__(self, node_id: str, peers: dict[str, str], metrics: Metrics,
                 stream_idle_s: float, ssl_context: ssl.SSLContext | None = None,
                 cluster_token: str | None = None) -> None:  # fmt: skip
        self.node_id = node_id
        self.proof = forwarded_proof(cluster_token, node_id) if cluster_token else None
        self.peers = peers
        """Updated in place by the node as the members change."""
        self.metrics = metrics
        self.stream_idle_s = stream_idle_s
        """A relayed stream silent this long has a dead primary (it sends heartbeats)."""
        self.mount = URL(peers[node_id]).path.rstrip("/") if node_id in peers else ""
        self.session: aiohttp.ClientSession | None = None
        self.ssl_context = ssl_context
        """This node's certificate and the cluster's CA, for an ``https://`` primary."""

    def local_path(self, request: web.Request) -> str:
        """The raw path relative to where this app is mounted (its own URL's path)."""
        raw = request.rel_url.raw_path
        return raw[len(self.mount):] if self.mount and raw.startswith(self.mount) else raw

    def _refusal(self, request: web.Request, primary: str | None) -> str | None:
        """Why this request must not be forwarded, or None when it may."""
        if request.headers.get(FORWARDED_HEADER):
            return f"it was forwarded here by {request.headers[FORWARDED_HEADER]}"
        if primary is None:
            return "no primary known"
        if primary == self.node_id or primary not in self.peers:
            return f"primary {primary!r} is not a peer to forward to"
        return None

    async def forward(self, request: web.Request, primary: str | None) -> web.StreamResponse:
        why = self._refusal(request, primary)
        if why is not None or primary is None:
            self.metrics.http_forwarded.labels(outcome="refused").inc()
            raise Unavailable(f"this node is not the primary, and {why}", primary=primary)
        assert self.session is not None, "forwarding before the app started"
        query = request.rel_url.raw_query_string
        base = self.peers[primary].rstrip("/")
        url = base + self.local_path(request) + (f"?{query}" if query else "")
        headers = {k: request.headers[k] for k in PASSED_HEADERS if k in request.headers}
        headers[FORWARDED_HEADER] = self.node_id
        if self.proof is not None:
            headers[FORWARDED_PROOF_HEADER] = self.proof
        if "text/event-stream" in request.headers.get("Accept", ""):
            timeout = aiohttp.ClientTimeout(connect=FORWARD_CONNECT_S,
                                            sock_read=self.stream_idle_s)  # fmt: skip
        else:
            total = request.get(WAIT_S, 0.0) + FORWARD_MARGIN_S
            timeout = aiohttp.ClientTimeout(total=total, connect=FORWARD_CONNECT_S)
        body = await request.read() if request.body_exists else None
        try:
            async with self.session.request(
                # encoded=True: the path is passed as received, dot-segments included (a
                # name like "a/../b" must reach the primary as that name, not as "b")
                request.method, URL(url, encoded=True), data=body, headers=headers, timeout=timeout,
                allow_redirects=False,
            ) as upstream:  # fmt: skip
                self.metrics.http_forwarded.labels(outcome="ok").inc()
                out = {k: upstream.headers[k] for k in RETURNED_HEADERS if k in upstream.headers}
                out[PRIMARY_HEADER] = primary
                if upstream.content_type == "text/event-stream":
                    return await self._relay(request, upstream, out)
                payload = await upstream.read()
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as error:
            self.metrics.http_forwarded.labels(outcome="unreachable").inc()
            limit_s = timeout.total or timeout.sock_read or FORWARD_CONNECT_S
            message = did_not_answer(f"the primary {primary} at {base}", error,
                                     limit_s)  # fmt: skip
            raise Unavailable(message, primary=primary) from None
        return web.Response(status=upstream.status, body=payload, headers=out)

    async def _relay(self, request: web.Request, upstream: aiohttp.ClientResponse,
                     headers: dict[str, str]) -> web.StreamResponse:  # fmt: skip
        """Copy an event stream chunk by chunk until either side closes."""
        response = web.StreamResponse(status=upstream.status, headers=headers)
        await response.prepare(request)
        try:
            with open_stream(request):
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
        except (aiohttp.ClientError, ConnectionResetError, asyncio.TimeoutError):
            pass  # the primary or the client went away; the client reconnects
        return response


FORWARDER = web.AppKey("paxlock_forwarder", Forwarder)
CLUSTER_TOKEN = web.AppKey("paxlock_cluster_token", str)


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count by route template: the dispatcher's, else the resource's, else ``unmatched``."""
    started = time.perf_counter()
    status = 499  # the handler was cancelled: the client went away (nginx's convention)
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except Exception:
        status = 500
        raise
    finally:
        route = request.get(ROUTE)
        if route is None:
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else "unmatched"
            route = route.removeprefix(request.app[FORWARDER].mount)  # same labels when mounted
        request.app[METRICS].observe_http(
            route, request.method, status, time.perf_counter() - started
        )


def forwarded_proof(cluster_token: str, node_id: str) -> str:
    return hmac.new(cluster_token.encode(), b"paxlock-forwarded:" + node_id.encode(),
                    hashlib.sha256).hexdigest()  # fmt: skip


@web.middleware
async def limits_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The request rate of ``/v1/`` by principal (by client IP without ``--auth``, when a
    rate is given explicitly), counted once: not again at the primary for a request a member
    forwarded. The edge's refusals (rate, streams, waiters per name) are counted and their
    Retry-After spread here."""
    limiter = request.app[LIMITER]
    try:
        if request.app[FORWARDER].local_path(request).startswith("/v1/") \
                and not _forwarded_by_member(request):  # fmt: skip
            limiter.admit(request.get(PRINCIPAL), request.remote)
        return await handler(request)
    except TooMany as error:
        raise limiter.spread(error) from None


def _forwarded_by_member(request: web.Request) -> bool:
    """``X-Paxlock-Forwarded`` with its proof under the cluster token (without a token the
    header proves nothing, and the request is counted here too)."""
    token, forwarder = request.app.get(CLUSTER_TOKEN), request.headers.get(FORWARDED_HEADER)
    if not token or not forwarder:
        return False
    offered = request.headers.get(FORWARDED_PROOF_HEADER, "")
    return hmac.compare_digest(offered.encode(), forwarded_proof(token, forwarder).encode())


@web.middleware
async def internal_auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """``/internal/`` (peer endpoints) needs ``X-Paxlock-Cluster-Token`` when one is set.
    The peer WebSocket checks its own handshake, and counts what it refuses (``peer``)."""
    path = request.app[FORWARDER].local_path(request)
    internal = path.startswith("/internal/") and path != WS_PATH
    if internal and not token_ok(request, request.app.get(CLUSTER_TOKEN)):
        return error_response(401, "unauthenticated", f"missing or wrong {TOKEN_HEADER}")
    return await handler(request)


@web.middleware
async def forwarding_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except NotPrimary as error:
        return await request.app[FORWARDER].forward(request, error.primary)


def _header_stamper(service: Leasing, forwarder: Forwarder
                    ) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:  # fmt: skip
    """Every answer names the node that gave it, and the primary when one is known. A closure,
    not ``request.app[...]``: signals of a mounted sub-app may run with the host as app."""

    async def stamp(request: web.Request, response: web.StreamResponse) -> None:
        response.headers[NODE_HEADER] = service.node_id
        if PRIMARY_HEADER in response.headers:
            return  # set by forwarding: the primary that actually answered
        if forwarder.local_path(request).startswith("/v1/"):
            try:
                primary = service.known_primary()
            except Exception:  # a header is not worth failing the answer for
                primary = None
            if primary is not None:
                response.headers[PRIMARY_HEADER] = str(primary)

    return stamp


async def _client_session(app: web.Application) -> AsyncIterator[None]:
    """One keep-alive session for every forwarded request; closed after the app stops."""
    forwarder = app[FORWARDER]
    tls = forwarder.ssl_context
    forwarder.session = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=None, connect=FORWARD_CONNECT_S),
        # no pool cap (see the module's docstring)
        connector=aiohttp.TCPConnector(limit=0, ssl=tls if tls is not None else True),
    )
    try:
        yield
    finally:
        await forwarder.session.close()
        forwarder.session = None


def create_app(service: Leasing, *, peers: dict[str, str], metrics: Metrics,
               cluster_token: str | None = None, sse_heartbeat_s: float = 15.0,
               ssl_context: ssl.SSLContext | None = None,
               auth: Authenticator | None = None,
               limiter: Limiter | None = None) -> web.Application:  # fmt: skip
    """The node's HTTP app. ``peers`` maps node id to base URL, this node included;
    ``ssl_context`` is what forwarding to an ``https://`` primary uses; ``auth`` (from
    ``--auth``) requires bearer tokens on ``/v1``."""
    forwarder = Forwarder(service.node_id, peers, metrics,
                          stream_idle_s=3 * sse_heartbeat_s + FORWARD_MARGIN_S,
                          ssl_context=ssl_context, cluster_token=cluster_token)  # fmt: skip
    middlewares: list[Middleware] = [
        metrics_middleware, error_middleware, internal_auth_middleware,
    ]  # fmt: skip
    if auth is not None:
        middlewares.append(auth_middleware(auth, forwarder.local_path, cluster_token))
    app = web.Application(
        client_max_size=MAX_BODY_BYTES,
        middlewares=[*middlewares, limits_middleware, forwarding_middleware],
    )
    app[SERVICE] = service
    app[METRICS] = metrics
    app[SSE_HEARTBEAT_S] = sse_heartbeat_s
    app[STREAMS] = set()
    app[LIMITER] = limiter or Limiter(Limits(), metrics)
    app[FORWARDER] = forwarder
    if cluster_token:
        app[CLUSTER_TOKEN] = cluster_token
    if isinstance(service, MemberService):
        app[MEMBERSHIP] = service
    app[IDENTITY_OF] = identity_fetcher(lambda: forwarder.session, cluster_token, ssl_context)
    app.cleanup_ctx.append(_client_session)
    app.on_shutdown.append(cancel_streams)
    app.on_response_prepare.append(_header_stamper(service, forwarder))
    add_routes(app.router)
    return app
