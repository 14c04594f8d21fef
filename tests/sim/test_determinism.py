"""One seed gives one run, bit for bit — in one process and across processes whose string
hashing differs (PYTHONHASHSEED), which is what makes a printed seed a replayable bug."""

from __future__ import annotations

import os
import subprocess
import sys

from paxlock.coordinator.simulation.runner import run_seed


def test_same_seed_same_run_in_process() -> None:
    first, second = run_seed(11, 1500, trace=True), run_seed(11, 1500, trace=True)
    assert first.trace == second.trace and first.trace
    assert (first.decisions, first.learn_messages, first.sim_time_s) == (
        second.decisions, second.learn_messages, second.sim_time_s,
    )  # fmt: skip


def test_different_seeds_differ() -> None:
    assert run_seed(2, 1500, trace=True).trace != run_seed(4, 1500, trace=True).trace


def test_same_seed_same_output_across_processes_and_hash_seeds() -> None:
    outputs = []
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        done = subprocess.run(
            [sys.executable, "-m", "paxlock.api.cli", "sim", "--seed", "5", "--steps", "1500",
             "--trace"],
            env=env, capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1]
    assert "seeds=1 steps=1500" in outputs[0] and "violations=0" in outputs[0]
