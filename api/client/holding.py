"""What ``lock()`` and ``campaign()`` yield, and the context manager that yields it.

``HeldLease`` and ``Term`` wrap a ``Keepalive``: the fencing token, ``lost`` (an
``asyncio.Event``), the time of trust left. ``Holding`` is the ``async with``: obtain on
entry; on exit, stop renewing and release — after an exception too. With
``cancel_on_loss`` the body's task is cancelled the moment the grant is lost (like a Go
context), and the ``async with`` then raises ``LeaseLost`` instead of ``CancelledError``;
a cancellation from anywhere else still propagates as ``CancelledError``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Generic, TypeVar

from paxlock.api.client.errors import LeaseLost, NotHolder, PaxlockError
from paxlock.api.client.keepalive import ELECTIONS, Keeping, new_request_id, path_of
from paxlock.api.client.coord_types import Permit
from paxlock.api.client.types import Leader, Lease

__all__ = ["HeldLease", "HeldPermit", "Holding", "Term"]


class _Held:
    """The common face of a held grant."""

    def __init__(self, keepalive: Keeping) -> None:
        self._keepalive = keepalive

    @property
    def name(self) -> str:
        return self._keepalive.name

    @property
    def token(self) -> int:
        """The fencing token: hand it to the resource you protect, which keeps the highest
        token it has seen and refuses older ones (or asks ``verify``)."""
        return self._keepalive.token

    @property
    def lost(self) -> asyncio.Event:
        """Set once the grant can no longer be trusted by the client's clock (or the cluster
        said so, or it was released). Never cleared."""
        return self._keepalive.lost

    @property
    def lost_reason(self) -> str | None:
        return self._keepalive.lost_reason

    def remaining_s(self) -> float:
        """Seconds the grant is still trusted for, read from the clock now (so it is right
        even when the event loop was blocked and the timer has not fired yet)."""
        return self._keepalive.remaining_s()

    def check(self) -> None:
        """Raise ``LeaseLost`` unless the grant is still trusted: call it right before acting
        on the protected resource."""
        if self.remaining_s() <= 0:
            reason = self.lost_reason or "the client's clock ran past ttl × (1 − margin)"
            raise LeaseLost(f"{self.name} (token {self.token}) is no longer held: {reason}",
                            details={"name": self.name, "token": self.token})  # fmt: skip

    def _renewed(self, raw: Any) -> None:
        """A renewal's JSON (the keepalive calls it): keep the latest grant object."""
        raise NotImplementedError


class HeldLease(_Held):
    """A lock held by this client and renewed in the background (``lock()`` yields it)."""

    def __init__(self, lease: Lease, keepalive: Keeping) -> None:
        super().__init__(keepalive)
        self.lease = lease
        """The latest lease object the cluster returned (grant or renewal)."""

    @property
    def holder(self) -> str:
        return self.lease.holder

    @property
    def value(self) -> str | None:
        return self.lease.value

    def _renewed(self, raw: Any) -> None:
        self.lease = Lease.from_json(raw)

    def __repr__(self) -> str:
        return f"HeldLease(name={self.name!r}, token={self.token}, lost={self.lost.is_set()})"


class HeldPermit(_Held):
    """A semaphore permit or a read/write hold (``semaphore()``, ``rwlock().read()``...)."""

    def __init__(self, permit: Permit, keepalive: Keeping) -> None:
        super().__init__(keepalive)
        self.permit = permit
        """The latest permit object the cluster returned (grant or renewal)."""

    @property
    def holder(self) -> str:
        return self.permit.holder

    @property
    def holders(self) -> tuple[str, ...]:
        """Every holder of the name at the grant (or last renewal), oldest first."""
        return self.permit.holders

    @property
    def mode(self) -> str:
        return self.permit.mode

    def _renewed(self, raw: Any) -> None:
        self.permit = Permit.from_json(raw)

    def __repr__(self) -> str:
        return (f"HeldPermit(name={self.name!r}, mode={self.mode!r}, token={self.token}, "
                f"lost={self.lost.is_set()})")  # fmt: skip


class Term(_Held):
    """This client's leadership of an election (``campaign()`` yields it)."""

    def __init__(self, leader: Leader, keepalive: Keeping) -> None:
        super().__init__(keepalive)
        self.leader = leader
        """The latest leader object (grant, renewal or proclaim)."""

    @property
    def candidate(self) -> str:
        return self.leader.leader

    @property
    def value(self) -> str | None:
        return self.leader.value

    def _renewed(self, raw: Any) -> None:
        self.leader = Leader.from_json(raw)

    async def proclaim(self, value: str | None) -> Leader:
        """Announce a new value without losing the term (observers see it). ``NotHolder``
        (and the term marked lost) if the term ended meanwhile."""
        self.check()
        keepalive = self._keepalive
        body = {"candidate": keepalive.holder, "token": keepalive.token, "value": value,
                "request_id": new_request_id()}  # fmt: skip
        try:
            raw = await keepalive.transport.call(
                "POST", path_of(ELECTIONS, self.name, "proclaim"), body=body,
                deadline=keepalive.transport.deadline(),
            )  # fmt: skip
        except NotHolder as error:
            keepalive.mark_lost(f"no longer the leader ({error.message})")
            raise
        self.leader = Leader.from_json(raw)
        return self.leader

    def __repr__(self) -> str:
        return f"Term(name={self.name!r}, token={self.token}, lost={self.lost.is_set()})"


H = TypeVar("H", bound=_Held)


class Holding(Generic[H]):
    """``async with``: obtain, then stop and release on exit; see the module docstring."""

    def __init__(self, obtain: Callable[[], Awaitable[H]], *, cancel_on_loss: bool) -> None:
        self._obtain = obtain
        self._cancel_on_loss = cancel_on_loss
        self._held: H | None = None
        self._task: asyncio.Task[Any] | None = None
        self._cancelled = False
        self._exiting = False

    async def __aenter__(self) -> H:
        if self._held is not None:
            raise RuntimeError("this context manager is single-use: call lock()/campaign() again")
        held = await self._obtain()
        self._held = held
        if self._cancel_on_loss:
            self._task = asyncio.current_task()
            held._keepalive.add_lost_callback(self._on_lost)
        return held

    def _on_lost(self) -> None:
        if self._exiting or self._task is None or self._task.done():
            return
        self._cancelled = True
        self._task.cancel(msg=f"paxlock: {self._held!r} lost")

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:  # fmt: skip
        self._exiting = True
        held = self._held
        assert held is not None, "__aexit__ without __aenter__"
        if self._cancelled:
            assert self._task is not None
            self._task.uncancel()
        try:
            await held._keepalive.stop(release=True)
        except PaxlockError as error:
            if exc is None:
                raise
            exc.add_note(f"paxlock: ending {held!r} failed too: {error!r}")
        if not self._cancelled:
            return
        assert self._task is not None
        if isinstance(exc, asyncio.CancelledError) and self._task.cancelling() > 0:
            return  # cancelled from elsewhere as well: that cancellation wins
        raise LeaseLost(
            f"{held.name} (token {held.token}) was lost and the body cancelled: "
            f"{held.lost_reason}", details={"name": held.name, "token": held.token},
        ) from exc  # fmt: skip
