"""Elections (etcd's concurrency vocabulary): ``campaign`` → ``proclaim`` → ``resign``, plus
``leader`` and ``observe``.

``observe`` long-polls ``GET /v1/elections/{name}:observe?after=REV&timeout=S`` (204: poll
again). Every node serves it from its own applied log, in log order, so after a failover
the next poll — to any node, with the last revision seen — answers the first state newer
than it: the latest state is never missed, and nothing already seen comes back. Changes
closer together than one poll may arrive as the latest of them only (like a level-triggered
watch); a caller that must see each step should pace its changes on what it observed.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from paxlock.api.client.errors import NotFound
from paxlock.api.client.holding import Holding, Term
from paxlock.api.client.keepalive import ELECTIONS, path_of
from paxlock.api.client.coord_session import HeldSession
from paxlock.api.client.session import Session, bound_ttl
from paxlock.api.client.types import Leader

__all__ = ["Election"]

OBSERVE_POLL_S = 25.0
"""Server-side wait of one observe poll: long enough to be cheap, short enough that a dead
connection (a node frozen, say) is noticed within a poll and the request timeout."""


class Election:
    """One election, by name, seen by one session (``client.election(name)``, or
    ``Election(client.base, name)``): the recipe takes the session it campaigns with,
    never the client."""

    def __init__(self, session: Session, name: str) -> None:
        self._session = session
        self.name = name

    def campaign(self, value: str | None = None, *, ttl: float | None = None,
                 wait: float | None = None, margin: float | None = None,
                 cancel_on_loss: bool = False,
                 session: HeldSession | None = None) -> Holding[Term]:  # fmt: skip
        """``async with election.campaign(value) as term:`` waits to become leader (for ever
        with ``wait=None``, else ``LeaseHeld`` after ``wait`` seconds), renews leadership in
        the background while the body runs, and resigns on exit. ``session=s`` binds the
        term to a cluster session instead (no renewal of its own; lost with the session)."""
        base = self._session
        body: dict[str, Any] = {"candidate": base.identity, "value": value}
        ttl_s, margin_f = bound_ttl(base, body, ttl, margin, session)
        return base.hold(ELECTIONS, self.name, body, parse=Leader.from_json, wrap=Term,
                         ttl_s=ttl_s, margin=margin_f, wait_s=wait,
                         cancel_on_loss=cancel_on_loss, bound=session)  # fmt: skip

    async def leader(self, *, consistent: bool = True) -> Leader | None:
        """The current leader, or None. ``consistent=False`` reads the answering node's
        possibly stale state (cheaper; survives a cluster without a primary)."""
        transport = self._session.transport
        params = None if consistent else {"consistent": "false"}
        try:
            raw = await transport.call("GET", path_of(ELECTIONS, self.name), params=params,
                                       deadline=transport.deadline())  # fmt: skip
        except NotFound:
            return None
        return Leader.from_json(raw)

    async def observe(self, *, after: int = 0, poll_s: float = OBSERVE_POLL_S
                      ) -> AsyncGenerator[Leader | None, None]:  # fmt: skip
        """Yield the leader (None when nobody leads) each time it changes, starting with the
        current state if anything ever happened to the name (``after=0``). Retries failures
        for ever, with backoff: cancel the iteration, or wrap it in ``asyncio.timeout``."""
        transport = self._session.transport
        revision = after
        while True:
            raw = await transport.call(
                "GET", path_of(ELECTIONS, self.name, "observe"),
                params={"after": str(revision), "timeout": f"{poll_s:g}"},
                deadline=None, server_wait_s=poll_s,
            )  # fmt: skip
            if raw is None:
                continue  # 204: nothing new within poll_s
            leader, seen = Leader.maybe_from_json(raw)
            if seen <= revision:
                continue  # never hand out a state older than one already given
            revision = seen
            yield leader

    def __repr__(self) -> str:
        return f"Election({self.name!r})"
