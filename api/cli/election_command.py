"""``paxlock elections``, ``paxlock elect NAME VALUE [-- CMD]`` and ``paxlock observe NAME``.

``elect`` is ``paxlock lock`` for an election (``etcdctl elect``): it campaigns, waits to
lead, prints the leader, then runs CMD while leading (``PAXLOCK_TOKEN`` is the term's fencing
token; on a loss CMD gets SIGTERM, then SIGKILL, before anyone else can lead) and resigns
once CMD exits. Without CMD it leads until Ctrl-C or SIGTERM, then resigns. Both share
``lock_command.hold_and_run``.

``observe`` prints every change of an election's leader until Ctrl-C (exit 0): one line per
change, or JSON lines with ``--json``. Changes closer together than one poll may arrive as
the latest of them only (``Election.observe``).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from paxlock.api.cli.arguments import add_prefix_argument, fraction, identity, lease_name
from paxlock.api.cli.arguments import seconds, ttl
from paxlock.api.cli.coord_command import default_identity
from paxlock.api.cli.member_command import common_arguments, connection, run_client
from paxlock.api.cli.output import (
    EXIT_INTERRUPTED, EXIT_OK, EXITS_HELP, EXITS_RUN_HELP, cell, duration,
    table, to_json,
)  # fmt: skip

if TYPE_CHECKING:  # imported when a command runs: --help stays quick
    from paxlock.api.client.aio import AsyncClient
    from paxlock.api.client.types import Leader

LEADER_HEADER = ("NAME", "LEADER", "VALUE", "TOKEN", "EXPIRES", "TTL", "SESSION", "WAITERS")


def leaders_table(leaders: Sequence[Leader]) -> str:
    if not leaders:
        return "no elections"
    rows = [[l.name, l.leader, cell(l.value), str(l.token), f"in {duration(l.expires_in)}",
             duration(l.ttl), cell(l.session), str(l.waiters)] for l in leaders]  # fmt: skip
    return table(LEADER_HEADER, rows)


def leader_line(name: str, leader: Leader | None) -> str:
    """One change, as ``observe`` and ``elect`` print it."""
    if leader is None:
        return f"{name}: no leader"
    return f"{name}: leader {leader.leader} value {cell(leader.value)} token {leader.token} " \
           f"(revision {leader.revision})"  # fmt: skip


async def _elections(client: AsyncClient, args: argparse.Namespace) -> str:
    leaders = await client.elections(args.prefix)
    return to_json({"elections": leaders}) if args.json else leaders_table(leaders)


# -- observe -----------------------------------------------------------------------------------

async def _observe(client: AsyncClient, args: argparse.Namespace) -> str:
    """Stream until SIGINT/SIGTERM; one ``cluster()`` call first, so that a cluster nobody
    answers for is exit status 4 rather than retried for ever."""
    await client.cluster()
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, task.cancel)
    try:
        async for leader in client.election(args.name).observe():
            state = leader if leader is not None else {"name": args.name, "leader": None}
            print(to_json(state, indent=None) if args.json else leader_line(args.name, leader),
                  flush=True)  # fmt: skip
    except asyncio.CancelledError:
        task.uncancel()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return ""


# -- elect -------------------------------------------------------------------------------------

def run_elect(args: argparse.Namespace) -> int:
    from paxlock.api.cli.serve import run_fast

    prog = "paxlock elect"
    endpoints, ca, token = connection(prog, args)
    try:
        return run_fast(_elect(prog, args, endpoints, ca, token))
    except KeyboardInterrupt:  # while campaigning: nothing held, nothing to resign
        return EXIT_INTERRUPTED


async def _elect(prog: str, args: argparse.Namespace, endpoints: list[str], ca: str | None,
                 token: str | None) -> int:  # fmt: skip
    from paxlock.api.cli.lock_command import hold_and_run, unrunnable
    from paxlock.api.client.aio import AsyncClient

    command: list[str] = args.cmd
    refused = unrunnable(command[0]) if command else None
    if refused is not None:
        status, reason = refused
        print(f"{prog}: {command[0]}: {reason}", file=sys.stderr)
        return status

    def announce(term: Any) -> None:
        leader = term.leader
        print(to_json(leader, indent=None) if args.json else leader_line(args.name, leader),
              flush=True)  # fmt: skip

    async with AsyncClient(endpoints, identity=args.identity or default_identity(), token=token,
                           retry_deadline=args.retry_deadline, ca_file=ca) as client:  # fmt: skip
        holding = client.election(args.name).campaign(args.value, ttl=args.ttl, wait=args.wait,
                                                      margin=args.margin)  # fmt: skip
        return await hold_and_run(prog, args.name, holding, command,
                                  grace_s=args.ttl * args.margin / 2, announce=announce)


# -- the parsers -------------------------------------------------------------------------------

def add_election_commands(commands: Any) -> None:
    """``paxlock elections``, ``elect`` and ``observe`` into the top-level subparsers."""
    common = common_arguments()
    elections = commands.add_parser(
        "elections", parents=[common], help="list the elections led now (a table, or --json)",
        description="List the names led now, as leaders, sorted by name: leader, value, "
        "fencing token, time to expiry, TTL and session (leases and elections share one "
        f"namespace, so held leases are listed too). {EXITS_HELP}")  # fmt: skip
    add_prefix_argument(elections)
    elections.set_defaults(handler=_run_listing)

    observe = commands.add_parser(
        "observe", parents=[common], help="print every change of an election's leader",
        description="Print the leader of election NAME, then every change of it, one line "
        "each (--json: one JSON object a line), until Ctrl-C or SIGTERM (exit 0). Changes "
        "closer together than one poll may show as the latest of them only. Failures after "
        f"the start are retried. {EXITS_HELP}")  # fmt: skip
    observe.add_argument("name", metavar="NAME", type=lease_name, help="the election")
    observe.set_defaults(handler=_run_observe)

    elect = commands.add_parser(
        "elect", parents=[common], help="lead an election, running a command while leading",
        description="Campaign for election NAME with VALUE, wait to lead, print the leader, "
        "then run CMD while leading (renewing; CMD sees the term's fencing token in "
        "PAXLOCK_TOKEN; if leadership is lost, CMD gets SIGTERM, then SIGKILL, before anyone "
        "else can lead) and resign when it exits. Without CMD, lead until Ctrl-C or SIGTERM, "
        f"then resign (exit 0). {EXITS_RUN_HELP}")  # fmt: skip
    elect.add_argument("name", metavar="NAME", type=lease_name, help="the election")
    elect.add_argument("value", metavar="VALUE", help="what the leader proclaims")
    elect.add_argument("--ttl", type=ttl, default=10.0, metavar="S",
                       help="leadership TTL in seconds (default: %(default)s)")
    elect.add_argument("--wait", type=seconds, default=None, metavar="S",
                       help="how long to wait to lead before exit status 3 (default: for ever)")
    elect.add_argument("--margin", type=fraction, default=0.2, metavar="F",
                       help="fraction of the TTL kept as safety margin (default: %(default)s)")
    elect.add_argument("--identity", type=identity, default=None,
                       help="the candidate the cluster records (default: cli@HOST)")
    elect.set_defaults(handler=run_elect, cmd=[])
    elect.usage = elect.format_usage().removeprefix("usage: ").rstrip() + " [-- CMD [ARGS...]]"


def _run_listing(args: argparse.Namespace) -> int:
    return run_client("paxlock elections", _elections, args, "")


def _run_observe(args: argparse.Namespace) -> int:
    status = run_client("paxlock observe", _observe, args, "")
    return EXIT_OK if status == EXIT_INTERRUPTED else status

