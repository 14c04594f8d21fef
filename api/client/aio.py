"""The asyncio client SDK: ``AsyncClient``.

    async with AsyncClient(["http://127.0.0.1:7001", "http://127.0.0.1:7002"]) as client:
        async with client.lock("jobs/nightly", ttl=10) as lease:
            await do_work(fencing_token=lease.token)

It talks HTTP only (DESIGN.md §4) and imports nothing of the server. Failover, retries and
idempotency live in ``transport``; holding a grant (renewals, the client's conservative
clock) in ``keepalive``; the objects ``lock`` and ``campaign`` yield in ``holding``;
elections in ``election``. ``sync.Client`` is the same surface for threaded code.

One client is one identity (the ``holder``/``candidate`` string the cluster records), one
connection pool and one event loop. Locks are not reentrant (DESIGN.md §3): two ``lock()``
calls on one name queue behind each other, even within one client.
"""

from __future__ import annotations

import asyncio
import builtins
import os
import secrets
import socket
from collections.abc import Sequence
from types import TracebackType
from typing import Any
from urllib.parse import quote

from paxlock.api.client.coord_calls import CoordinationCalls
from paxlock.api.client.coord_session import HeldSession
from paxlock.api.client.election import Election
from paxlock.api.client.errors import NotFound, PaxlockError
from paxlock.api.client.holding import HeldLease, Holding
from paxlock.api.client.keepalive import LEASES, abandon, end_grant, new_request_id, path_of
from paxlock.api.client.session import Session, bound_ttl
from paxlock.api.client.transport import (
    RetryPolicy, Transport, client_ssl_context, normalize_endpoints,
)  # fmt: skip
from paxlock.api.client.types import (
    Cluster, Configuration, Leader, Lease, Membership, Verification,
)  # fmt: skip

__all__ = ["AsyncClient", "default_identity"]

DEFAULT_TTL_S = 15.0
DEFAULT_MARGIN = 0.2
CLOSE_GRACE_S = 2.0


def default_identity() -> str:
    """``host-pid-abc123``: readable in ``GET /v1/leases``, unique per client object."""
    host = (socket.gethostname() or "host").split(".")[0][:64]
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


class AsyncClient(CoordinationCalls):
    """A paxlock client for asyncio code; see the module docstring. Sessions, semaphores,
    read/write locks and groups come from ``coord_calls.CoordinationCalls``.

    ``endpoints``: one URL, a comma-separated string or a list (``host:port`` works too).
    ``identity``: the holder name recorded by the cluster (default: ``default_identity()``).
    ``request_timeout``: one attempt's timeout (beyond any server-side ``wait``).
    ``retry_deadline``: how long a call retries connection errors and 503s (beyond ``wait``).
    ``ttl``/``margin``: defaults for ``lock`` and ``campaign``.
    ``follow_primary``: send to the primary named by ``X-Paxlock-Primary`` (saves the
    followers' forwarding hop); turn off when members' URLs are not reachable from here.
    ``ca_file``: PEM of the CA that signed the cluster's certificates, for ``https://``
    endpoints (``host:port`` then means ``https://``); without it, the system's CAs.
    ``token``: the bearer token of a cluster run with ``--auth`` (sent as ``Authorization``).
    """

    def __init__(self, endpoints: str | Sequence[str], identity: str | None = None, *,
                 request_timeout: float = 5.0, retry_deadline: float = 10.0,
                 backoff_base: float = 0.05, backoff_max: float = 1.0,
                 ttl: float = DEFAULT_TTL_S, margin: float = DEFAULT_MARGIN,
                 follow_primary: bool = True, ca_file: str | os.PathLike[str] | None = None,
                 token: str | None = None) -> None:  # fmt: skip
        policy = RetryPolicy(request_timeout, retry_deadline, backoff_base, backoff_max)
        self.endpoints = normalize_endpoints(endpoints, "https" if ca_file else "http")
        tls = client_ssl_context(ca_file) if ca_file is not None else None
        self._transport = Transport(self.endpoints, policy, follow_primary=follow_primary,
                                    ssl_context=tls, token=token)  # fmt: skip
        self._session = Session(self._transport,
                                identity if identity is not None else default_identity(),
                                ttl_s=ttl, margin=margin)  # fmt: skip

    @property
    def base(self) -> Session:
        """What recipes are built on (``Election(client.base, name)``, like etcd's
        ``concurrency.NewElection(session, prefix)``): identity, transport, live grants.
        (``session()`` is a cluster session: ``coord_calls``.)"""
        return self._session

    @property
    def default_ttl(self) -> float:
        return self._session.ttl_s_default

    @property
    def default_margin(self) -> float:
        return self._session.margin_default

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:  # fmt: skip
        await self.close()

    async def close(self) -> None:
        """Release what is still held (best effort), stop background work, close sockets."""
        await self._session.close(CLOSE_GRACE_S)

    # -- leases: plain calls -------------------------------------------------------------

    async def acquire(self, name: str, *, ttl: float | None = None, wait: float = 0.0,
                      value: str | None = None, lock_delay: float = 0.0,
                      request_id: str | None = None,
                      session: str | None = None) -> Lease:  # fmt: skip
        """One acquire, waiting up to ``wait`` s (≤ 3600) for the name; ``LeaseHeld`` after.
        Nothing renews the lease: prefer ``lock()``. Retries reuse ``request_id`` (a fresh one
        by default), so a retry returns the first grant instead of conflicting with it. With
        ``session`` (an id), the lease is bound to that session instead of a ttl of its own."""
        transport = self._transport
        lifetime: dict[str, Any] = (
            {"session": session} if session is not None
            else {"ttl": self._session.ttl_margin(ttl, None)[0]}
        )  # fmt: skip
        body = {"holder": self.identity, **lifetime, "wait": wait, "value": value,
                "lock_delay": lock_delay, "request_id": request_id or new_request_id()}  # fmt: skip
        wait_until = transport.now() + max(0.0, wait)
        try:
            raw = await transport.call(
                "POST", path_of(LEASES, name, "acquire"), body=body, wait_until=wait_until,
                deadline=transport.deadline(wait),
            )  # fmt: skip
        except asyncio.CancelledError:
            self._session.tasks.spawn(abandon(transport, LEASES, name, body))
            raise
        return Lease.from_json(raw)

    async def renew(self, name: str, token: int) -> Lease:
        """Restart the lease's TTL (``NotHolder`` if ``token`` is not the current grant)."""
        raw = await self._transport.call(
            "POST", path_of(LEASES, name, "renew"),
            body={"holder": self.identity, "token": token}, deadline=self._transport.deadline(),
        )  # fmt: skip
        return Lease.from_json(raw)

    async def release(self, name: str, token: int, *, request_id: str | None = None) -> None:
        """End the grant ``token`` now (``NotHolder`` if it is not current). Retried like any
        call; a ``NotHolder`` that answers a retry counts as done (see ``end_grant``)."""
        await end_grant(self._transport, LEASES, name, self.identity, token, request_id)

    async def get(self, name: str, *, consistent: bool = True) -> Lease | None:
        """The current lease on ``name``, or None when nobody holds it."""
        params = None if consistent else {"consistent": "false"}
        try:
            raw = await self._transport.call("GET", path_of(LEASES, name), params=params,
                                             deadline=self._transport.deadline())  # fmt: skip
        except NotFound:
            return None
        return Lease.from_json(raw)

    async def list(self, prefix: str = "", *, consistent: bool = True) -> builtins.list[Lease]:
        """Current leases whose name starts with ``prefix``, sorted by name."""
        items = await self._names("/v1/leases", "leases", prefix, consistent)
        return [Lease.from_json(item) for item in items]

    async def _names(self, path: str, key: str, prefix: str,
                     consistent: bool) -> builtins.list[Any]:  # fmt: skip
        """The ``key`` list of ``GET path?prefix=`` (leases or elections)."""
        params = {"prefix": prefix}
        if not consistent:
            params["consistent"] = "false"
        raw = await self._transport.call("GET", path, params=params,
                                         deadline=self._transport.deadline())  # fmt: skip
        items = raw.get(key) if isinstance(raw, dict) else None
        if not isinstance(items, builtins.list):
            raise PaxlockError(f"malformed {key} list from the server: {raw!r:.200}")
        return items

    async def verify(self, name: str, token: int) -> Verification:
        """Is ``token`` still the current grant of ``name``? A resource server's check
        (Chubby's CheckSequencer), linearizable."""
        raw = await self._transport.call(
            "POST", path_of(LEASES, name, "verify"), body={"token": token},
            deadline=self._transport.deadline(),
        )  # fmt: skip
        return Verification.from_json(raw)

    async def cluster(self) -> Cluster:
        """The answering node's view of the cluster."""
        raw = await self._transport.call("GET", "/v1/cluster", deadline=self._transport.deadline())
        return Cluster.from_json(raw)

    # -- members (DESIGN.md §8; a cluster run with --auth needs an admin token to change) ---

    async def members(self) -> Membership:
        """Voters and learners as the answering node sees them (the primary when known)."""
        raw = await self._transport.call("GET", "/v1/members", deadline=self._transport.deadline())
        return Membership.from_json(raw)

    async def add_member(self, member_id: str, url: str) -> Configuration:
        """Add the member that answers at ``url`` (started with ``paxlock serve --join``) as
        a learner; ``Conflict`` when ``url`` answers as another member or cluster, or the
        id is already a member. It votes only once promoted (``promote_member``)."""
        raw = await self._transport.call("POST", "/v1/members",
                                         body={"id": member_id, "url": url},
                                         deadline=self._transport.deadline())  # fmt: skip
        return Configuration.from_json(raw)

    async def promote_member(self, member_id: str) -> Configuration:
        """Make a learner a voter; ``Conflict`` (code ``not_caught_up``) while it lags."""
        raw = await self._transport.call("POST", _member_path(member_id, "promote"),
                                         deadline=self._transport.deadline())  # fmt: skip
        return Configuration.from_json(raw)

    async def remove_member(self, member_id: str) -> Configuration:
        """Remove a voter or a learner; ``NotFound`` when it is not a member."""
        raw = await self._transport.call("DELETE", _member_path(member_id),
                                         deadline=self._transport.deadline())  # fmt: skip
        return Configuration.from_json(raw)

    # -- locks and elections ---------------------------------------------------------------

    def lock(self, name: str, *, ttl: float | None = None, wait: float | None = None,
             value: str | None = None, lock_delay: float = 0.0, margin: float | None = None,
             cancel_on_loss: bool = False,
             session: HeldSession | None = None) -> Holding[HeldLease]:  # fmt: skip
        """``async with client.lock(name) as lease:`` — hold ``name`` for the body.

        Waits for the lock up to ``wait`` seconds (None: for ever; 0: try once), raising
        ``LeaseHeld`` when it elapses; renews every ttl/3 in the background; sets
        ``lease.lost`` at ``t_sent + ttl × (1 − margin)`` unless a renewal moved that;
        releases on exit, exceptions included. ``cancel_on_loss=True`` cancels the body when
        the lease is lost, and the ``async with`` raises ``LeaseLost``. ``lock_delay``: after
        an *expiry* (not a release) the name stays blocked that long (Chubby).
        ``session=s`` (from ``session()``) binds the lease to it instead: no renewal of its
        own, lost when the session is, ended with it at the latest.
        """
        if wait is not None and not wait >= 0:
            raise ValueError(f"wait must be >= 0 seconds or None, not {wait!r}")
        body: dict[str, Any] = {"holder": self.identity, "value": value,
                                "lock_delay": lock_delay}  # fmt: skip
        ttl_s, margin_f = bound_ttl(self._session, body, ttl, margin, session)
        return self._session.hold(LEASES, name, body, parse=Lease.from_json, wrap=HeldLease,
                                  ttl_s=ttl_s, margin=margin_f, wait_s=wait,
                                  cancel_on_loss=cancel_on_loss, bound=session)  # fmt: skip

    def election(self, name: str) -> Election:
        """An election by name: ``campaign``, ``leader``, ``observe``."""
        return Election(self._session, name)

    async def elections(self, prefix: str = "", *,
                        consistent: bool = True) -> builtins.list[Leader]:  # fmt: skip
        """The elections led now whose name starts with ``prefix``, as their leaders, sorted
        by name (leases and elections share one namespace: a held lease is listed too)."""
        items = await self._names("/v1/elections", "elections", prefix, consistent)
        return [Leader.from_json(item) for item in items]

    def __repr__(self) -> str:
        return f"AsyncClient({self.endpoints!r}, identity={self.identity!r})"


def _member_path(member_id: str, verb: str | None = None) -> str:
    """``/v1/members/ID[:verb]``, the id percent-encoded whole (a bad id comes back as the
    server's own 400 or 404)."""
    return f"/v1/members/{quote(member_id, safe='')}" + (f":{verb}" if verb else "")
