"""In-process lease operations for a program that embeds a ``paxlock.Node``.

On the primary they run directly against the node's ``LeaseService``; on any other member
they are sent to the primary over its HTTP API (the same forwarding the HTTP edge does), so
an embedded caller never has to care which member it lives in.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp

from paxlock.api.server.peer import TOKEN_HEADER
from paxlock.coordinator.errors import (
    BadRequest,
    Forbidden,
    Held,
    LeaseError,
    NotFound,
    NotHolder,
    NotPrimary,
    PayloadTooLarge,
    RequestExpired,
    TooMany,
    Unauthenticated,
    Unavailable,
)
from paxlock.coordinator.service import LeaseService
from paxlock.coordinator.views import LeaseView

T = TypeVar("T")
_ERRORS: dict[str, type[LeaseError]] = {
    "bad_request": BadRequest, "not_found": NotFound, "held": Held, "not_holder": NotHolder,
    "payload_too_large": PayloadTooLarge, "request_expired": RequestExpired,
    "forbidden": Forbidden, "too_many": TooMany, "unauthenticated": Unauthenticated,
}  # fmt: skip


def _view(body: dict[str, Any]) -> LeaseView:
    return LeaseView(body["name"], body.get("holder", body.get("leader")), body.get("token"),
                     body["revision"], body.get("ttl"), body.get("expires_in"),
                     body.get("value"), body.get("lock_delay", 0.0), body.get("session"),
                     body.get("waiters", 0))  # fmt: skip


class EmbeddedLeases:
    def __init__(self, service: LeaseService, peers: dict[str, str],
                 cluster_token: str | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:  # fmt: skip
        self.service = service
        self.ssl_context = ssl_context
        self.headers = {TOKEN_HEADER: cluster_token} if cluster_token else {}
        """A member's call: under ``--auth`` the primary takes the cluster token for it."""
        self.peers = peers
        """Updated in place by the node as the members change."""
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _local_or_remote(self, local: Callable[[], Awaitable[T]], method: str,
                               path: str, body: dict[str, Any] | None,
                               convert: Callable[[Any], T]) -> T:  # fmt: skip
        try:
            return await local()
        except NotPrimary as not_primary:
            if not_primary.primary is None or not_primary.primary not in self.peers:
                raise Unavailable("no primary known") from None
            url = self.peers[not_primary.primary].rstrip("/") + path
        if self._session is None:
            tls = self.ssl_context
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=tls) if tls is not None else None)
        try:
            async with self._session.request(method, url, json=body,
                                             headers=self.headers) as response:  # fmt: skip
                payload = await response.json() if response.content_length != 0 else None
                status = response.status
        except (aiohttp.ClientError, OSError) as error:
            raise Unavailable(f"primary unreachable: {error}") from None
        if status >= 400 or status == 204:
            if status == 204:
                return convert(None)
            payload = payload or {}
            error_type = _ERRORS.get(payload.get("error", ""), Unavailable)
            details = {k: v for k, v in payload.items() if k not in ("error", "message")}
            raise error_type(payload.get("message", f"HTTP {status}"), **details)
        return convert(payload)

    async def acquire(self, name: str, *, holder: str, ttl: float, wait: float = 0.0,
                      value: str | None = None, lock_delay: float = 0.0,
                      request_id: str | None = None) -> LeaseView:  # fmt: skip
        body = {"holder": holder, "ttl": ttl, "wait": wait, "value": value,
                "lock_delay": lock_delay, "request_id": request_id}  # fmt: skip
        return await self._local_or_remote(
            lambda: self.service.acquire(name, holder=holder, ttl=ttl, wait=wait, value=value,
                                         lock_delay=lock_delay, request_id=request_id),
            "POST", f"/v1/leases/{quote(name)}:acquire", body, _view,
        )  # fmt: skip

    async def renew(self, name: str, *, holder: str, token: int) -> LeaseView:
        return await self._local_or_remote(
            lambda: self.service.renew(name, holder=holder, token=token),
            "POST", f"/v1/leases/{quote(name)}:renew", {"holder": holder, "token": token}, _view,
        )  # fmt: skip

    async def release(self, name: str, *, holder: str, token: int,
                      request_id: str | None = None) -> None:  # fmt: skip
        await self._local_or_remote(
            lambda: self.service.release(name, holder=holder, token=token,
                                         request_id=request_id),
            "POST", f"/v1/leases/{quote(name)}:release",
            {"holder": holder, "token": token, "request_id": request_id}, lambda _: None,
        )  # fmt: skip

    async def get(self, name: str) -> LeaseView:
        return await self._local_or_remote(
            lambda: self.service.get(name), "GET", f"/v1/leases/{quote(name)}", None, _view
        )

    async def verify(self, name: str, *, token: int) -> tuple[bool, int | None]:
        return await self._local_or_remote(
            lambda: self.service.verify(name, token=token),
            "POST", f"/v1/leases/{quote(name)}:verify", {"token": token},
            lambda body: (bool(body["current"]), body["token"]),
        )  # fmt: skip
