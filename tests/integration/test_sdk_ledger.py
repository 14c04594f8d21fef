"""Mutual exclusion between client *processes*, checked on a shared ledger file.

Four processes (two on ``AsyncClient``, two on the threaded ``Client``) each take one lock
eight times against a real 3-node cluster and, while holding it, append ``start TOKEN`` and
``end TOKEN`` lines to one file. If two holds ever overlapped, a ``start`` would follow a
``start``; if a grant were ever reissued or reordered, tokens would not strictly increase.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

CHILD = Path(__file__).with_name("sdk_ledger_child.py")
WORKERS = 4
ITERATIONS = 8
RUN_TIMEOUT_S = 60.0


def spawn_workers(cluster: Any, tmp_path: Path, name: str) -> list[subprocess.Popen[bytes]]:
    processes = []
    for index in range(WORKERS):
        log = open(tmp_path / f"worker{index}.log", "wb")
        command = [
            sys.executable, str(CHILD), "--endpoints", ",".join(cluster.urls()),
            "--ledger", str(tmp_path / "ledger"), "--ready", str(tmp_path / f"ready{index}"),
            "--go", str(tmp_path / "go"), "--worker", f"w{index}",
            "--mode", "async" if index % 2 == 0 else "sync", "--name", name,
            "--iterations", str(ITERATIONS), "--seed", str(index),
        ]  # fmt: skip
        processes.append(subprocess.Popen(command, stdout=log, stderr=log,
                                          env=dict(os.environ, PYTHONUNBUFFERED="1")))  # fmt: skip
        log.close()
    return processes


def check_ledger(lines: list[str]) -> list[int]:
    """Holds alternate start/end of one token and worker; returns the tokens in order."""
    tokens: list[int] = []
    assert len(lines) % 2 == 0, lines[-3:]
    for start, end in zip(lines[0::2], lines[1::2], strict=True):
        kind_s, token_s, worker_s = start.split()
        kind_e, token_e, worker_e = end.split()
        assert (kind_s, kind_e) == ("start", "end"), f"overlapping holds: {start!r} {end!r}"
        assert (token_s, worker_s) == (token_e, worker_e), f"interleaved: {start!r} {end!r}"
        tokens.append(int(token_s))
    assert all(a < b for a, b in zip(tokens, tokens[1:])), f"tokens not increasing: {tokens}"
    return tokens


def test_client_processes_never_overlap_and_tokens_increase(
    cluster: Any, tmp_path: Path, wait_for: Any
) -> None:
    processes = spawn_workers(cluster, tmp_path, "ledger/contended")
    try:
        wait_for(
            lambda: all((tmp_path / f"ready{i}").exists() for i in range(WORKERS))
            or any(p.poll() not in (None, 0) for p in processes), 30, "workers ready",
        )  # fmt: skip
        (tmp_path / "go").touch()
        for process in processes:
            process.wait(timeout=RUN_TIMEOUT_S)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    logs = {i: (tmp_path / f"worker{i}.log").read_text() for i in range(WORKERS)}
    assert [p.returncode for p in processes] == [0] * WORKERS, logs
    lines = (tmp_path / "ledger").read_text().splitlines()
    assert len(lines) == 2 * WORKERS * ITERATIONS
    tokens = check_ledger(lines)
    holders = [line.split()[2] for line in lines[0::2]]
    assert sorted(set(holders)) == [f"w{i}" for i in range(WORKERS)]
    switches = sum(1 for a, b in zip(holders, holders[1:]) if a != b)
    assert switches >= WORKERS - 1, "the workers did not actually contend"
    assert len(set(tokens)) == WORKERS * ITERATIONS


def test_the_ledger_check_catches_overlaps_and_stale_tokens() -> None:
    """The checker itself: an overlap or a token going backwards fails it."""
    check_ledger(["start 3 a", "end 3 a", "start 5 b", "end 5 b"])
    for bad in (["start 3 a", "start 5 b", "end 3 a", "end 5 b"],
                ["start 5 a", "end 5 a", "start 3 b", "end 3 b"]):  # fmt: skip
        try:
            check_ledger(bad)
        except AssertionError:
            continue
        raise AssertionError(f"not caught: {bad}")
