"""The machinery of ``sync.Client``: the loop thread every call runs on, and the blocking
faces of held grants (``_SyncHeld``, ``SyncHolding``), shared by ``sync`` and ``sync_coord``."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, Generic, TypeVar

from paxlock.api.client.errors import LeaseLost
from paxlock.api.client.holding import Holding, _Held

__all__ = ["SyncHolding", "_LoopThread", "_SyncHeld", "_cancel_all"]

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
