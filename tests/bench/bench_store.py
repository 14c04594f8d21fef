"""Benchmark of SqliteStore commits (not collected by pytest: run it as a script).

    python tests/bench/bench_store.py [--dir DIR] [--runs 5]

Measures, on the filesystem of ``--dir`` (default: the system temp dir):
  * raw ``os.fsync`` of a 4 KiB write: the floor every durable commit pays;
  * unbatched commits: one record per ``append``, one caller, sequential (p50, p99);
  * group commit: 64 concurrent appenders, one record per ``append`` (commits/s, records/s).
Each figure is the median over ``--runs`` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from paxlock.coordinator.core.ballot import Ballot
from paxlock.coordinator.core.messages import AcceptRecord, Batch, PromiseRecord
from paxlock.persistence import SqliteStore

BALLOT = Ballot(1, "n1")
VALUE = Batch((b"x" * 100,))


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def raw_fsync_p50_s(directory: Path, n: int = 200) -> float:
    path = directory / "fsync.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    samples = []
    try:
        for i in range(n):
            os.pwrite(fd, os.urandom(4096), (i % 16) * 4096)
            started = time.perf_counter()
            os.fsync(fd)
            samples.append(time.perf_counter() - started)
    finally:
        os.close(fd)
        path.unlink()
    return statistics.median(samples)


async def unbatched_s(directory: Path, n: int = 300) -> tuple[float, float]:
    samples = []
    async with await SqliteStore.open(directory, node_id="n1", cluster_id="bench") as store:
        await store.append([PromiseRecord(BALLOT)])
        for slot in range(1, n + 1):
            started = time.perf_counter()
            await store.append([AcceptRecord(slot, BALLOT, VALUE)])
            samples.append(time.perf_counter() - started)
    return percentile(samples, 0.50), percentile(samples, 0.99)


async def batched_per_s(
    directory: Path, appenders: int = 64, appends_each: int = 50
) -> tuple[float, float, float]:
    async with await SqliteStore.open(directory, node_id="n1", cluster_id="bench") as store:
        await store.append([PromiseRecord(BALLOT)])
        commits_before, records_before = store.stats.commits, store.stats.records

        async def appender(k: int) -> None:
            for i in range(appends_each):
                await store.append([AcceptRecord(k * appends_each + i + 1, BALLOT, VALUE)])

        started = time.perf_counter()
        await asyncio.gather(*(appender(k) for k in range(appenders)))
        elapsed = time.perf_counter() - started
        commits = store.stats.commits - commits_before
        records = store.stats.records - records_before
    return commits / elapsed, records / elapsed, records / commits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=None, help="where to put the temp files")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    fsyncs, p50s, p99s, commit_rates, record_rates, batch_sizes = [], [], [], [], [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            root = Path(tmp)
            fsyncs.append(raw_fsync_p50_s(root))
            p50, p99 = asyncio.run(unbatched_s(root / "unbatched"))
            p50s.append(p50)
            p99s.append(p99)
            commits, records, size = asyncio.run(batched_per_s(root / "batched"))
            commit_rates.append(commits)
            record_rates.append(records)
            batch_sizes.append(size)
    med = statistics.median
    where = args.dir or Path(tempfile.gettempdir())
    print(f"SqliteStore benchmark on {where} (median of {args.runs} runs)")
    print(f"  {'raw os.fsync p50':<44}{med(fsyncs) * 1e3:>10.3f} ms")
    print(f"  {'commit p50, unbatched (1 record/append)':<44}{med(p50s) * 1e3:>10.3f} ms")
    print(f"  {'commit p99, unbatched (1 record/append)':<44}{med(p99s) * 1e3:>10.3f} ms")
    print(f"  {'group commit, 64 appenders: commits/s':<44}{med(commit_rates):>10.0f}")
    print(f"  {'group commit, 64 appenders: records/s':<44}{med(record_rates):>10.0f}")
    print(f"  {'group commit, 64 appenders: records/commit':<44}{med(batch_sizes):>10.1f}")


if __name__ == "__main__":
    main()
