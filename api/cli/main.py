"""The ``paxlock`` command line: ``build_parser`` and one handler per subcommand.

Usage errors are one line and exit status 2 (``arguments.Parser``); every option's help shows
its default. Help texts are plain text: no reST markup, which argparse would print as it is.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from paxlock.api.cli.arguments import (
    LOCAL_CLUSTER_NODES_MAX, TTL_S_MAX, Parser, add_ca_argument, add_endpoint_argument,
    add_token_argument, cluster_size, fraction, identity, lease_name, seconds, ttl, version,
)  # fmt: skip
from paxlock.api.cli.output import EXITS_HELP
from paxlock.coordinator.core.learner import LearnMode

DESCRIPTION = (
    "An embeddable lock and leader-election service: a small Multi-Paxos cluster with durable "
    "SQLite acceptors decides who holds each lease. Try 'paxlock up' (a local 3-member "
    "cluster), then 'paxlock lock NAME -- CMD' from another terminal."
)


RUNS_A_COMMAND = ("lock", "elect")


def _learn_mode(text: str) -> str:
    try:
        return str(LearnMode.parse(text))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from paxlock.api.client.keepalive import WAIT_CHUNK_S
    from paxlock.api.client.transport import RetryPolicy

    parser = Parser(prog="paxlock", description=DESCRIPTION,
                    epilog="'paxlock COMMAND --help' shows a command's options. "
                    f"Client commands (status, member, leases, lease, ...): {EXITS_HELP} 'lock' "
                    "and 'elect' also: 5 lost, else CMD's own status.")  # fmt: skip
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sim = commands.add_parser(
        "sim",
        help="run the deterministic simulator",
        description="Run seeded simulations of a cluster with crashes, message loss, "
        "duplication, reordering and partitions, checking every safety property after every "
        "step and liveness once faults stop. Exits 1 on any violation.",
    )
    sim.add_argument("--seeds", type=_positive, default=100,
                     help="how many seeds, from 0 (default: %(default)s)")  # fmt: skip
    sim.add_argument("--seed", type=int, help="run this one seed only (to replay a failure)")
    sim.add_argument("--steps", type=_positive, default=2000,
                     help="steps per seed (default: %(default)s)")  # fmt: skip
    sim.add_argument("--nodes", type=int, choices=(3, 5),
                     help="cluster size (default: 3 for even seeds, 5 for odd)")
    sim.add_argument("--learn-mode", type=_learn_mode,
                     help="broadcast | primary | set:K (default: rotates per seed)")
    sim.add_argument("--trace", action="store_true", help="print the fault trace of --seed")
    sim.add_argument("--leases", action="store_true",
                     help="simulate at the lease level: state machine, keeper, lease clients, "
                     "and the lease checkers (overlap, tokens, deposed)")
    sim.set_defaults(handler=_cmd_sim)

    from paxlock.api.cli.serve import add_serve_arguments

    serve = commands.add_parser(
        "serve", help="run one cluster member",
        description="Run one member of a paxlock cluster. Settings come from flags, then "
        "PAXLOCK_* environment variables (e.g. PAXLOCK_DATA_DIR, PAXLOCK_PEER=n2=URL,n3=URL), "
        "then the --config TOML file. SIGINT or SIGTERM stops it cleanly (exit 0). Exit "
        "status 2, with one line on stderr and nothing left running, when it cannot start: "
        "a configuration mistake, a store it must not use (another node's or cluster's, "
        "corrupt, or locked by a live process), or an address it cannot listen on; 1 when "
        "its store fails while it runs.",
    )  # fmt: skip
    add_serve_arguments(serve)
    serve.set_defaults(handler=_cmd_serve)

    up = commands.add_parser(
        "up", help="run a local cluster on loopback until Ctrl-C",
        description="Run a local cluster on loopback, one 'paxlock serve' process per node "
        "(ports from --base-port on, data in DATA_DIR/n1, n2, ...). Ctrl-C, SIGTERM and "
        "SIGHUP stop every node and wait for them (exit 0). A node that dies is reported on "
        "stderr and the others keep running: up prints the node's own 'paxlock serve' "
        "command to restart it by hand, and restarts it itself on Enter (a line on stdin). "
        "Exit status 2 when a port is in use or a node refuses its first start; 1 when no "
        "node is left running.",
    )  # fmt: skip
    up.add_argument("--nodes", type=cluster_size, default=3, metavar="N",
                    help="how many members: an odd number, at least 3 and at most "
                    f"{LOCAL_CLUSTER_NODES_MAX} (default: %(default)s)")  # fmt: skip
    up.add_argument("--base-port", type=int, default=7001,
                    help="port of n1; n2 gets the next one, and so on (default: %(default)s)")
    up.add_argument("--data-dir", default="paxlock-data",
                    help="where the members' stores go (default: %(default)s, in the current "
                    "directory)")  # fmt: skip
    up.add_argument("--tls", action="store_true",
                    help="make a throwaway CA and a certificate per member under DATA_DIR/tls "
                    "and serve https:// only, with mutual TLS between members; prints the CA "
                    "file to give the SDK (ca_file=) and the CLI (--ca, PAXLOCK_CA)")  # fmt: skip
    up.set_defaults(handler=_cmd_up)

    from paxlock.api.cli.status import add_status_arguments, run_status

    status = commands.add_parser(
        "status", help="show the members, the primary and how far behind each member is",
        description="Ask every endpoint for its view of the cluster and show one table of "
        "members: role (the primary marked), reachability, ballot, chosen and applied "
        "index, lag. Exit status: 0 a primary is known; 2 usage error; 4 cluster "
        "unavailable: no primary, or no endpoint answered.",
    )  # fmt: skip
    add_status_arguments(status)
    add_ca_argument(status)
    status.set_defaults(handler=run_status)

    from paxlock.api.cli.member_command import add_member_arguments, run_member

    member = commands.add_parser(
        "member", help="list, add, promote or remove cluster members",
        description="Change who belongs to a running cluster, one member at a time: 'add' a "
        "new member as a learner (started with 'paxlock serve --join'), 'promote' it to voter "
        "once it caught up, 'remove' a member; 'list' shows them. Exit status: 0 done, 1 "
        "refused by the cluster, 2 usage error, 4 cluster unavailable.",
    )  # fmt: skip
    add_member_arguments(member)
    member.set_defaults(handler=run_member)

    from paxlock.api.cli.coord_command import add_coord_commands

    add_coord_commands(commands)

    from paxlock.api.cli.election_command import add_election_commands
    from paxlock.api.cli.lease_command import add_lease_commands
    from paxlock.api.cli.listing import add_listing_commands

    add_lease_commands(commands)
    add_election_commands(commands)
    add_listing_commands(commands)

    retry_deadline_s = RetryPolicy().retry_deadline_s
    lock = commands.add_parser(
        "lock", help="run a command while holding a lease",
        description="Hold lease NAME while CMD runs, renewing it; if the lease is lost, CMD "
        "gets SIGTERM, then SIGKILL, both before anyone else can be granted NAME. CMD sees "
        "the fencing token in PAXLOCK_TOKEN. Exits with CMD's status (127 when CMD is not "
        "found, 126 when it cannot be run); 2 on a usage error; 3 when NAME stayed held for "
        "--wait; 4 cluster unavailable: it is given up on once no node answered "
        f"for the current wait (--wait, at most {WAIT_CHUNK_S:g} s of it) plus "
        f"--retry-deadline, {WAIT_CHUNK_S + retry_deadline_s:g} s with the defaults; 5 when "
        "the lease was lost.",
    )  # fmt: skip
    lock.add_argument("name", metavar="NAME", type=lease_name,
                      help="the lease: 1 to 256 characters of A-Za-z0-9._/-")  # fmt: skip
    lock.add_argument("--ttl", type=ttl, default=10.0, metavar="S",
                      help=f"lease TTL in seconds, at most {TTL_S_MAX:g} (default: %(default)s)")
    lock.add_argument("--wait", type=seconds, default=None, metavar="S",
                      help="how long NAME may stay held before giving up with exit status 3 "
                      "(default: wait for ever)")  # fmt: skip
    lock.add_argument("--margin", type=fraction, default=0.2, metavar="F",
                      help="fraction of the TTL kept as safety margin (default: %(default)s)")
    lock.add_argument("--retry-deadline", type=seconds, default=retry_deadline_s, metavar="S",
                      help="how long to keep retrying a cluster that does not answer or has no "
                      "primary, beyond the current wait, before exit status 4 "
                      "(default: %(default)s)")  # fmt: skip
    add_endpoint_argument(lock)
    lock.add_argument("--identity", type=identity,
                      help="holder name (default: host-pid-random)")  # fmt: skip
    add_ca_argument(lock)
    add_token_argument(lock)
    lock.set_defaults(handler=_cmd_lock, cmd=[])
    # The command after -- is split off before parsing (main): show it in the usage.
    lock.usage = lock.format_usage().removeprefix("usage: ").rstrip() + " -- CMD [ARGS...]"

    from paxlock.api.cli.completion import add_completion_command

    add_completion_command(commands, build_parser)
    return parser


def _cmd_lock(args: argparse.Namespace) -> int:
    from paxlock.api.cli.lock_command import run_locked
    from paxlock.api.cli.member_command import connection
    from paxlock.api.cli.serve import run_fast

    command = args.cmd
    if not command:
        print("paxlock lock: give the command to run after --: paxlock lock NAME -- CMD "
              "[ARGS...]", file=sys.stderr)  # fmt: skip
        return 2
    endpoints, ca, token = connection("paxlock lock", args)
    return run_fast(run_locked(endpoints, args.name, command, ttl=args.ttl, wait=args.wait,
                               margin=args.margin, identity=args.identity, token=token,
                               retry_deadline_s=args.retry_deadline, ca_file=ca))  # fmt: skip


def _cmd_serve(args: argparse.Namespace) -> int:
    import os

    from paxlock.api.cli.serve import serve_command

    return serve_command(args, os.environ)


def _cmd_up(args: argparse.Namespace) -> int:
    from pathlib import Path

    from paxlock.api.cli.up import up

    return up(args.base_port, args.nodes, Path(args.data_dir).resolve(), tls=args.tls)


def _cmd_sim(args: argparse.Namespace) -> int:
    from paxlock.coordinator.simulation.runner import Summary, describe, run_seed

    seeds = [args.seed] if args.seed is not None else range(args.seeds)
    summary = Summary()
    started = time.perf_counter()
    for seed in seeds:
        result = run_seed(seed, args.steps, args.nodes, args.learn_mode, leases=args.leases,
                          trace=args.trace and args.seed is not None)  # fmt: skip
        for line in result.trace:
            print(line)
        summary.add(result)
        if result.violations:
            text = describe(result, args.steps, args.nodes, args.learn_mode)
            print(text.replace("paxlock sim ", "paxlock sim --leases ") if args.leases else text)
    elapsed = time.perf_counter() - started
    print(summary.line())
    # Timing goes to stderr so that the same seed prints the same stdout, bit for bit.
    print(f"{summary.steps / elapsed:,.0f} steps/s in {elapsed:.1f} s", file=sys.stderr)
    return 1 if summary.violations else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    command: list[str] = []
    has_command = "--" in words
    if has_command:  # everything after -- is the command of `paxlock lock` or `elect`
        at = words.index("--")
        words, command = words[:at], words[at + 1:]
    args = parser.parse_args(words)
    if has_command:
        if args.command not in RUNS_A_COMMAND:
            parser.error("only 'paxlock lock' and 'paxlock elect' take a command after --")
        args.cmd = command
    handler = args.handler
    return int(handler(args))


if __name__ == "__main__":
    sys.exit(main())
