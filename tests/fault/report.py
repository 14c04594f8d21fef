"""The report of one run: operation counts, the longest window without a successful grant,
failover times, and the checker's verdict — printed (``pytest -s``) and written beside the
history."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from history import FUNCTIONS, Event, History, Op, count
from linearizability import CheckResult

MUTATIONS = ("acquire", "renew", "release")


@dataclass
class Failover:
    """One fault that took the primary away, and how long until service came back."""

    fault: str
    at: float
    old_primary: str | None
    new_primary: str | None = None
    primary_after_s: float | None = None
    """Until the survivors agreed on a new primary in office (as the nemesis saw it)."""
    first_ok_write_after_s: float | None = None
    """Until the first successful acquire/renew/release invoked after the fault completed
    (as the clients saw it)."""


@dataclass
class Gap:
    length_s: float
    start: float
    end: float
    events: list[str] = field(default_factory=list)


def longest_gap_without_grant(ops: list[Op], start: float, end: float,
                              events: list[Event]) -> Gap:  # fmt: skip
    """The longest interval of the workload's life in which no acquire completed ``ok``."""
    ends = sorted(op.end for op in ops if op.f == "acquire" and op.type == "ok")
    marks = [start, *[t for t in ends if start <= t <= end], end]
    best = Gap(0.0, start, start)
    for a, b in zip(marks, marks[1:]):
        if b - a > best.length_s:
            best = Gap(b - a, a, b)
    best.events = [f"t={e.t:.2f} {e.what}" for e in events if best.start - 1 <= e.t <= best.end]
    return best


def fill_client_view(failovers: list[Failover], ops: list[Op]) -> None:
    writes = sorted((op for op in ops if op.type == "ok" and op.f in MUTATIONS),
                    key=lambda op: op.end)  # fmt: skip
    for failover in failovers:
        after = [op.end for op in writes if op.inv >= failover.at]
        if after:
            failover.first_ok_write_after_s = min(after) - failover.at


@dataclass
class Report:
    scenario: str
    nodes: int
    duration_s: float
    counts: dict[str, int]
    by_function: dict[str, dict[str, int]]
    errors: dict[str, int]
    longest_gap: Gap
    failovers: list[Failover]
    faults: list[str]
    checker: str
    verdict: str
    checks: dict[str, Any] = field(default_factory=dict)
    retries: int = 0
    history_path: str = ""

    def text(self) -> str:
        c = self.counts
        lines = [
            f"=== fault run: {self.scenario} ({self.nodes} nodes, workload {self.duration_s:.1f}s)"
            f" ===",
            f"operations: {c['attempted']} attempted, {c['ok']} ok, {c['fail']} failed, "
            f"{c['info']} indeterminate (each request counts; {self.retries} of them were "
            f"retries of an acquire/release with its first request_id)",
        ]  # fmt: skip
        for f, counts in self.by_function.items():
            lines.append(f"  {f:<8} {counts['attempted']:>5} attempted {counts['ok']:>5} ok "
                         f"{counts['fail']:>5} failed {counts['info']:>5} indeterminate")  # fmt: skip
        top = ", ".join(f"{k} {v}" for k, v in sorted(self.errors.items(), key=lambda kv: -kv[1]))
        lines.append(f"errors: {top or 'none'}")
        gap = self.longest_gap
        lines.append(f"longest window without a successful grant: {gap.length_s:.2f}s "
                     f"(t={gap.start:.2f}..{gap.end:.2f})"
                     + (f" around: {'; '.join(gap.events)}" if gap.events else ""))  # fmt: skip
        lines.append("faults: " + ("; ".join(self.faults) or "none"))
        for fo in self.failovers:
            primary = "-" if fo.primary_after_s is None else f"{fo.primary_after_s:.2f}s"
            write = "-" if fo.first_ok_write_after_s is None else f"{fo.first_ok_write_after_s:.2f}s"
            lines.append(f"failover after '{fo.fault}' at t={fo.at:.2f}: primary "
                         f"{fo.old_primary} -> {fo.new_primary or '?'} in {primary}; "
                         f"first ok write after {write}")  # fmt: skip
        for key, value in self.checks.items():
            lines.append(f"check {key}: {value}")
        lines.append(self.checker)
        if self.history_path:
            lines.append(f"history: {self.history_path}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def build(scenario: str, nodes: int, history: History, result: CheckResult,
          failovers: list[Failover], start: float, end: float,
          checks: dict[str, Any] | None = None) -> Report:  # fmt: skip
    ops = history.ops
    fill_client_view(failovers, ops)
    by_function: dict[str, dict[str, int]] = {
        f: count(op for op in ops if op.f == f) for f in FUNCTIONS
    }
    errors = Counter(f"{op.f}:{op.error}" for op in ops if op.error and op.type != "ok")
    return Report(
        scenario, nodes, end - start, count(ops), by_function, dict(errors),
        longest_gap_without_grant(ops, start, end, history.events), failovers,
        [f"t={e.t:.2f} {e.what}" for e in history.events if e.fault],
        result.summary(), result.verdict.value, dict(checks or {}),
        sum(1 for op in ops if op.attempt > 1),
    )  # fmt: skip


def dump(report: Report, path: Any) -> None:
    with open(path, "w") as file:
        json.dump(report.to_json(), file, indent=2, default=str)
