"""What the checker answers: a verdict, findings (violations) and per-name statistics."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Verdict(StrEnum):
    OK = "ok"
    VIOLATION = "violation"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Finding:
    check: str
    """``linearizability``, ``validity``, ``tokens`` or ``response``."""
    name: str | None
    message: str
    op_ids: tuple[int, ...] = ()
    signature: str = ""
    """A short name for a recognisable shape of violation (see ``SIGNATURES``)."""


SIGNATURES = {
    "not-holder-naming-the-caller": "a renewal or release refused 409 not_holder while the "
    "refusal names the caller's own holder and token as the current grant",
}


@dataclass
class NameResult:
    name: str
    verdict: Verdict
    ops: int
    steps: int = 0
    configs_max: int = 0
    elapsed_s: float = 0.0
    finding: Finding | None = None


@dataclass
class CheckResult:
    verdict: Verdict
    findings: list[Finding] = field(default_factory=list)
    names: dict[str, NameResult] = field(default_factory=dict)
    elapsed_s: float = 0.0

    @property
    def valid(self) -> bool:
        return self.verdict is Verdict.OK

    def summary(self) -> str:
        lines = [f"checker: {self.verdict.value} in {self.elapsed_s:.2f}s"]
        for result in self.names.values():
            lines.append(f"  {result.name}: {result.verdict.value}, {result.ops} ops, "
                         f"{result.steps} search steps, <= {result.configs_max} configurations, "
                         f"{result.elapsed_s:.2f}s")  # fmt: skip
        for finding in self.findings:
            lines.append(f"  VIOLATION [{finding.check}] {finding.name or ''}: {finding.message}")
        return "\n".join(lines)
