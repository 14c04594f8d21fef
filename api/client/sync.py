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

import builtins
import contextlib
import os
import threading
from collections.abc import Iterator, Sequence
from types import TracebackType

from paxlock.api.client.aio import DEFAULT_MARGIN, DEFAULT_TTL_S, AsyncClient
from paxlock.api.client.election import OBSERVE_POLL_S, Election
from paxlock.api.client.holding import HeldLease, Term
from paxlock.api.client.sync_coord import (
    SyncCoordination, SyncHeldPermit, SyncSession, held_session,
)  # fmt: skip
from paxlock.api.client.sync_loop import SyncHolding, _cancel_all, _LoopThread, _SyncHeld
from paxlock.api.client.types import (
    Cluster, Configuration, Leader, Lease, Membership, Verification,
)  # fmt: skip

__all__ = ["Client", "SyncElection", "SyncHeldLease", "SyncHeldPermit", "SyncHolding",
           "SyncSession", "SyncTerm"]


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
                request_id: str | None = None, session: str | None = None) -> Lease:  # fmt: skip
        return self._runner.run(self._async.acquire(
            name, ttl=ttl, wait=wait, value=value, lock_delay=lock_delay, request_id=request_id,
            session=session,
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

    def elections(self, prefix: str = "", *, consistent: bool = True) -> builtins.list[Leader]:
        return self._runner.run(self._async.elections(prefix, consistent=consistent))

    def __repr__(self) -> str:
        return f"Client({self.endpoints!r}, identity={self.identity!r})"
