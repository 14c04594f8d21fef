"""``paxlock member list|add|promote|remove``: the membership of a running cluster.

Each subcommand is one call of the SDK (``AsyncClient.members``, ``add_member``,
``promote_member``, ``remove_member``), sent to the endpoints ``paxlock status`` uses
(``--endpoint``, else ``PAXLOCK_ENDPOINTS``, else the three ports of ``paxlock up``), with
``--ca``/``PAXLOCK_CA`` and ``--token-file``/``PAXLOCK_AUTH_TOKEN`` (changes need an admin
token under ``--auth``). A change is forwarded to the primary by whichever member gets it.

The procedure it serves (README, Operations): start the new member with ``paxlock serve
--join``, ``member add`` it (a learner: it follows the log and catches up, but no quorum
counts it), wait until ``member list`` shows its lag near 0, ``member promote`` it. One
change at a time: the cluster refuses a change until the previous one took effect.

Exit status: 0 done; 1 the cluster refused (the one line on stderr says why); 2 a usage
error; 4 the cluster was unavailable (no endpoint answered, or none knew a primary, within
``--retry-deadline``): whether a change was made is then unknown — ``member list`` tells.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import TYPE_CHECKING

from paxlock.api.cli.arguments import add_ca_argument, add_endpoint_argument, add_token_argument
from paxlock.api.cli.arguments import ca_file, seconds, token_from
from paxlock.api.cli.output import EXIT_HELD, EXIT_INTERRUPTED, EXIT_OK, EXIT_REFUSED
from paxlock.api.cli.output import EXIT_UNAVAILABLE, EXIT_USAGE, EXITS_HELP
from paxlock.api.cli.output import cell, table as aligned
from paxlock.api.cli.status import DEFAULT_ENDPOINTS, endpoints_from

if TYPE_CHECKING:  # imported when a command runs: --help stays quick
    from paxlock.api.client.aio import AsyncClient
    from paxlock.api.client.types import Configuration, Membership

RETRY_DEADLINE_S = 10.0
_MEMBER_ID = re.compile(r"[A-Za-z0-9._-]{1,256}")
ALPHA_SLOTS = 64
"""``core.membership.ALPHA``: a change governs the slots from ALPHA after its own (not
imported: the CLI's ``--help`` should not load the core)."""


def member_id(text: str) -> str:
    if not _MEMBER_ID.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"invalid member id {text[:60]!r}: use 1 to 256 characters of A-Za-z0-9._-")
    return text


def member_url(text: str) -> str:
    scheme, sep, rest = text.partition("://")
    if not sep or scheme not in ("http", "https") or not rest.strip("/"):
        raise argparse.ArgumentTypeError(f"must be http(s)://HOST:PORT, not {text[:100]!r}")
    return text


def common_arguments() -> argparse.ArgumentParser:
    """The connection options and ``--json`` every client subcommand takes (a parent)."""
    common = argparse.ArgumentParser(add_help=False)
    add_endpoint_argument(common)
    common.add_argument("--json", action="store_true",
                        help="print the answer as one JSON object")
    common.add_argument("--retry-deadline", type=seconds, default=RETRY_DEADLINE_S, metavar="S",
                        help="how long to retry members that do not answer or know no primary "
                        "before exit status 4 (default: %(default)s)")  # fmt: skip
    add_ca_argument(common)
    add_token_argument(common)
    return common


def add_member_arguments(parser: argparse.ArgumentParser) -> None:
    """The four subcommands, each with the connection options and ``--json``."""
    common = common_arguments()
    actions = parser.add_subparsers(dest="member_action", required=True, metavar="ACTION")
    listing = actions.add_parser(
        "list", parents=[common], help="show voters and learners, with each one's lag",
        description="Show every member: its role (voter, or learner: follows the log and is "
        "never counted in a quorum), URL, whether it is the primary, whether the cluster "
        "hears from it, and how many slots it lags behind. A pending change is shown below. "
        + EXITS_HELP)
    listing.set_defaults(member_handler=_list)
    add = actions.add_parser(
        "add", parents=[common], help="add a member as a learner",
        description="Add the member that answers at URL as a learner. Start it first, on an "
        "empty data dir: paxlock serve --id ID --join URL-OF-A-MEMBER ... The cluster asks "
        "it who it is and refuses a URL that answers as another member or cluster. Promote "
        "it once 'paxlock member list' shows its lag near 0. " + EXITS_HELP)
    add.add_argument("id", metavar="ID", type=member_id, help="the new member's id (its --id)")
    add.add_argument("url", metavar="URL", type=member_url,
                     help="where the other members reach it: http(s)://HOST:PORT")
    add.set_defaults(member_handler=_add)
    promote = actions.add_parser(
        "promote", parents=[common], help="make a learner a voter",
        description=f"Make learner ID a voter. Refused while it lags behind; the change "
        f"takes effect {ALPHA_SLOTS} slots after it is chosen (at once: the primary fills "
        f"them). {EXITS_HELP}")  # fmt: skip
    promote.add_argument("id", metavar="ID", type=member_id, help="the learner to promote")
    promote.set_defaults(member_handler=_promote)
    remove = actions.add_parser(
        "remove", parents=[common], help="remove a voter or a learner",
        description="Remove member ID: it neither votes nor learns from then on, and the "
        f"cluster refuses its connections. Remove one member at a time. {EXITS_HELP}")
    remove.add_argument("id", metavar="ID", type=member_id, help="the member to remove")
    remove.set_defaults(member_handler=_remove)


# -- the subcommands -------------------------------------------------------------------------

async def _list(client: AsyncClient, args: argparse.Namespace) -> str:
    membership = await client.members()
    return json.dumps(asdict(membership), indent=2) if args.json else table(membership)


async def _add(client: AsyncClient, args: argparse.Namespace) -> str:
    config = await client.add_member(args.id, args.url)
    return _said(config, args, f"added {args.id} as a learner; promote it once 'paxlock member "
                 f"list' shows its lag near 0: paxlock member promote {args.id}")  # fmt: skip


async def _promote(client: AsyncClient, args: argparse.Namespace) -> str:
    config = await client.promote_member(args.id)
    return _said(config, args, f"promoted {args.id}: it votes from slot "
                 f"{config.epoch + ALPHA_SLOTS} on")  # fmt: skip


async def _remove(client: AsyncClient, args: argparse.Namespace) -> str:
    config = await client.remove_member(args.id)
    return _said(config, args, f"removed {args.id}: from slot {config.epoch + ALPHA_SLOTS} on "
                 "it neither votes nor learns")  # fmt: skip


def _said(config: Configuration, args: argparse.Namespace, sentence: str) -> str:
    if args.json:
        return json.dumps(asdict(config), indent=2)
    voters = ",".join(m.id for m in config.voters) or "-"
    learners = ",".join(m.id for m in config.learners) or "-"
    return f"{sentence}\nvoters {voters}  learners {learners}  (configuration of slot " \
           f"{config.epoch})"  # fmt: skip


def table(membership: Membership) -> str:
    """``paxlock member list``: one line about the cluster, then one row per member."""
    lines = [f"cluster {cell(membership.cluster_id)}  configuration of slot {membership.epoch}"]
    lines.append(aligned(("ID", "ROLE", "URL", "PRIMARY", "REACHABLE", "LAG"), [
        (m.id, m.role, m.url, "yes" if m.primary else "no", "yes" if m.reachable else "NO",
         cell(m.lag)) for m in membership.members
    ]))  # fmt: skip
    pending = membership.pending
    if pending is not None:
        lines.append(f"pending from slot {pending.first_slot}: voters "
                     f"{','.join(pending.voters) or '-'}  learners "
                     f"{','.join(pending.learners) or '-'}")  # fmt: skip
    return "\n".join(lines)


# -- running one -----------------------------------------------------------------------------

Handler = Callable[["AsyncClient", argparse.Namespace], Awaitable[str]]


def run_member(args: argparse.Namespace) -> int:
    return run_client(f"paxlock member {args.member_action}", args.member_handler, args,
                      " (an earlier attempt may have made the change: see 'paxlock member "
                      "list')")  # fmt: skip


def connection(prog: str, args: argparse.Namespace) -> tuple[list[str], str | None, str | None]:
    """Endpoints, CA file and bearer token of a client command (``--endpoint``,
    ``PAXLOCK_ENDPOINTS``, ``--ca``, ``PAXLOCK_CA``, ``--token-file``,
    ``PAXLOCK_AUTH_TOKEN``); an unusable CA or token file exits 2 with one line."""
    endpoints = endpoints_from(args.endpoints, os.environ)
    try:
        ca = ca_file(args, os.environ)
    except ValueError as unusable:
        print(f"{prog}: {unusable}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
    if ca and endpoints == list(DEFAULT_ENDPOINTS):
        endpoints = [url.replace("http://", "https://", 1) for url in endpoints]
    return endpoints, ca, token_from(prog, args.token_file, os.environ)


def run_client(prog: str, handler: Handler, args: argparse.Namespace, maybe_note: str,
               identity: str | None = None) -> int:  # fmt: skip
    """Run one client ``handler`` against the endpoints of ``args``; print its answer. Exit
    status (``output``): 1 refused or not found, 2 a request the cluster calls invalid, 3
    held, 4 unavailable."""
    endpoints, ca, token = connection(prog, args)
    try:
        return asyncio.run(_run(prog, handler, args, endpoints, ca, token, maybe_note,
                                identity))  # fmt: skip
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


async def _run(prog: str, handler: Handler, args: argparse.Namespace, endpoints: list[str],
               ca: str | None, token: str | None, maybe_note: str,
               identity: str | None) -> int:  # fmt: skip
    from paxlock.api.client.aio import AsyncClient
    from paxlock.api.client.errors import BadRequest, LeaseHeld, PaxlockError, Unavailable

    client = AsyncClient(endpoints, identity, ca_file=ca, token=token,
                         retry_deadline=args.retry_deadline)  # fmt: skip
    try:
        text = await handler(client, args)
        if text:
            print(text, flush=True)
    except Unavailable as error:
        print(f"{prog}: cluster unavailable: {error.message}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except PaxlockError as error:
        maybe = maybe_note if error.retried else ""
        print(f"{prog}: {error.message}{maybe}", file=sys.stderr)
        return (EXIT_HELD if isinstance(error, LeaseHeld) else
                EXIT_USAGE if isinstance(error, BadRequest) else EXIT_REFUSED)  # fmt: skip
    finally:
        await client.close()
    return EXIT_OK
