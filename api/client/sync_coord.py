"""The blocking face of ``coord_calls`` for ``sync.Client``: sessions, semaphores,
read/write locks and groups, each call run on the client's loop thread (so any number of
threads may call at once, as for leases)."""

from __future__ import annotations

import builtins
import threading
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from paxlock.api.client.coord_calls import OBSERVE_POLL_S
from paxlock.api.client.coord_session import HeldSession, SessionHolding
from paxlock.api.client.coord_types import (
    GroupChanges, GroupInfo, GroupMember, Hold, Permit, SessionInfo, SharedState,
)  # fmt: skip
from paxlock.api.client.holding import HeldPermit
from paxlock.api.client.types import Leader, Verification

from paxlock.api.client.sync_loop import SyncHolding, _LoopThread, _SyncHeld

if TYPE_CHECKING:
    from paxlock.api.client.aio import AsyncClient

__all__ = ["SyncCoordination", "SyncHeldPermit", "SyncRWLock", "SyncSession"]


class SyncSession:
    """What ``Client.session()`` yields: ``id``, ``lost`` (a ``threading.Event``)."""

    def __init__(self, held: HeldSession) -> None:
        self._held = held
        self.lost = threading.Event()
        held.add_lost_callback(self.lost.set)

    @property
    def id(self) -> str:
        return self._held.id

    @property
    def info(self) -> SessionInfo:
        return self._held.info

    @property
    def lost_reason(self) -> str | None:
        return self._held.lost_reason

    def remaining_s(self) -> float:
        return self._held.remaining_s()

    def check(self) -> None:
        """Raise ``LeaseLost`` unless the session is still trusted."""
        self._held.check()

    def __repr__(self) -> str:
        return f"SyncSession(id={self.id!r}, lost={self.lost.is_set()})"


SyncSessionLike = SyncSession | str


def _session(session: SyncSessionLike | None) -> HeldSession | str | None:
    return session._held if isinstance(session, SyncSession) else session


def held_session(session: SyncSession | None) -> HeldSession | None:
    return None if session is None else session._held


class SyncSessionHolding:
    """``with client.session(ttl=10) as s:``: open, renewed on the loop thread, closed."""

    def __init__(self, runner: _LoopThread, holding: SessionHolding) -> None:
        self._runner, self._holding = runner, holding

    def __enter__(self) -> SyncSession:
        async def enter() -> SyncSession:
            return SyncSession(await self._holding.__aenter__())

        return self._runner.run(enter())

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        self._runner.run(self._holding.__aexit__(exc_type, exc, tb))


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


class SyncRWLock:
    def __init__(self, client: SyncCoordination, name: str) -> None:
        self._client, self.name = client, name

    def read(self, **options: Any) -> SyncHolding[HeldPermit, SyncHeldPermit]:
        return self._client._shared(self._client._async.rwlock(self.name).read, options)

    def write(self, **options: Any) -> SyncHolding[HeldPermit, SyncHeldPermit]:
        return self._client._shared(self._client._async.rwlock(self.name).write, options)


class SyncCoordination:
    """Mixed into ``sync.Client``; the ``coord_calls`` surface, blocking."""

    _async: AsyncClient
    _runner: _LoopThread

    def session(self, ttl: float | None = None, *,
                margin: float | None = None) -> SyncSessionHolding:  # fmt: skip
        """``with client.session(ttl=10) as s:`` — as ``AsyncClient.session``."""
        return SyncSessionHolding(self._runner, self._async.session(ttl, margin=margin))

    def open_session(self, ttl: float | None = None) -> SessionInfo:
        return self._runner.run(self._async.open_session(ttl))

    def renew_session(self, session: SyncSessionLike) -> SessionInfo:
        return self._runner.run(self._async.renew_session(_session(session) or ""))

    def close_session(self, session: SyncSessionLike) -> builtins.list[Hold]:
        return self._runner.run(self._async.close_session(_session(session) or ""))

    def get_session(self, session: SyncSessionLike) -> SessionInfo | None:
        return self._runner.run(self._async.get_session(_session(session) or ""))

    def list_sessions(self, holder: str | None = None) -> builtins.list[SessionInfo]:
        return self._runner.run(self._async.list_sessions(holder))

    # -- semaphores and read/write locks ---------------------------------------------------

    def _shared(self, make: Any, options: dict[str, Any]
                ) -> SyncHolding[HeldPermit, SyncHeldPermit]:  # fmt: skip
        cancel_on_loss = bool(options.pop("cancel_on_loss", False))
        options["session"] = held_session(options.get("session"))
        runner = self._runner
        return SyncHolding(runner, make(**options), lambda held: SyncHeldPermit(held, runner),
                           cancel_on_loss=cancel_on_loss)  # fmt: skip

    def semaphore(self, name: str, limit: int, **options: Any
                  ) -> SyncHolding[HeldPermit, SyncHeldPermit]:  # fmt: skip
        """``with client.semaphore("pool", 5) as permit:`` — as ``AsyncClient.semaphore``."""
        return self._shared(lambda **o: self._async.semaphore(name, limit, **o), options)

    def rwlock(self, name: str) -> SyncRWLock:
        return SyncRWLock(self, name)

    def acquire_shared(self, kind: Literal["semaphore", "rwlock"], name: str, *,
                       session: SyncSessionLike | None = None, **options: Any) -> Permit:  # fmt: skip
        return self._runner.run(self._async.acquire_shared(kind, name, session=_session(session),
                                                           **options))  # fmt: skip

    def release_shared(self, kind: Literal["semaphore", "rwlock"], name: str, token: int, *,
                       holder: str | None = None) -> None:  # fmt: skip
        self._runner.run(self._async.release_shared(kind, name, token, holder=holder))

    def get_shared(self, kind: Literal["semaphore", "rwlock"], name: str) -> SharedState | None:
        return self._runner.run(self._async.get_shared(kind, name))

    def verify_shared(self, kind: Literal["semaphore", "rwlock"], name: str,
                      token: int) -> Verification:  # fmt: skip
        return self._runner.run(self._async.verify_shared(kind, name, token))

    # -- groups ----------------------------------------------------------------------------

    def create_group(self, group: str) -> GroupInfo:
        return self._runner.run(self._async.create_group(group))

    def delete_group(self, group: str) -> None:
        self._runner.run(self._async.delete_group(group))

    def groups(self, prefix: str = "") -> builtins.list[str]:
        return self._runner.run(self._async.groups(prefix))

    def group(self, group: str) -> GroupInfo:
        return self._runner.run(self._async.group(group))

    def group_members(self, group: str) -> builtins.list[GroupMember]:
        return self._runner.run(self._async.group_members(group))

    def member(self, group: str, member: str) -> GroupMember:
        return self._runner.run(self._async.member(group, member))

    def join_group(self, group: str, member: str | None = None, capabilities: bytes = b"", *,
                   session: SyncSessionLike) -> GroupMember:  # fmt: skip
        return self._runner.run(self._async.join_group(group, member, capabilities,
                                                       session=_session(session) or ""))

    def leave_group(self, group: str, member: str | None = None) -> None:
        self._runner.run(self._async.leave_group(group, member))

    def update_capabilities(self, group: str, capabilities: bytes,
                            member: str | None = None) -> GroupMember:  # fmt: skip
        return self._runner.run(self._async.update_capabilities(group, capabilities, member))

    def observe_group(self, group: str, *, after: int = 0,
                      timeout: float = OBSERVE_POLL_S) -> GroupChanges | None:  # fmt: skip
        return self._runner.run(self._async.observe_group(group, after=after, timeout=timeout))

    def watch_group(self, group: str, *, after: int = 0,
                    poll_s: float = OBSERVE_POLL_S) -> Iterator[GroupChanges]:  # fmt: skip
        """Each batch of changes, for ever; ``break`` to stop."""
        while True:
            changes = self.observe_group(group, after=after, timeout=poll_s)
            if changes is not None and changes.revision > after:
                after = changes.revision
                yield changes

    def group_leader(self, group: str) -> Leader | None:
        return self._runner.run(self._async.group_leader(group))

    def campaign_group(self, group: str, value: str | None = None, *,
                       candidate: str | None = None, session: SyncSessionLike | None = None,
                       ttl: float | None = None, wait: float = 0.0) -> Leader:  # fmt: skip
        return self._runner.run(self._async.campaign_group(
            group, value, candidate=candidate, session=_session(session), ttl=ttl, wait=wait))

    def renew_group_leader(self, group: str, token: int, *,
                           candidate: str | None = None) -> Leader:  # fmt: skip
        return self._runner.run(self._async.renew_group_leader(group, token,
                                                               candidate=candidate))

    def resign_group(self, group: str, token: int, *, candidate: str | None = None) -> None:
        self._runner.run(self._async.resign_group(group, token, candidate=candidate))
