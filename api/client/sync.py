"""``Client``: the SDK for plain threaded code — the ``AsyncClient`` surface, blocking.

    with Client("http://127.0.0.1:7001") as client:
        with client.lock("jobs/nightly", ttl=10) as lease:
            run_job(fencing_token=lease.token)

The client owns one event loop in one daemon thread and runs every call there
(``asyncio.run_coroutine_threadsafe``), so any number of threads may share it, no caller
needs a loop of its own, and renewals keep running while a caller's thread blocks.
``lease.lost`` is a ``threading.Event``, set from the loop thread.

One difference, because Python cannot cancel a thread: with ``cancel_on_loss=True`` the body
runs to its end, and the ``with`` then raises ``LeaseLost`` if the lease was lost meanwhile.
A long body should look at ``lease.lost`` (or call ``lease.check()``) at safe points.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import os
import threading
from collections.abc import Callable, Coroutine, Iterator, Sequence
from types import TracebackType
from typing import Any, Generic, TypeVar

from paxlock.api.client.aio import DEFAULT_MARGIN, DEFAULT_TTL_S, AsyncClient
from paxlock.api.client.election import OBSERVE_POLL_S, Election
from paxlock.api.client.errors import LeaseLost
from paxlock.api.client.holding import HeldLease, HeldPermit, Holding, Term, _Held
from paxlock.api.client.sync_coord import SyncCoordination, SyncSession, held_session
from paxlock.api.client.coord_types import Permit
from paxlock.api.client.types import (
    Cluster, Configuration, Leader, Lease, Membership, Verification,
)  # fmt: skip

__all__ = ["Client", "SyncElection", "SyncHeldLease", "SyncHeldPermit", "SyncSession",
           "SyncTerm"]

T = TypeVar("T")
CLOSE_TIMEOUT_S = 10.0


class _LoopThread:
    """An event loop running in a daemon thread until ``stop``."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name="paxlock-client", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for it; an exception in the waiting thread
        (Ctrl-C) cancels the coroutine, so a cancelled acquire is cleaned up as in asyncio."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError(
                "a blocking paxlock call from the client's own loop thread would deadlock "
                "(do not call Client from its callbacks)"
            )
        if self.loop.is_closed():
            coro.close()
            raise RuntimeError("the client is closed")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def stop(self) -> None:
        """Cancel whatever still runs (threads blocked in ``run`` get ``CancelledError``
        rather than hanging), then stop and close the loop."""
        if self.loop.is_closed():
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(_cancel_all(), self.loop).result(CLOSE_TIMEOUT_S)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(CLOSE_TIMEOUT_S)
        if not self._thread.is_alive():
            self.loop.close()


async def _cancel_all(keep: frozenset[asyncio.Task[None]] = frozenset()) -> None:
    """Cancel every task of the loop but this one and ``keep``, and wait for them."""
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and t not in keep]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)


class _SyncHeld:
    """Blocking face of a held grant; ``lost`` mirrored into a ``threading.Event``."""

    def __init__(self, held: _Held, runner: _LoopThread) -> None:
        self._held = held
        self._runner = runner
        self.lost = threading.Event()
        """Set (from the client's loop thread) once the grant can no longer be trusted."""
        held._keepalive.add_lost_callback(self.lost.set)  # on the loop thread: see _wrap

    @property
    def name(self) -> str:
        return self._held.name

    @property
    def token(self) -> int:
        """The fencing token: pass it to the resource you protect."""
        return self._held.token

    @property
    def lost_reason(self) -> str | None:
        return self._held.lost_reason

    def remaining_s(self) -> float:
        return self._held.remaining_s()

    def check(self) -> None:
        """Raise ``LeaseLost`` unless the grant is still trusted (read from the clock now)."""
        self._held.check()


class SyncHeldLease(_SyncHeld):
    """What ``Client.lock()`` yields."""

    _held: HeldLease

    @property
    def lease(self) -> Lease:
        return self._held.lease

    @property
    def holder(self) -> str:
        return self._held.holder

    @property
    def value(self) -> str | None:
        return self._held.value

    def __repr__(self) -> str:
        return f"SyncHeldLease(name={self.name!r}, token={self.token}, lost={self.lost.is_set()})"


class SyncHeldPermit(_SyncHeld):
    """What ``Client.semaphore()`` and ``Client.rwlock(name).read()``/``.write()`` yield."""

    _held: HeldPermit

    @property
    def permit(self) -> Permit:
        return self._held.permit

    @property
    def holders(self) -> tuple[str, ...]:
        return self._held.holders

    @property
    def mode(self) -> str:
        return self._held.mode

    def __repr__(self) -> str:
        return f"SyncHeldPermit(name={self.name!r}, token={self.token}, lost={self.lost.is_set()})"


class SyncTerm(_SyncHeld):
    """What ``Client.election(name).campaign()`` yields."""

    _held: Term

    @property
    def leader(self) -> Leader:
        return self._held.leader

    @property
    def value(self) -> str | None:
        return self._held.value

    def proclaim(self, value: str | None) -> Leader:
        return self._runner.run(self._held.proclaim(value))

    def __repr__(self) -> str:
        return f"SyncTerm(name={self.name!r}, token={self.token}, lost={self.lost.is_set()})"


H = TypeVar("H", bound=_Held)
S = TypeVar("S", bound=_SyncHeld)


class SyncHolding(Generic[H, S]):
    """``with``: obtain on the loop, wrap, and on exit stop and release (see module doc)."""

    def __init__(self, runner: _LoopThread, holding: Holding[H], wrap: Callable[[H], S], *,
                 cancel_on_loss: bool) -> None:  # fmt: skip
        self._runner = runner
        self._holding = holding
        self._wrap = wrap
        self._cancel_on_loss = cancel_on_loss
        self._held: S | None = None

    def __enter__(self) -> S:
        async def enter() -> S:
            return self._wrap(await self._holding.__aenter__())

        self._held = self._runner.run(enter())
        return self._held

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        held = self._held
        assert held is not None, "__exit__ without __enter__"
        lost_in_body = held.lost.is_set()
        self._runner.run(self._holding.__aexit__(exc_type, exc, tb))
        if self._cancel_on_loss and lost_in_body and exc is None:
            raise LeaseLost(
                f"{held.name} (token {held.token}) was lost while the body ran: "
                f"{held.lost_reason}", details={"name": held.name, "token": held.token},
            )  # fmt: skip


class SyncElection:
    """``Client.election(name)``: ``campaign``, ``leader``, ``observe``, blocking."""

    def __init__(self, election: Election, runner: _LoopThread) -> None:
        self._election = election
        self._runner = runner
        self.name = election.name

    def campaign(self, value: str | None = None, *, ttl: float | None = None,
                 wait: float | None = None, margin: float | None = None,
                 cancel_on_loss: bool = False,
                 session: SyncSession | None = None) -> SyncHolding[Term, SyncTerm]:  # fmt: skip
        holding = self._election.campaign(value, ttl=ttl, wait=wait, margin=margin,
                                          session=held_session(session))  # fmt: skip
        runner = self._runner
        return SyncHolding(runner, holding, lambda term: SyncTerm(term, runner),
                           cancel_on_loss=cancel_on_loss)  # fmt: skip

    def leader(self, *, consistent: bool = True) -> Leader | None:
        return self._runner.run(self._election.leader(consistent=consistent))

    def observe(self, *, after: int = 0, poll_s: float = OBSERVE_POLL_S
                ) -> Iterator[Leader | None]:  # fmt: skip
        """Each change of leader (None: nobody leads), for ever; ``break`` to stop."""
        changes = self._election.observe(after=after, poll_s=poll_s)

        async def step() -> Leader | None:
            return await anext(changes)

        try:
            while True:
                yield self._runner.run(step())
        finally:
            with contextlib.suppress(RuntimeError):  # the client was closed first
                self._runner.run(changes.aclose())


class Client(SyncCoordination):
    """A paxlock client for threaded code; thread-safe (every call runs on the client's
    loop thread). Arguments as ``AsyncClient``; sessions, semaphores, read/write locks and
    groups from ``sync_coord.SyncCoordination``."""

    def __init__(self, endpoints: str | Sequence[str], identity: str | None = None, *,
                 request_timeout: float = 5.0, retry_deadline: float = 10.0,
                 backoff_base: float = 0.05, backoff_max: float = 1.0,
                 ttl: float = DEFAULT_TTL_S, margin: float = DEFAULT_MARGIN,
                 follow_primary: bool = True, ca_file: str | os.PathLike[str] | None = None,
                 token: str | None = None) -> None:  # fmt: skip
        self._async = AsyncClient(
            endpoints, identity, request_timeout=request_timeout, retry_deadline=retry_deadline,
            backoff_base=backoff_base, backoff_max=backoff_max, ttl=ttl, margin=margin,
            follow_primary=follow_primary, ca_file=ca_file, token=token,
        )  # fmt: skip
        self._runner = _LoopThread()
        self._closed = False
        self._close_lock = threading.Lock()

    @property
    def identity(self) -> str:
        return self._async.identity

    @property
    def endpoints(self) -> builtins.list[str]:
        return self._async.endpoints

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        self.close()

    def close(self) -> None:
        """Release what is still held (best effort), then stop the loop thread. Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        try:
            # calls still blocked in other threads first: a cancelled acquire queues its
            # clean-up as a background task, which the async close then waits for
            self._runner.run(_cancel_all(keep=self._async.base.tasks.tasks))
            self._runner.run(self._async.close())
        finally:
            self._runner.stop()

    # -- leases ---------------------------------------------------------------------------

    def acquire(self, name: str, *, ttl: float | None = None, wait: float = 0.0,
                value: str | None = None, lock_delay: float = 0.0,
                request_id: str | None = None) -> Lease:  # fmt: skip
        return self._runner.run(self._async.acquire(
            name, ttl=ttl, wait=wait, value=value, lock_delay=lock_delay, request_id=request_id,
        ))  # fmt: skip

    def renew(self, name: str, token: int) -> Lease:
        return self._runner.run(self._async.renew(name, token))

    def release(self, name: str, token: int, *, request_id: str | None = None) -> None:
        self._runner.run(self._async.release(name, token, request_id=request_id))

    def get(self, name: str, *, consistent: bool = True) -> Lease | None:
        return self._runner.run(self._async.get(name, consistent=consistent))

    def list(self, prefix: str = "", *, consistent: bool = True) -> builtins.list[Lease]:
        return self._runner.run(self._async.list(prefix, consistent=consistent))

    def verify(self, name: str, token: int) -> Verification:
        return self._runner.run(self._async.verify(name, token))

    def cluster(self) -> Cluster:
        return self._runner.run(self._async.cluster())

    # -- members ----------------------------------------------------------------------------

    def members(self) -> Membership:
        return self._runner.run(self._async.members())

    def add_member(self, member_id: str, url: str) -> Configuration:
        return self._runner.run(self._async.add_member(member_id, url))

    def promote_member(self, member_id: str) -> Configuration:
        return self._runner.run(self._async.promote_member(member_id))

    def remove_member(self, member_id: str) -> Configuration:
        return self._runner.run(self._async.remove_member(member_id))

    def lock(self, name: str, *, ttl: float | None = None, wait: float | None = None,
             value: str | None = None, lock_delay: float = 0.0, margin: float | None = None,
             cancel_on_loss: bool = False, session: SyncSession | None = None
             ) -> SyncHolding[HeldLease, SyncHeldLease]:  # fmt: skip
        """``with client.lock(name) as lease:`` — as ``AsyncClient.lock`` (see the module
        docstring for ``cancel_on_loss``)."""
        holding = self._async.lock(name, ttl=ttl, wait=wait, value=value, lock_delay=lock_delay,
                                   margin=margin, session=held_session(session))  # fmt: skip
        runner = self._runner
        return SyncHolding(runner, holding, lambda held: SyncHeldLease(held, runner),
                           cancel_on_loss=cancel_on_loss)  # fmt: skip

    def election(self, name: str) -> SyncElection:
        return SyncElection(self._async.election(name), self._runner)

    def __repr__(self) -> str:
        return f"Client({self.endpoints!r}, identity={self.identity!r})"
