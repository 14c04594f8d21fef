"""One Jepsen-style run: start the cluster, run the workload, let a scenario's nemesis inject
faults, heal, check that service came back, then check the history and report.

A scenario is a *cycle* (``async def cycle(nemesis)``): one round of faults that leaves the
cluster in any state (``settle`` heals it afterwards). CI runs each cycle once or twice;
soak mode (``PAXLOCK_SOAK_S=600``) repeats it until that many seconds passed. Every run is
bounded (60 s, plus the soak time) — phases wait on conditions with deadlines; sleeps only
make a fault last.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cluster import ClusterProbe, FaultCluster
from history import History, Op
from linearizability import CheckResult, check
from nemesis import Deposed, DurabilityProbe, Nemesis
from report import Report, build, dump
from workload import Recorder, Workload, WorkloadConfig

__all__ = ["DurabilityProbe", "Nemesis", "RunResult", "run_scenario"]

SOAK_S = float(os.environ.get("PAXLOCK_SOAK_S") or 0)
"""Soak mode: repeat each scenario's fault cycle for this many seconds (0: CI mode)."""
RUN_BOUND_S = 60.0 + SOAK_S
"""Every scenario, start to report."""
CHECK_BUDGET_S = 12.0 + SOAK_S / 10
"""The linearizability search's share of the bound."""
START_TIMEOUT_S = 20.0

Cycle = Callable[["Nemesis"], Awaitable[None]]

KNOWN_PRODUCT_BUGS: dict[str, str] = {}
"""Violation signatures (``linearizability.SIGNATURES``) of open product bugs, each with a
deterministic ``xfail(strict=True)`` regression test. A random run whose only findings carry
these signatures is reported as an expected failure rather than a new one. Remove an entry
once its bug is fixed (its regression test then fails as XPASS to say so)."""


# -- one run ------------------------------------------------------------------------------


@dataclass
class RunResult:
    report: Report
    check: CheckResult
    history: History
    stale: list[Op] = field(default_factory=list)
    """Grants/renewals decided by a deposed primary (see ``Deposed``)."""
    problems: list[str] = field(default_factory=list)
    """Harness-level failures (liveness, durability, crashed members, 500s)."""
    elapsed_s: float = 0.0

    def assert_ok(self) -> None:
        known = {f.signature for f in self.check.findings} & set(KNOWN_PRODUCT_BUGS)
        if (known and not self.problems and not self.stale
                and all(f.signature in KNOWN_PRODUCT_BUGS for f in self.check.findings)):  # fmt: skip
            pytest.xfail("; ".join(KNOWN_PRODUCT_BUGS[k] for k in sorted(known))
                         + "\n" + self.check.summary())  # fmt: skip
        failures = list(self.problems)
        if not self.check.valid:
            failures.append(f"checker verdict {self.check.verdict.value}:\n"
                            + self.check.summary())  # fmt: skip
        for op in self.stale:
            failures.append(f"deposed primary {op.decided_by} answered {op.f} ok (op {op.id}, "
                            f"invoked t={op.inv:.3f})")  # fmt: skip
        assert not failures, "\n".join(failures) + f"\n\nreport:\n{self.report.text()}"


def stale_answers(ops: list[Op], deposed: list[Deposed]) -> list[Op]:
    out = []
    for record in deposed:
        until = record.until if record.until is not None else float("inf")
        out += [op for op in ops if op.type == "ok" and op.f in ("acquire", "renew")
                and op.decided_by == record.node and record.since < op.inv < until]  # fmt: skip
    return out


def run_scenario(cluster: FaultCluster, scenario: str, cycle: Cycle, artifacts: Path, *,
                 workload: WorkloadConfig | None = None, cycles: int = 1, warmup_s: float = 1.5,
                 tail_s: float = 2.5) -> RunResult:  # fmt: skip
    """Run ``cycle`` ``cycles`` times (or for ``PAXLOCK_SOAK_S``) under the workload."""
    started = time.monotonic()
    config = workload or WorkloadConfig()
    artifacts.mkdir(parents=True, exist_ok=True)
    recorder = Recorder({"scenario": scenario, "nodes": len(cluster.ids),
                         "workload": config.__dict__, "soak_s": SOAK_S})  # fmt: skip
    state: dict[str, Any] = {}
    bound = RUN_BOUND_S - CHECK_BUDGET_S - 3.0
    try:
        asyncio.run(asyncio.wait_for(
            _drive(cluster, cycle, recorder, config, cycles, warmup_s, tail_s, state), bound))
    except TimeoutError:
        state.setdefault("problems", []).append(
            f"the run did not finish within its bound of {bound:.0f}s")
    except AssertionError as error:
        state.setdefault("problems", []).append(f"harness: {error}")
    problems: list[str] = state.get("problems", [])
    history = recorder.history
    history_path = artifacts / f"{scenario}.history.jsonl"
    history.write(history_path)
    margin = config.margin
    budget = max(1.0, min(CHECK_BUDGET_S, RUN_BOUND_S - (time.monotonic() - started) - 1.0))
    result = check(history.ops, budget_s=budget, margin=margin)
    nemesis: Nemesis | None = state.get("nemesis")
    stale = stale_answers(history.ops, nemesis.deposed if nemesis else [])
    checks = dict(nemesis.checks) if nemesis else {}
    checks["deposed primaries"] = (
        ", ".join(f"{d.node} t={d.since:.2f}..{d.until if d.until is None else round(d.until, 2)}"
                  for d in nemesis.deposed) if nemesis and nemesis.deposed else "none"
    ) + f"; stale grants/renewals: {len(stale)}"  # fmt: skip
    exits = cluster.exits()
    if exits:
        problems.append(f"members exited by themselves: {exits}\n{cluster.logs()}")
    internal = [op for op in history.ops if op.status is not None and op.status >= 500
                and op.error not in ("unavailable",)]  # fmt: skip
    if internal:
        problems.append(f"{len(internal)} answers with status >= 500 other than 503, e.g. "
                        f"op {internal[0].id} {internal[0].status} {internal[0].error}")  # fmt: skip
    for node_id, member in cluster.members.items():  # the members' logs, beside the history
        if member.log_path.exists():
            shutil.copyfile(member.log_path, artifacts / f"{scenario}.{node_id}.log")
    report = build(scenario, len(cluster.ids), history, result,
                   nemesis.failovers if nemesis else [], state.get("w_start", 0.0),
                   state.get("w_end", recorder.now()), checks)  # fmt: skip
    report.history_path = str(history_path)
    text = report.text()
    (artifacts / f"{scenario}.report.txt").write_text(text + "\n")
    dump(report, artifacts / f"{scenario}.report.json")
    print("\n" + text)
    return RunResult(report, result, history, stale, problems, time.monotonic() - started)


async def _drive(cluster: FaultCluster, cycle: Cycle, recorder: Recorder,
                 config: WorkloadConfig, cycles: int, warmup_s: float, tail_s: float,
                 state: dict[str, Any]) -> None:  # fmt: skip
    async with aiohttp.ClientSession() as session:
        probe = ClusterProbe(cluster, session)
        cluster.start_all()
        recorder.event("start all members", fault=False)
        urls = {node: cluster.url(node) for node in cluster.ids}
        workload = Workload(urls, config, recorder)
        nemesis = Nemesis(cluster, probe, recorder, workload)
        state["nemesis"] = nemesis
        await nemesis.primary(timeout_s=START_TIMEOUT_S)
        await workload.start()
        state["w_start"] = recorder.now()
        try:
            await nemesis.hold(warmup_s)
            soak_until = time.monotonic() + SOAK_S
            done = 0
            while done < cycles or time.monotonic() < soak_until:
                recorder.event(f"cycle {done + 1}", fault=False)
                await cycle(nemesis)
                await nemesis.settle()
                done += 1
            await nemesis.hold(tail_s)
        except AssertionError as error:
            state.setdefault("problems", []).append(f"{error}\n{cluster.logs(1500)}")
        finally:
            with contextlib.suppress(Exception):
                cluster.heal()
            await workload.stop()
            state["w_end"] = recorder.now()
