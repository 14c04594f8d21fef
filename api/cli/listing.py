"""``paxlock sessions`` and ``paxlock groups``: what a cluster holds, as tables (``--json``
for scripts). One list request each; ``groups`` then reads each group for its member count
(concurrently), so a group deleted in between is left out."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from paxlock.api.cli.arguments import add_prefix_argument
from paxlock.api.cli.member_command import common_arguments, run_client
from paxlock.api.cli.output import EXITS_HELP, duration, table, to_json

if TYPE_CHECKING:  # imported when a command runs: --help stays quick
    from paxlock.api.client.aio import AsyncClient
    from paxlock.api.client.coord_types import GroupInfo, SessionInfo


def sessions_table(sessions: Sequence[SessionInfo]) -> str:
    if not sessions:
        return "no sessions"
    return table(("ID", "HOLDER", "TTL", "EXPIRES", "TOKEN"), [
        (s.id, s.holder, duration(s.ttl), f"in {duration(s.expires_in)}", str(s.token))
        for s in sessions])  # fmt: skip


async def _sessions(client: AsyncClient, args: argparse.Namespace) -> str:
    sessions = await client.list_sessions(args.holder)
    return to_json({"sessions": sessions}) if args.json else sessions_table(sessions)


async def _group(client: AsyncClient, name: str) -> GroupInfo | None:
    from paxlock.api.client.errors import NotFound

    try:
        return await client.group(name)
    except NotFound:
        return None


async def _groups(client: AsyncClient, args: argparse.Namespace) -> str:
    names = await client.groups(args.prefix)
    found = await asyncio.gather(*(_group(client, name) for name in names))
    groups = [group for group in found if group is not None]
    if args.json:
        return to_json({"groups": [{"name": g.name, "members": len(g.members),
                                    "revision": g.revision} for g in groups]})  # fmt: skip
    if not groups:
        return "no groups"
    return table(("GROUP", "MEMBERS", "REVISION"),
                 [(g.name, str(len(g.members)), str(g.revision)) for g in groups])


def add_listing_commands(commands: Any) -> None:
    """``paxlock sessions`` and ``paxlock groups`` into the top-level subparsers."""
    common = common_arguments()
    sessions = commands.add_parser(
        "sessions", parents=[common], help="list the open sessions (a table, or --json)",
        description=f"List the open sessions: holder, TTL, time to expiry. {EXITS_HELP}")
    sessions.add_argument("--holder", default=None,
                          help="only this holder's (default: every holder)")  # fmt: skip
    sessions.set_defaults(handler=lambda args: run_client("paxlock sessions", _sessions, args, ""))
    groups = commands.add_parser(
        "groups", parents=[common], help="list the groups and their member counts",
        description=f"List the groups with how many members each has. {EXITS_HELP}")
    add_prefix_argument(groups)
    groups.set_defaults(handler=lambda args: run_client("paxlock groups", _groups, args, ""))
