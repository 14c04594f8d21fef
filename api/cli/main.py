"""The ``paxlock`` command line."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from paxlock.coordinator.core.learner import LearnMode


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
    parser = argparse.ArgumentParser(prog="paxlock", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sim = commands.add_parser(
        "sim",
        help="run the deterministic simulator",
        description="Run seeded simulations of a cluster with crashes, message loss, "
        "duplication, reordering and partitions, checking every safety property after every "
        "step and liveness once faults stop. Exits 1 on any violation.",
    )
    sim.add_argument("--seeds", type=_positive, default=100, help="how many seeds (from 0)")
    sim.add_argument("--seed", type=int, help="run this one seed only (to replay a failure)")
    sim.add_argument("--steps", type=_positive, default=2000, help="steps per seed")
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
        "then the --config TOML file.",
    )  # fmt: skip
    add_serve_arguments(serve)
    serve.set_defaults(handler=_cmd_serve)

    up = commands.add_parser("up", help="run a local cluster on loopback until Ctrl-C")
    up.add_argument("--nodes", type=int, choices=(1, 3, 5), default=3)
    up.add_argument("--base-port", type=int, default=7001, help="port of n1; n2 is next...")
    up.add_argument("--data-dir", default="paxlock-data", help="default: ./paxlock-data")
    up.set_defaults(handler=_cmd_up)

    from paxlock.api.cli.status import add_status_arguments, run_status

    status = commands.add_parser(
        "status", help="show the members, the primary and how far behind each member is",
        description="Ask every endpoint for its view of the cluster and show one table of "
        "members. Exit status: 0 a primary is known, 4 no primary, 1 no endpoint answered.",
    )  # fmt: skip
    add_status_arguments(status)
    status.set_defaults(handler=run_status)

    lock = commands.add_parser(
        "lock", help="run a command while holding a lease",
        description="Hold lease NAME while CMD runs, renewing it; if the lease is lost, CMD "
        "gets SIGTERM, then SIGKILL, both before anyone else can be granted NAME. CMD sees "
        "the fencing token in PAXLOCK_TOKEN. Exits with CMD's status; 3 when NAME stayed "
        "held for --wait, 4 when the cluster is unavailable, 5 when the lease was lost.",
    )  # fmt: skip
    lock.add_argument("name", metavar="NAME")
    lock.add_argument("--ttl", type=float, default=10.0, help="lease TTL in seconds")
    lock.add_argument("--wait", type=float, default=None,
                      help="give up after this many seconds (default: wait for ever)")
    lock.add_argument("--margin", type=float, default=0.2,
                      help="fraction of the TTL kept as safety margin (default 0.2)")
    lock.add_argument("--endpoint", action="append",
                      help="node URL (repeatable; default $PAXLOCK_ENDPOINTS or "
                      "http://127.0.0.1:7001,7002,7003)")
    lock.add_argument("--identity", help="holder name (default: host-pid-random)")
    lock.set_defaults(handler=_cmd_lock, cmd=[])
    return parser


def _cmd_lock(args: argparse.Namespace) -> int:
    import os

    from paxlock.api.cli.lock_command import run_locked
    from paxlock.api.cli.serve import run_fast

    command = args.cmd
    if not command:
        print("paxlock lock: give the command after --", file=sys.stderr)
        return 2
    if not args.ttl > 0 or not 0 < args.margin < 1:
        print("paxlock lock: --ttl must be > 0 and --margin in (0, 1)", file=sys.stderr)
        return 2
    endpoints = args.endpoint or os.environ.get("PAXLOCK_ENDPOINTS", "").split(",")
    endpoints = [e for e in endpoints if e] or [f"http://127.0.0.1:{p}" for p in (7001, 7002, 7003)]
    return run_fast(run_locked(endpoints, args.name, command, ttl=args.ttl, wait=args.wait,
                               margin=args.margin, identity=args.identity))  # fmt: skip


def _cmd_serve(args: argparse.Namespace) -> int:
    import os

    from paxlock.api.cli.logs import configure_logging
    from paxlock.api.cli.serve import ConfigError, node_config, resolve, run_fast, serve
    from paxlock.persistence import StoreError

    try:
        settings = resolve(args, os.environ)
        config = node_config(settings)
    except ConfigError as error:
        print(f"paxlock serve: {error}", file=sys.stderr)
        return 2
    configure_logging(str(settings.get("log_level") or "info"), node=config.node_id)
    try:
        return run_fast(serve(config))
    except StoreError as error:
        print(f"paxlock serve: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"paxlock serve: cannot listen on {config.bind()}: {error}", file=sys.stderr)
        return 2


def _cmd_up(args: argparse.Namespace) -> int:
    from pathlib import Path

    from paxlock.api.cli.serve import up

    return up(args.base_port, args.nodes, Path(args.data_dir).resolve())


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
    if "--" in words:  # everything after -- is the command of `paxlock lock`
        at = words.index("--")
        words, command = words[:at], words[at + 1:]
    args = parser.parse_args(words)
    if command:
        if args.command != "lock":
            parser.error("only 'paxlock lock' takes a command after --")
        args.cmd = command
    handler = args.handler
    return int(handler(args))


if __name__ == "__main__":
    sys.exit(main())
