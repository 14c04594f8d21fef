"""``paxlock leases`` and ``paxlock lease get|acquire|renew|release``: the leases of a running
cluster, one request per command (``paxlock lock`` is the one that holds and renews).

``acquire`` prints the fencing token alone, so that ``TOKEN=$(paxlock lease acquire NAME)``
works; ``renew`` and ``release`` take it back. The holder the cluster records is
``--identity``, by default ``cli@HOST`` as for sessions and semaphores, so that a later
``renew`` or ``release`` from the same host names the same holder. Connection options,
``--json`` and the exit statuses are those of every client command (``output``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from paxlock.api.cli.arguments import add_prefix_argument, identity, lease_name, seconds, ttl
from paxlock.api.cli.coord_command import default_identity
from paxlock.api.cli.member_command import Handler, common_arguments, run_client
from paxlock.api.cli.output import EXITS_HELP, cell, duration, table, to_json

if TYPE_CHECKING:  # imported when a command runs: --help stays quick
    from paxlock.api.client.aio import AsyncClient
    from paxlock.api.client.types import Lease

LEASE_HEADER = ("NAME", "HOLDER", "TOKEN", "EXPIRES", "TTL", "SESSION", "WAITERS")


def lease_rows(leases: Sequence[Lease]) -> list[list[str]]:
    return [[lease.name, lease.holder, str(lease.token), f"in {duration(lease.expires_in)}",
             duration(lease.ttl), cell(lease.session), str(lease.waiters)]
            for lease in leases]  # fmt: skip


def leases_table(leases: Sequence[Lease]) -> str:
    return table(LEASE_HEADER, lease_rows(leases)) if leases else "no leases"


# -- the handlers ----------------------------------------------------------------------------

async def _leases(client: AsyncClient, args: argparse.Namespace) -> str:
    leases = await client.list(args.prefix)
    return to_json({"leases": leases}) if args.json else leases_table(leases)


async def _get(client: AsyncClient, args: argparse.Namespace) -> str:
    from paxlock.api.client.errors import NotFound

    lease = await client.get(args.name)
    if lease is None:
        raise NotFound(f"nobody holds {args.name}")
    return to_json(lease) if args.json else leases_table([lease])


async def _acquire(client: AsyncClient, args: argparse.Namespace) -> str:
    lease = await client.acquire(args.name, ttl=args.ttl, wait=args.wait, value=args.value,
                                 lock_delay=args.lock_delay, session=args.session)  # fmt: skip
    return to_json(lease) if args.json else str(lease.token)


async def _renew(client: AsyncClient, args: argparse.Namespace) -> str:
    lease = await client.renew(args.name, args.token)
    return to_json(lease) if args.json else \
        f"renewed {lease.name} (token {lease.token}): expires in {duration(lease.expires_in)}"


async def _release(client: AsyncClient, args: argparse.Namespace) -> str:
    await client.release(args.name, args.token)
    return to_json({"released": True}) if args.json else \
        f"released {args.name} (token {args.token})"


# -- the parsers -----------------------------------------------------------------------------

def add_lease_commands(commands: Any) -> None:
    """``paxlock leases`` and ``paxlock lease ACTION`` into the top-level subparsers."""
    common = common_arguments()
    common.add_argument("--identity", type=identity, default=None,
                        help="the holder the cluster records (default: cli@HOST)")
    leases = commands.add_parser(
        "leases", parents=[common], help="list the leases held (a table, or --json)",
        description="List the leases held, sorted by name: holder, fencing token, time to "
        f"expiry, TTL, session and the acquires waiting for each. {EXITS_HELP}")  # fmt: skip
    add_prefix_argument(leases)
    leases.set_defaults(handler=run_lease, lease_action="list", lease_handler=_leases)

    lease = commands.add_parser(
        "lease", help="get, acquire, renew or release one lease (one request each)",
        description="One request about one lease: nothing is renewed after it returns (use "
        "'paxlock lock NAME -- CMD' to hold a lease while a command runs). The holder "
        f"recorded is --identity (default cli@HOST). {EXITS_HELP}")  # fmt: skip
    actions = lease.add_subparsers(dest="lease_action", required=True, metavar="ACTION")

    def action(name: str, helptext: str, handler: Handler) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = actions.add_parser(
            name, parents=[common], help=helptext,
            description=f"{helptext[0].upper()}{helptext[1:]}. {EXITS_HELP}")  # fmt: skip
        sub.set_defaults(handler=run_lease, lease_handler=handler)
        sub.add_argument("name", metavar="NAME", type=lease_name,
                         help="the lease: 1 to 256 characters of A-Za-z0-9._/-")  # fmt: skip
        return sub

    action("get", "show who holds a lease (exit status 1 when nobody does)", _get)
    acquire = action("acquire", "acquire a lease and print its fencing token", _acquire)
    acquire.add_argument("--ttl", type=ttl, default=10.0, metavar="S",
                         help="seconds, unless --session (default: %(default)s)")
    acquire.add_argument("--wait", type=seconds, default=0.0, metavar="S",
                         help="how long to wait while it is held before exit status 3 "
                         "(default: %(default)s)")  # fmt: skip
    acquire.add_argument("--value", default=None, help="text stored with the lease")
    acquire.add_argument("--lock-delay", type=seconds, default=0.0, metavar="S",
                         help="after an expiry (not a release) the name stays blocked this "
                         "long (default: %(default)s)")  # fmt: skip
    acquire.add_argument("--session", metavar="ID", default=None,
                         help="bind the lease to this session instead of a ttl")
    for name, helptext, handler in (("renew", "restart a lease's TTL", _renew),
                                    ("release", "release a lease", _release)):
        action(name, helptext, handler).add_argument(
            "token", metavar="TOKEN", type=int, help="the fencing token acquire printed")


def run_lease(args: argparse.Namespace) -> int:
    prog = "paxlock leases" if args.lease_action == "list" else f"paxlock lease {args.lease_action}"
    handler: Handler = args.lease_handler
    return run_client(prog, handler, args, " (an earlier attempt may have done it)",
                      identity=args.identity or default_identity())  # fmt: skip
