"""``paxlock lock NAME --ttl S -- CMD...``: run a command while holding a lease.

The lease is renewed in the background by the SDK. Should it be lost — by the SDK's
conservative clock, ``sent + ttl × (1 − margin)``, which no server can undercut — the command
gets SIGTERM at once and SIGKILL ``ttl × margin / 2`` later: both strictly before
``sent + ttl``, the earliest moment any server could grant the name to someone else. (A
``consul lock`` child can outlive its lock by a minute and more.) The command sees the
fencing token in ``PAXLOCK_TOKEN`` so it can pass it to the resources it writes.

Exit status: the command's (128 + signal when it was killed), 3 when the name stayed held
for ``--wait``, 4 when the cluster was unavailable, 5 when the lease was lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Sequence

from paxlock.api.client.aio import AsyncClient
from paxlock.api.client.errors import LeaseHeld, PaxlockError, Unavailable

EXIT_HELD, EXIT_UNAVAILABLE, EXIT_LOST = 3, 4, 5
RELEASE_S = 2.0


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


def _status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


async def run_locked(endpoints: Sequence[str], name: str, command: Sequence[str], *,
                     ttl: float, wait: float | None, margin: float,
                     identity: str | None = None) -> int:  # fmt: skip
    grace_s = ttl * margin / 2
    async with AsyncClient(list(endpoints), identity=identity) as client:
        try:
            holding = client.lock(name, ttl=ttl, wait=wait, margin=margin)
            lease = await holding.__aenter__()
        except LeaseHeld as held:
            print(f"paxlock lock: {name} is held by {held.holder or 'another holder'}",
                  file=sys.stderr)  # fmt: skip
            return EXIT_HELD
        except (Unavailable, PaxlockError) as error:
            print(f"paxlock lock: cannot acquire {name}: {error}", file=sys.stderr)
            return EXIT_UNAVAILABLE
        env = dict(os.environ, PAXLOCK_NAME=name, PAXLOCK_TOKEN=str(lease.token))
        # Its own process group, so that the signals reach everything the command started.
        child = await asyncio.create_subprocess_exec(*command, env=env, start_new_session=True)
        lost = asyncio.ensure_future(lease.lost.wait())
        exited = asyncio.ensure_future(child.wait())
        interrupted = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, interrupted.set)
        stop = asyncio.ensure_future(interrupted.wait())
        try:
            await asyncio.wait({lost, exited, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not exited.done():
                why = "the lease was lost" if lost.done() else "interrupted"
                print(f"paxlock lock: {why}; stopping the command (SIGTERM, SIGKILL in "
                      f"{grace_s:.2f} s)", file=sys.stderr)  # fmt: skip
                _signal_group(child.pid, signal.SIGTERM)
                try:
                    await asyncio.wait_for(asyncio.shield(exited), grace_s)
                except TimeoutError:
                    _signal_group(child.pid, signal.SIGKILL)
                    await exited
                _signal_group(child.pid, signal.SIGKILL)  # stragglers of the group
                if lost.done():
                    return EXIT_LOST
            return _status(exited.result())
        finally:
            for waiter in (lost, stop):
                waiter.cancel()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
            with contextlib.suppress(PaxlockError, TimeoutError):
                # Release (bounded: after a loss the cluster may well be unreachable).
                await asyncio.wait_for(holding.__aexit__(None, None, None), RELEASE_S)
