"""``paxlock lock NAME --ttl S -- CMD...``: run a command while holding a lease.

The lease is renewed in the background by the SDK. Should it be lost — by the SDK's
conservative clock, ``sent + ttl × (1 − margin)``, which no server can undercut — the command
gets SIGTERM at once and SIGKILL ``ttl × margin / 2`` later: both strictly before
``sent + ttl``, the earliest moment any server could grant the name to someone else. (A
``consul lock`` child can outlive its lock by a minute and more.) The command sees the
fencing token in ``PAXLOCK_TOKEN`` so it can pass it to the resources it writes.

Exit status: the command's (128 + signal when it was killed); as a shell's, 127 when the
command is not found and 126 when it is found but cannot be run (both decided before the lease
is taken when they can be); 2 when the cluster calls the request invalid; 3 when the name
stayed held for ``--wait``; 4 when the cluster was unavailable — no node answered, or none
had a primary, for the current wait plus the retry deadline; 5 when the lease was lost; 130
when SIGINT or SIGTERM came while it waited for the name (the wait is withdrawn).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

from paxlock.api.cli.output import EXIT_HELD, EXIT_INTERRUPTED, EXIT_LOST, EXIT_OK
from paxlock.api.cli.output import EXIT_UNAVAILABLE, EXIT_USAGE
from paxlock.api.client.aio import AsyncClient
from paxlock.api.client.errors import BadRequest, LeaseHeld, PaxlockError
from paxlock.api.client.holding import HeldLease, Holding, Term

EXIT_CANNOT_EXECUTE, EXIT_NOT_FOUND = 126, 127
"""A POSIX shell's statuses for a command found but not runnable, and one not found."""
RELEASE_S = 2.0


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


def _status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def unrunnable(program: str) -> tuple[int, str] | None:
    """Why a shell would not run ``program``, as (exit status, reason), or None: a name
    without a slash is looked up on ``$PATH``, a path must be an executable file."""
    if os.sep not in program:
        return None if shutil.which(program) else (EXIT_NOT_FOUND, "command not found")
    if not os.path.exists(program):
        return EXIT_NOT_FOUND, os.strerror(errno.ENOENT)
    if os.path.isdir(program):
        return EXIT_CANNOT_EXECUTE, os.strerror(errno.EISDIR)
    if not os.access(program, os.X_OK):
        return EXIT_CANNOT_EXECUTE, os.strerror(errno.EACCES)
    return None


async def run_locked(endpoints: Sequence[str], name: str, command: Sequence[str], *,
                     ttl: float, wait: float | None, margin: float,
                     retry_deadline_s: float, identity: str | None = None,
                     ca_file: str | None = None, token: str | None = None) -> int:  # fmt: skip
    refused = unrunnable(command[0])
    if refused is not None:
        status, reason = refused
        print(f"paxlock lock: {command[0]}: {reason}", file=sys.stderr)
        return status
    async with AsyncClient(list(endpoints), identity=identity, token=token,
                           retry_deadline=retry_deadline_s, ca_file=ca_file) as client:  # fmt: skip
        holding = client.lock(name, ttl=ttl, wait=wait, margin=margin)
        return await hold_and_run("paxlock lock", name, holding, command,
                                  grace_s=ttl * margin / 2)  # fmt: skip


async def hold_and_run(prog: str, name: str, holding: Holding[Any],
                       command: Sequence[str] | None, *, grace_s: float,
                       announce: Callable[[Any], None] | None = None) -> int:  # fmt: skip
    """Obtain ``holding`` (a lease or a term), ``announce`` it, run ``command`` while it is
    held — or, without one, hold it until SIGINT or SIGTERM — then release it. SIGINT or
    SIGTERM while waiting for it gives up the wait (exit 130). Returns the exit status of
    ``paxlock lock``/``paxlock elect``."""
    interrupted = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, interrupted.set)
    try:
        return await _obtain_and_run(prog, name, holding, command, grace_s, announce,
                                     interrupted)  # fmt: skip
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


async def _obtain_and_run(prog: str, name: str, holding: Holding[Any],
                          command: Sequence[str] | None, grace_s: float,
                          announce: Callable[[Any], None] | None,
                          interrupted: asyncio.Event) -> int:  # fmt: skip
    obtain = asyncio.ensure_future(holding.__aenter__())
    stop = asyncio.ensure_future(interrupted.wait())
    await asyncio.wait({obtain, stop}, return_when=asyncio.FIRST_COMPLETED)
    stop.cancel()
    if not obtain.done():  # the SDK abandons the parked request (AsyncClient.close waits)
        obtain.cancel()
        with contextlib.suppress(asyncio.CancelledError, PaxlockError):
            await obtain
        print(f"{prog}: interrupted while waiting for {name}", file=sys.stderr)
        return EXIT_INTERRUPTED
    try:
        held = obtain.result()
    except LeaseHeld as held_by:
        print(f"{prog}: {name} is held by {held_by.holder or 'another holder'}",
              file=sys.stderr)  # fmt: skip
        return EXIT_HELD
    except BadRequest as error:
        print(f"{prog}: {error.message}", file=sys.stderr)
        return EXIT_USAGE
    except PaxlockError as error:
        print(f"{prog}: cannot acquire {name}: {error.message}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    try:
        if interrupted.is_set():  # granted as the signal came: give it back at once
            return EXIT_INTERRUPTED
        if announce is not None:
            announce(held)
        if command:
            return await _run_holding(prog, held, command, grace_s, interrupted)
        return await _hold_until_stopped(prog, held, interrupted)
    finally:
        with contextlib.suppress(PaxlockError, TimeoutError):
            # Release (bounded: after a loss the cluster may well be unreachable).
            await asyncio.wait_for(holding.__aexit__(None, None, None), RELEASE_S)


def _what(held: HeldLease | Term) -> str:
    return "the leadership" if isinstance(held, Term) else "the lease"


async def _hold_until_stopped(prog: str, held: HeldLease | Term,
                              interrupted: asyncio.Event) -> int:  # fmt: skip
    """Hold until SIGINT/SIGTERM (exit 0: then released) or until lost (exit 5)."""
    stop = asyncio.ensure_future(interrupted.wait())
    lost = asyncio.ensure_future(held.lost.wait())
    try:
        await asyncio.wait({lost, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in (lost, stop):
            waiter.cancel()
    if held.lost.is_set():
        print(f"{prog}: {_what(held)} was lost: {held.lost_reason or 'no renewal in time'}",
              file=sys.stderr)  # fmt: skip
        return EXIT_LOST
    return EXIT_OK


async def _run_holding(prog: str, lease: HeldLease | Term, command: Sequence[str],
                       grace_s: float, interrupted: asyncio.Event) -> int:  # fmt: skip
    """Run ``command`` while ``lease`` is held; stop its process group if the lease is lost
    or this process is interrupted. Returns the exit status of ``paxlock lock``."""
    env = dict(os.environ, PAXLOCK_NAME=lease.name, PAXLOCK_TOKEN=str(lease.token))
    try:
        # Its own process group, so that the signals reach everything the command started.
        child = await asyncio.create_subprocess_exec(*command, env=env, start_new_session=True)
    except OSError as error:  # found, and yet exec failed (a missing script interpreter...)
        status = EXIT_NOT_FOUND if isinstance(error, FileNotFoundError) else EXIT_CANNOT_EXECUTE
        print(f"{prog}: {command[0]}: cannot execute: {error.strerror or error}",
              file=sys.stderr)  # fmt: skip
        return status
    lost = asyncio.ensure_future(lease.lost.wait())
    exited = asyncio.ensure_future(child.wait())
    stop = asyncio.ensure_future(interrupted.wait())
    try:
        await asyncio.wait({lost, exited, stop}, return_when=asyncio.FIRST_COMPLETED)
        if not exited.done():
            why = f"{_what(lease)} was lost" if lost.done() else "interrupted"
            print(f"{prog}: {why}; stopping the command (SIGTERM, SIGKILL in "
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
