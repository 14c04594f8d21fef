"""``paxlock session|semaphore|rwlock|group ...``: sessions, semaphores, read/write locks and
groups of a running cluster from the shell (DESIGN.md §7), one SDK call per command.

Each command is one request: nothing is kept alive after it returns. A session opened here
lives its ttl unless renewed (``paxlock session renew ID``); a permit or a read/write hold
lives its ttl, or as long as the session it names (``--session ID``). The holder recorded by
the cluster is ``--identity`` (default ``cli@HOST``, the same for every command run on this
host, so that a later ``release`` or ``close`` names the same holder).

Connection options, ``--json`` and the exit statuses are those of ``paxlock member``: 0 done,
1 refused (the line on stderr says why), 2 usage error, 3 held (an acquire whose ``--wait``
passed), 4 cluster unavailable.
"""

from __future__ import annotations

import argparse
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from paxlock.api.cli.arguments import add_prefix_argument, identity, lease_name, seconds, ttl
from paxlock.api.cli.member_command import Handler, common_arguments, run_client
from paxlock.api.cli.output import EXITS_HELP, to_json

if TYPE_CHECKING:  # imported when a command runs: --help stays quick
    from paxlock.api.client.aio import AsyncClient

COMMANDS = {
    "session": "open, renew, close or show sessions (one renewal keeps all bound to one alive)",
    "semaphore": "acquire, release or show a counting semaphore's permits",
    "rwlock": "acquire, release or show a read/write lock",
    "group": "create, delete or list groups; join, leave, list members",
}


SHARED_HELP = ("Each command is one request: nothing is renewed after it returns. The holder "
               f"recorded is --identity (default cli@HOST). {EXITS_HELP}")


def default_identity() -> str:
    return f"cli@{(socket.gethostname() or 'host').split('.')[0][:200]}"


def _say(args: argparse.Namespace, value: Any, text: str) -> str:
    return to_json(value) if args.json else text


# -- sessions --------------------------------------------------------------------------------

async def _session_open(client: AsyncClient, args: argparse.Namespace) -> str:
    info = await client.open_session(args.ttl)
    return _say(args, info, f"{info.id}  (ttl {info.ttl:g} s: renew with 'paxlock session "
                f"renew {info.id}')")  # fmt: skip


async def _session_renew(client: AsyncClient, args: argparse.Namespace) -> str:
    info = await client.renew_session(args.id)
    return _say(args, info, f"renewed {info.id}: expires in {info.expires_in or 0:.1f} s")


async def _session_close(client: AsyncClient, args: argparse.Namespace) -> str:
    freed = await client.close_session(args.id)
    lines = [f"closed {args.id}, freeing {len(freed)} hold(s)"]
    lines += [f"  {h.kind} {h.name} ({h.holder}, token {h.token})" for h in freed]
    return _say(args, freed, "\n".join(lines))


async def _session_get(client: AsyncClient, args: argparse.Namespace) -> str:
    info = await client.get_session(args.id)
    if info is None:
        from paxlock.api.client.errors import NotFound

        raise NotFound(f"no session {args.id}")
    left = "-" if info.expires_in is None else f"{info.expires_in:.1f} s"
    lines = [f"{info.id}  holder {info.holder}  ttl {info.ttl:g}  expires in {left}"]
    lines += [f"  {h.kind} {h.name} ({h.holder}, token {h.token})" for h in info.holds]
    return _say(args, info, "\n".join(lines))


async def _session_list(client: AsyncClient, args: argparse.Namespace) -> str:
    from paxlock.api.cli.listing import sessions_table

    sessions = await client.list_sessions(args.holder)
    return _say(args, sessions, sessions_table(sessions))


# -- semaphores and read/write locks ---------------------------------------------------------

def _shared(kind: str) -> tuple[Handler, Handler, Handler]:
    async def acquire(client: AsyncClient, args: argparse.Namespace) -> str:
        permit = await client.acquire_shared(
            kind, args.name, mode=getattr(args, "mode", "permit"),  # type: ignore[arg-type]
            limit=getattr(args, "limit", 0), session=args.session,
            ttl=None if args.session else args.ttl, wait=args.wait,
        )  # fmt: skip
        until = f"session {permit.session}" if permit.session else f"ttl {permit.ttl:g} s"
        return _say(args, permit, f"{args.name}: token {permit.token} ({permit.mode}, {until}); "
                    f"holders {', '.join(permit.holders)}")  # fmt: skip

    async def release(client: AsyncClient, args: argparse.Namespace) -> str:
        await client.release_shared(kind, args.name, args.token)  # type: ignore[arg-type]
        return _say(args, {"released": True}, f"released {args.name} (token {args.token})")

    async def get(client: AsyncClient, args: argparse.Namespace) -> str:
        state = await client.get_shared(kind, args.name)  # type: ignore[arg-type]
        if state is None:
            return _say(args, None, f"{args.name}: nobody holds it")
        lines = [f"{args.name}" + (f"  limit {state.limit}" if state.limit else "")]
        lines += [f"  {h.holder}  {h.mode}  token {h.token}" for h in state.holders]
        return _say(args, state, "\n".join(lines))

    return acquire, release, get


# -- groups ----------------------------------------------------------------------------------

async def _group_create(client: AsyncClient, args: argparse.Namespace) -> str:
    group = await client.create_group(args.group)
    return _say(args, group, f"created group {group.name}")


async def _group_delete(client: AsyncClient, args: argparse.Namespace) -> str:
    await client.delete_group(args.group)
    return _say(args, {"deleted": True}, f"deleted group {args.group}")


async def _group_list(client: AsyncClient, args: argparse.Namespace) -> str:
    names = await client.groups(args.prefix)
    return _say(args, {"groups": names}, "\n".join(names) or "no groups")


async def _group_join(client: AsyncClient, args: argparse.Namespace) -> str:
    member = await client.join_group(args.group, args.member, args.capabilities.encode(),
                                     session=args.session)  # fmt: skip
    return _say(args, member, f"{member.member} joined {member.group} (token {member.token})")


async def _group_leave(client: AsyncClient, args: argparse.Namespace) -> str:
    await client.leave_group(args.group, args.member)
    return _say(args, {"left": True}, f"{args.member} left {args.group}")


async def _group_members(client: AsyncClient, args: argparse.Namespace) -> str:
    members = await client.group_members(args.group)
    lines = [f"{m.member}  session {m.session}  token {m.token}  "
             f"{m.capabilities.decode(errors='replace')}" for m in members]  # fmt: skip
    return _say(args, members, "\n".join(lines) or f"{args.group} has no members")


# -- the parsers -----------------------------------------------------------------------------

def add_coord_commands(commands: Any) -> None:
    """``paxlock session|semaphore|rwlock|group`` into the top-level subparsers."""
    common = common_arguments()
    common.add_argument("--identity", type=identity, default=None,
                        help="the holder the cluster records (default: cli@HOST)")

    def action(actions: Any, name: str, helptext: str,
               handler: Handler) -> argparse.ArgumentParser:  # fmt: skip
        sub: argparse.ArgumentParser = actions.add_parser(
            name, parents=[common], help=helptext,
            description=f"{helptext[0].upper()}{helptext[1:]}. {EXITS_HELP}")  # fmt: skip
        sub.set_defaults(coord_handler=handler)
        return sub

    def command(name: str) -> Any:
        """The subcommand's parser; returns its ACTION subparsers."""
        parser = commands.add_parser(name, help=COMMANDS[name],
                                     description=f"{COMMANDS[name][0].upper()}"
                                     f"{COMMANDS[name][1:]}. {SHARED_HELP}")  # fmt: skip
        parser.set_defaults(handler=run_coord, coord_command=name)
        return parser.add_subparsers(dest="coord_action", required=True, metavar="ACTION")

    session = command("session")
    action(session, "open", "open a session", _session_open).add_argument(
        "--ttl", type=ttl, default=10.0, metavar="S", help="seconds (default: %(default)s)")
    for name, helptext, handler in (("renew", "renew a session", _session_renew),
                                    ("close", "close a session and free all bound to it",
                                     _session_close),
                                    ("get", "show a session and what it holds", _session_get)):
        action(session, name, helptext, handler).add_argument("id", metavar="ID")
    action(session, "list", "list sessions", _session_list).add_argument(
        "--holder", default=None, help="only this holder's (default: every holder)")

    for kind in ("semaphore", "rwlock"):
        parser = command(kind)
        acquire, release, get = _shared(kind)
        sub = action(parser, "acquire", f"take a {kind} hold (one request)", acquire)
        sub.add_argument("name", metavar="NAME", type=lease_name)
        if kind == "semaphore":
            sub.add_argument("--limit", type=int, required=True, help="permits in all")
        else:
            sub.add_argument("--mode", choices=("read", "write"), required=True)
        sub.add_argument("--ttl", type=ttl, default=10.0, metavar="S",
                         help="seconds, unless --session (default: %(default)s)")
        sub.add_argument("--session", metavar="ID", default=None,
                         help="bind the hold to this session instead of a ttl")
        sub.add_argument("--wait", type=seconds, default=0.0, metavar="S",
                         help="how long to wait while it is held (default: %(default)s)")
        sub = action(parser, "release", f"release a {kind} hold", release)
        sub.add_argument("name", metavar="NAME", type=lease_name)
        sub.add_argument("token", metavar="TOKEN", type=int)
        action(parser, "get", f"show who holds a {kind}", get).add_argument(
            "name", metavar="NAME", type=lease_name)

    group = command("group")
    for name, helptext, handler in (("create", "create a group", _group_create),
                                    ("delete", "delete an empty group", _group_delete),
                                    ("members", "list a group's members", _group_members)):
        action(group, name, helptext, handler).add_argument("group", metavar="GROUP")
    add_prefix_argument(action(group, "list", "list groups", _group_list))
    sub = action(group, "join", "join a group while a session lives", _group_join)
    sub.add_argument("group", metavar="GROUP")
    sub.add_argument("member", metavar="MEMBER")
    sub.add_argument("--session", metavar="ID", required=True, help="the member's session")
    sub.add_argument("--capabilities", default="", help="UTF-8 text (default: none)")
    sub = action(group, "leave", "leave a group", _group_leave)
    sub.add_argument("group", metavar="GROUP")
    sub.add_argument("member", metavar="MEMBER")


def run_coord(args: argparse.Namespace) -> int:
    prog = f"paxlock {args.coord_command} {args.coord_action}"
    handler: Callable[..., Any] = args.coord_handler
    return run_client(prog, handler, args, " (an earlier attempt may have done it)",
                      identity=args.identity or default_identity())  # fmt: skip
