"""The lease operations every edge uses — the HTTP API, the embedded ``paxlock.Node`` — as one
Protocol. ``coordinator.service.LeaseService`` implements it over the replicated log; tests of
the edges may implement it in memory.

Durations are seconds. Every method raises the errors of ``coordinator.errors``:
``BadRequest``, ``NotFound``, ``Held`` (details: holder, expires_in, token),
``NotHolder``, ``Forbidden`` (the lease is another principal's), ``TooMany`` (a limit;
retry_after_s, details: limit), ``Unavailable`` (retry_after_s), and ``NotPrimary``
(primary: node id or None) when this node is not the primary and the operation must be
forwarded there.

``principal`` is who asks (DESIGN.md §8): the name its bearer token maps to, ``""``
without ``--auth``. A grant is owned by the principal that took it; only that principal
may renew, release or proclaim it.
"""

from __future__ import annotations

from typing import Any, Protocol

from paxlock.coordinator.views import LeaseView


class Leasing(Protocol):
    @property
    def node_id(self) -> str: ...

    async def acquire(
        self, name: str, *, holder: str, ttl: float, wait: float = 0.0,
        value: str | None = None, lock_delay: float = 0.0, request_id: str | None = None,
        principal: str = "", session: str | None = None,
    ) -> LeaseView:  # fmt: skip
        """Grant ``name`` to ``holder``; with ``wait`` > 0 wait in FIFO order up to ``wait``
        seconds while it is held, then raise ``Held``. With ``session`` the lease is bound
        to it (``ttl`` ignored): it ends with the session, and renewing it renews the
        session; an unknown session is ``NotFound``."""
        ...

    async def renew(self, name: str, *, holder: str, token: int,
                    principal: str = "") -> LeaseView: ...  # fmt: skip

    async def release(self, name: str, *, holder: str, token: int,
                      request_id: str | None = None, principal: str = "") -> None: ...  # fmt: skip

    async def proclaim(self, name: str, *, holder: str, token: int, value: str | None,
                       request_id: str | None = None,
                       principal: str = "") -> LeaseView: ...  # fmt: skip

    async def get(self, name: str, *, consistent: bool = True) -> LeaseView:
        """The current lease; ``NotFound`` when nobody holds it. ``consistent=False`` reads
        this node's possibly stale state instead of asking the primary."""
        ...

    async def list(self, prefix: str = "", *, consistent: bool = True) -> list[LeaseView]: ...

    async def verify(self, name: str, *, token: int) -> tuple[bool, int | None]:
        """Whether ``token`` is the current grant of ``name``, and the current token."""
        ...

    async def observe(self, name: str, *, after: int, timeout: float) -> LeaseView | None:
        """The state of ``name`` once its revision exceeds ``after`` (a view with ``holder``
        None when nobody holds it), or None when ``timeout`` passes first."""
        ...

    async def changes(self, *, after: int, timeout: float) -> int | None:
        """The cluster-wide revision this node has applied, once it exceeds ``after`` (any
        change of any kind), or None when ``timeout`` passes first. Served locally."""
        ...

    def known_primary(self) -> str | None:
        """The primary's node id as this node knows it, or None: cheap, for every answer's
        ``X-Paxlock-Primary`` header (``cluster()`` builds the whole member list)."""
        ...

    def cluster(self) -> dict[str, Any]:
        """The cluster object as this node sees it: node, primary, ballot, learn_mode,
        chosen_index, applied_index, revision, members (id, url, reachable, chosen_index)
        and primary_changes."""
        ...

    def readiness(self) -> tuple[bool, str]:
        """(ready, reason): ready when a primary is known and this node is not far behind."""
        ...
