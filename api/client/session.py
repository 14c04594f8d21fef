"""A session: what the SDK's recipes share (etcd ``client/v3/concurrency.Session``).

One identity (the ``holder``/``candidate`` string the cluster records), its transport, its
background tasks, the TTL defaults, and every grant it keeps alive, so that ``close`` can end
them. ``AsyncClient`` owns one; a recipe (``lock``, ``Election``) is built on the session and
imports nothing of the client, as kazoo's recipes take the client and import only errors.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import weakref
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

from paxlock.api.client.coord_session import Bound, HeldSession, SessionHolding
from paxlock.api.client.errors import PaxlockError
from paxlock.api.client.holding import Holding, _Held
from paxlock.api.client.keepalive import Keepalive, Keeping, Kind, TaskSet, obtain
from paxlock.api.client.transport import Transport

__all__ = ["Grant", "Session", "checked_ttl_margin"]


class Grant(Protocol):
    """A parsed grant (``Lease``, ``Leader``): all a keepalive needs is its fencing token."""

    @property
    def token(self) -> int: ...


G = TypeVar("G", bound=Grant)
H = TypeVar("H", bound=_Held)


def checked_ttl_margin(ttl: float, margin: float) -> tuple[float, float]:
    """``(ttl_s, margin)`` as floats; ``ValueError`` unless ttl > 0 and 0 <= margin < 1."""
    ttl_s, margin_f = float(ttl), float(margin)
    if not ttl_s > 0:
        raise ValueError(f"ttl must be a positive number of seconds, not {ttl!r}")
    if not 0 <= margin_f < 1:
        raise ValueError(f"margin must be in [0, 1), not {margin!r}")
    return ttl_s, margin_f


def bound_ttl(base: Session, body: dict[str, Any], ttl: float | None, margin: float | None,
              session: HeldSession | None) -> tuple[float, float]:  # fmt: skip
    """Put ``ttl`` — or, bound, the ``session`` — into a grant's ``body``; the ttl and
    margin that judge the grant (a bound one: its session's)."""
    if session is None:
        ttl_s, margin_f = base.ttl_margin(ttl, margin)
        body["ttl"] = ttl_s
        return ttl_s, margin_f
    if ttl is not None:
        raise ValueError("give ttl or session, not both")
    body["session"] = session.id
    return session.ttl, base.margin_default


class Session:
    """See the module docstring. ``ttl_s_default``/``margin_default`` apply where a recipe
    is given None."""

    def __init__(self, transport: Transport, identity: str, *, ttl_s: float,
                 margin: float) -> None:  # fmt: skip
        if not 1 <= len(identity) <= 256:
            raise ValueError("identity must have 1 to 256 characters")
        self.transport = transport
        self.identity = identity
        self.ttl_s_default, self.margin_default = checked_ttl_margin(ttl_s, margin)
        self.tasks = TaskSet()
        self._keepalives: weakref.WeakSet[Keeping] = weakref.WeakSet()

    def ttl_margin(self, ttl: float | None, margin: float | None) -> tuple[float, float]:
        """A recipe's ``ttl``/``margin`` arguments, None meaning the session's default."""
        return checked_ttl_margin(ttl if ttl is not None else self.ttl_s_default,
                                  margin if margin is not None else self.margin_default)  # fmt: skip

    def hold(self, kind: Kind, name: str, body: Mapping[str, Any], *,
             parse: Callable[[Any], G], wrap: Callable[[G, Keeping], H], ttl_s: float,
             margin: float, wait_s: float | None, cancel_on_loss: bool,
             bound: HeldSession | None = None) -> Holding[H]:  # fmt: skip
        """The ``async with`` of a grant: obtain ``name`` with ``body`` (waiting ``wait_s``,
        None for ever), then keep it alive — itself, or, ``bound`` to a session, as long as
        the session lives (``body`` then names the session, ``ttl_s``/``margin`` are the
        session's); ``parse`` reads the grant's JSON, ``wrap`` makes what the ``async with``
        yields (``HeldLease``, ``Term``, ``HeldPermit``), told of each renewal."""
        holder = str(body[kind.holder_field])

        async def enter() -> H:
            if bound is not None:
                bound.check()
            raw, sent_at = await obtain(self.transport, self.tasks, kind, name, body,
                                        ttl_s=ttl_s, margin=margin, wait_s=wait_s)  # fmt: skip
            grant = parse(raw)
            held: H | None = None

            def renewed(raw_renewal: Any) -> None:
                if held is not None:
                    held._renewed(raw_renewal)

            keeping: Keeping
            if bound is not None:
                keeping = Bound(bound, self.transport, kind, name, holder, grant.token)
            else:
                keeping = Keepalive(self.transport, self.tasks, kind, name, holder,
                                    grant.token, ttl_s, margin, sent_at, renewed)  # fmt: skip
            self._keepalives.add(keeping)  # so that close() ends it if the caller did not
            held = wrap(grant, keeping)
            return held

        return Holding(enter, cancel_on_loss=cancel_on_loss)

    def session(self, ttl: float | None, margin: float | None) -> SessionHolding:
        """``async with``: a cluster session of this identity (``coord_session``)."""
        ttl_s, margin_f = self.ttl_margin(ttl, margin)
        return SessionHolding(self.transport, self.tasks, self.identity, ttl_s, margin_f,
                              self._keepalives.add)  # fmt: skip

    async def close(self, grace_s: float) -> None:
        """Release what is still held (best effort, ``grace_s`` each), stop background work,
        close the transport."""
        for keepalive in builtins.list(self._keepalives):
            with contextlib.suppress(PaxlockError, TimeoutError):
                await asyncio.wait_for(keepalive.stop(release=True), grace_s)
            keepalive.mark_lost("the client was closed")
        await self.tasks.close(grace_s)
        await self.transport.close()
