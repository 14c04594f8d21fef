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
    sim.set_defaults(handler=_cmd_sim)
    return parser


def _cmd_sim(args: argparse.Namespace) -> int:
    from paxlock.coordinator.simulation.runner import Summary, describe, run_seed

    seeds = [args.seed] if args.seed is not None else range(args.seeds)
    summary = Summary()
    started = time.perf_counter()
    for seed in seeds:
        result = run_seed(seed, args.steps, args.nodes, args.learn_mode,
                          trace=args.trace and args.seed is not None)  # fmt: skip
        for line in result.trace:
            print(line)
        summary.add(result)
        if result.violations:
            print(describe(result, args.steps, args.nodes, args.learn_mode))
    elapsed = time.perf_counter() - started
    print(summary.line())
    # Timing goes to stderr so that the same seed prints the same stdout, bit for bit.
    print(f"{summary.steps / elapsed:,.0f} steps/s in {elapsed:.1f} s", file=sys.stderr)
    return 1 if summary.violations else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = args.handler
    return int(handler(args))


if __name__ == "__main__":
    sys.exit(main())
