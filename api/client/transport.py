"""HTTP with failover for the SDK: which node to ask, what to retry, for how long.

- **Where**: the primary when we know it (a follower would only forward, one more hop),
  else the configured endpoints in turn, then members discovered through ``GET /v1/cluster``.
  Every answer names its node (``X-Paxlock-Node``) and the primary (``X-Paxlock-Primary``);
  ids become URLs through the members list, fetched once and again when an unknown id shows.
- **What is retried**: connection errors, timeouts, 502/503/504. Everything else is an answer
  (mapped to a typed error). A retried call sends the *same* body, so a mutating call keeps its
  ``request_id`` and the state machine answers a retry with the first result: a retried
  acquire can neither grant twice nor conflict with itself.
- **How long**: exponential backoff with full jitter (AWS architecture blog, "Exponential
  Backoff And Jitter"), until a deadline on the SDK's clock (``clock.now()``). A server's
  ``Retry-After`` is not waited out in full: it is whole seconds, longer than a failover.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from paxlock.api.client import clock
from paxlock.api.client.errors import PaxlockError, Unavailable, error_from_response

NODE_HEADER = "X-Paxlock-Node"
PRIMARY_HEADER = "X-Paxlock-Primary"
RETRIED_STATUSES = frozenset({502, 503, 504})
MEMBERS_REFRESH_S_MIN = 1.0
"""At most one ``GET /v1/cluster`` per second, however many unknown primary ids show up."""
CONNECT_TIMEOUT_S_MAX = 1.0
"""A node that does not accept a connection within this is treated as down for the attempt."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    request_timeout_s: float = 5.0
    """One attempt's timeout, on top of any time the server may wait (acquire's ``wait``)."""
    retry_deadline_s: float = 10.0
    """How long one call keeps retrying (again on top of its own ``wait``)."""
    backoff_base_s: float = 0.05
    backoff_max_s: float = 1.0

    def __post_init__(self) -> None:
        if not (self.request_timeout_s > 0 and self.retry_deadline_s >= 0
                and 0 < self.backoff_base_s <= self.backoff_max_s):  # fmt: skip
            raise ValueError(f"invalid retry policy: {self}")


def did_not_answer(who: str, error: BaseException, timeout_s: float) -> str:
    """A sentence for an HTTP attempt that got no answer: ``{who} did not answer within 5 s``
    or ``{who} did not answer: connection refused``. Messages are read by people (a 503 body,
    a command's one line of error): an exception's repr belongs in a log, not there."""
    if isinstance(error, TimeoutError):  # asyncio's and aiohttp's timeouts alike
        return f"{who} did not answer within {timeout_s:g} s"
    return f"{who} did not answer: {why_no_answer(error)}"


def why_no_answer(error: BaseException) -> str:
    """``connection refused``, ``it closed the connection``, a TLS failure: what a person
    needs to read about a connection that failed."""
    if isinstance(error, TimeoutError):
        return "it timed out"
    if isinstance(error, aiohttp.ClientSSLError):
        return tls_failure(error)
    if isinstance(error, aiohttp.ServerDisconnectedError | ConnectionResetError):
        return "it closed the connection"  # (a write to a connection already closing, too)
    if isinstance(error, OSError) and error.errno is not None and error.errno > 0:
        return os.strerror(error.errno).lower()  # aiohttp's connection errors carry the errno
    if isinstance(error, OSError) and error.strerror:
        return error.strerror  # a name that does not resolve (a negative getaddrinfo code)
    return str(error) or type(error).__name__


def tls_failure(error: aiohttp.ClientSSLError) -> str:
    """``its TLS certificate is not trusted (self-signed certificate in chain)`` or ``the TLS
    handshake failed (...)``: the sentence a person needs, where the errno would mislead."""
    if isinstance(error, aiohttp.ClientConnectorCertificateError):
        cause = error.certificate_error
        detail = getattr(cause, "verify_message", None) or getattr(cause, "reason", None)
        return f"its TLS certificate is not trusted ({detail or cause})"
    reason = getattr(error.os_error, "reason", None)
    detail = reason.lower().replace("_", " ") if isinstance(reason, str) else str(error.os_error)
    return f"the TLS handshake failed ({detail})"


def client_ssl_context(ca_file: str | os.PathLike[str]) -> ssl.SSLContext:
    """Verification of ``https://`` endpoints against ``ca_file`` (PEM), built once per
    client; ``ValueError`` with one sentence when the file cannot be used."""
    try:
        return ssl.create_default_context(cafile=os.fspath(ca_file))
    except FileNotFoundError:
        raise ValueError(f"cannot read the CA file {os.fspath(ca_file)}: no such file") from None
    except (ssl.SSLError, OSError) as error:
        reason = getattr(error, "reason", None)
        why = reason.lower().replace("_", " ") if isinstance(reason, str) else str(error)
        raise ValueError(f"cannot use the CA file {os.fspath(ca_file)}: {why}") from None


def normalize_endpoints(endpoints: str | Sequence[str], scheme: str = "http") -> list[str]:
    """``"http://a:1,http://b:2"`` or a list; ``host:port`` gets ``scheme://``; no trailing /."""
    items = endpoints.split(",") if isinstance(endpoints, str) else list(endpoints)
    out: list[str] = []
    for item in items:
        url = item.strip().rstrip("/")
        if not url:
            continue
        if "://" not in url:
            url = f"{scheme}://{url}"
        if url not in out:
            out.append(url)
    if not out:
        raise ValueError("at least one endpoint is needed, e.g. 'http://127.0.0.1:7001'")
    return out


class Transport:
    """One ``aiohttp.ClientSession`` (keep-alive) and the failover logic; one event loop."""

    def __init__(
        self, endpoints: Sequence[str], policy: RetryPolicy, *, follow_primary: bool = True,
        rng: random.Random | None = None, ssl_context: ssl.SSLContext | None = None,
        token: str | None = None,
    ) -> None:  # fmt: skip
        """``token``: the bearer token sent with every request (a cluster run with --auth)."""
        self.policy = policy
        self.ssl_context = ssl_context
        """How ``https://`` endpoints are verified (``client_ssl_context``); None: the
        system's CAs."""
        self._token = token
        self.follow_primary = follow_primary
        self._configured = list(endpoints)
        self._discovered: list[str] = []
        self._members: dict[str, str] = {}
        """Node id -> URL, from answers (the configured URL wins) and from /v1/cluster."""
        self._primary_url: str | None = None
        self._cursor = 0
        self._rng = rng or random.Random()
        self._session: aiohttp.ClientSession | None = None
        self._members_fetched_at = -MEMBERS_REFRESH_S_MIN
        self._closed = False
        self.failed_attempts = 0
        """Attempts that were retried (connection errors, timeouts, 502/503/504): a counter
        for tests and metrics."""

    @property
    def primary_url(self) -> str | None:
        return self._primary_url

    def now(self) -> float:
        """``clock.now()``: one clock for deadlines here and lease windows elsewhere (an event
        loop's own clock may be cached per iteration, or differ, as uvloop's; and it stops
        while the host is suspended)."""
        return clock.now()

    def deadline(self, extra_s: float = 0.0) -> float:
        return self.now() + self.policy.retry_deadline_s + extra_s

    async def close(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _session_now(self) -> aiohttp.ClientSession:
        if self._closed:
            raise PaxlockError("the client is closed")
        if self._session is None:
            tls = self.ssl_context
            headers = {"User-Agent": "paxlock-python-sdk", "Accept": "application/json"}
            if self._token:
                headers["Authorization"] = f"Bearer {self._token}"
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None),
                connector=aiohttp.TCPConnector(ssl=tls) if tls is not None else None,
                headers=headers,
            )
        return self._session

    # -- the call -------------------------------------------------------------------------

    async def call(self, method: str, path: str, *, body: Mapping[str, Any] | None = None,
                   params: Mapping[str, str] | None = None, deadline: float | None,
                   wait_until: float | None = None, server_wait_s: float = 0.0,
                   attempt_timeout_s: float | None = None) -> Any:  # fmt: skip
        """Send until an answer that is not retried, or ``deadline`` (None: forever).

        Returns the JSON body of a 2xx (None for 204); raises the typed error of a 4xx/5xx,
        or ``Unavailable`` naming the last failure once the deadline passed; the error's
        ``retried`` says whether an earlier attempt may have reached the primary. With
        ``wait_until``, each attempt sends ``wait`` = the time left until it (so a retry does
        not restart the caller's wait) and allows that much more time for the answer.
        """
        failures = 0
        tried: set[str] = set()
        last: PaxlockError | None = None
        maybe_applied = False
        while True:
            now = self.now()
            if deadline is not None and now >= deadline:
                why = last.message if last is not None else "no attempt fitted in the deadline"
                gave_up = Unavailable(
                    f"{method} {path}: gave up retrying: {why}",
                    details=last.details if last is not None else None,
                )
                gave_up.retried = maybe_applied
                raise gave_up
            url = self._choose(tried)
            if url is None:
                tried.clear()
                url = self._choose(tried)
                assert url is not None, "there is always at least one endpoint"
            sent = dict(body) if body is not None else None
            wait_s = server_wait_s
            if wait_until is not None and sent is not None:
                wait_s = max(0.0, wait_until - now)
                sent["wait"] = round(wait_s, 3)
            timeout = (attempt_timeout_s or self.policy.request_timeout_s) + wait_s
            if deadline is not None:
                timeout = min(timeout, max(deadline - now, 0.05))
            try:
                status, headers, raw = await self._send(method, url, path, sent, params, timeout)
            except (aiohttp.ClientError, TimeoutError, OSError) as error:
                maybe_applied |= not isinstance(error, aiohttp.ClientConnectorError)
                self.failed_attempts += 1
                tried.add(url)
                if url == self._primary_url:
                    self._primary_url = None
                last = Unavailable(did_not_answer(url, error, timeout))
                if all(u in tried for u in self._candidates()):
                    failures += 1
                    await self._backoff(failures, deadline)
                continue
            await self._learn(url, headers)
            if 200 <= status < 300:
                return _parse(raw) if raw.strip() else None
            answer = error_from_response(status, _parse_or_none(raw), raw.decode(errors="replace"))
            if status not in RETRIED_STATUSES:
                answer.retried = maybe_applied
                raise answer
            maybe_applied = True
            self.failed_attempts += 1
            tried.add(url)
            if url == self._primary_url and not headers.get(PRIMARY_HEADER):
                self._primary_url = None
            last = answer
            failures += 1
            await self._backoff(failures, deadline)

    async def _send(self, method: str, base: str, path: str, body: dict[str, Any] | None,
                    params: Mapping[str, str] | None, timeout_s: float
                    ) -> tuple[int, Mapping[str, str], bytes]:  # fmt: skip
        url = URL(base + path, encoded=True)
        if params:
            url = url.update_query(params)
        client_timeout = aiohttp.ClientTimeout(
            total=timeout_s, connect=min(timeout_s, CONNECT_TIMEOUT_S_MAX)
        )
        async with self._session_now().request(
            method, url, json=body, timeout=client_timeout, allow_redirects=False
        ) as response:
            raw = await response.read()
            return response.status, response.headers, raw

    async def _backoff(self, failures: int, deadline: float | None) -> None:
        """Full jitter: uniform in [0, min(max, base * 2**failures)], cut at the deadline."""
        policy = self.policy
        ceiling = min(policy.backoff_max_s, policy.backoff_base_s * 2 ** min(failures, 20))
        delay = self._rng.uniform(0, ceiling)
        if deadline is not None:
            delay = min(delay, max(0.0, deadline - self.now()))
        await asyncio.sleep(delay)

    # -- where to send ----------------------------------------------------------------------

    def _candidates(self) -> list[str]:
        return self._configured + [u for u in self._discovered if u not in self._configured]

    def _choose(self, tried: set[str]) -> str | None:
        """The primary if known and untried; else the next untried endpoint in turn."""
        if self._primary_url is not None and self._primary_url not in tried:
            return self._primary_url
        candidates = self._candidates()
        for step in range(len(candidates)):
            url = candidates[(self._cursor + step) % len(candidates)]
            if url not in tried:
                self._cursor = (self._cursor + step + 1) % len(candidates)
                return url
        return None

    async def _learn(self, url: str, headers: Mapping[str, str]) -> None:
        """Remember who answered and whom it names as primary."""
        node = headers.get(NODE_HEADER)
        if node:
            if url in self._configured or node not in self._members:
                self._members[node] = url
        if not self.follow_primary:
            return
        primary = headers.get(PRIMARY_HEADER)
        if not primary:
            return
        if primary == node:
            self._primary_url = url
            return
        if primary not in self._members:
            await self._refresh_members(url)
        self._primary_url = self._members.get(primary, self._primary_url)

    async def _refresh_members(self, url: str) -> None:
        """Learn every member's URL from ``url``'s cluster object (best effort, rate-limited)."""
        now = self.now()
        if now - self._members_fetched_at < MEMBERS_REFRESH_S_MIN:
            return
        self._members_fetched_at = now
        try:
            status, _, raw = await self._send("GET", url, "/v1/cluster", None, None, 1.0)
            cluster = _parse(raw) if status == 200 else None
        except (aiohttp.ClientError, TimeoutError, OSError, PaxlockError):
            return
        if not isinstance(cluster, dict):
            return
        for member in cluster.get("members") or []:
            if isinstance(member, dict) and isinstance(member.get("id"), str) \
                    and isinstance(member.get("url"), str):  # fmt: skip
                member_url = member["url"].rstrip("/")
                self._members.setdefault(member["id"], member_url)
                if member_url not in self._configured and member_url not in self._discovered:
                    self._discovered.append(member_url)


def _parse(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        raise PaxlockError(f"the server answered something that is not JSON: {raw[:200]!r}")


def _parse_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw.strip() else None
    except ValueError:
        return None
