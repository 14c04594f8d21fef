"""The history of a run: what every client saw, plus what the nemesis did and when.

One operation (``Op``) is one HTTP request of one client, with its invocation and completion
times on the test process's monotonic clock (seconds since the run began), and its outcome
in the Jepsen vocabulary:

- ``ok``: a definite answer that is a success — a grant, a renewal, a release, a read (a
  read of a free name, 404 ``not_found``, is a successful read of "no lease"), a verify
  (the current fencing token).
- ``fail``: a definite answer that changed nothing — 409 ``held``/``not_holder``, 400, or a
  refused connection (the request reached no server).
- ``info``: indeterminate — a timeout, a reset connection, a 503 or 500 for a mutation (503
  may mean "outcome unknown", and a forwarded request may have been applied). Such an
  operation may take effect at any time after its invocation, or never.

A history is written as JSON lines: one ``meta`` line, then ``op`` and ``nemesis`` lines.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

OpType = Literal["ok", "fail", "info"]
Function = Literal["acquire", "renew", "release", "read", "verify"]
FUNCTIONS: tuple[Function, ...] = ("acquire", "renew", "release", "read", "verify")


@dataclass(frozen=True, slots=True)
class Grant:
    """The part of a lease object the checker reads."""

    holder: str
    token: int
    ttl: float | None = None

    def ttl_or(self, default: float) -> float:
        return self.ttl if self.ttl is not None else default


@dataclass(slots=True)
class Op:
    id: int
    process: str
    """The client (one client is one holder)."""
    f: Function
    name: str
    inv: float
    end: float
    """When the client got its answer or gave up (for ``info``: the give-up time)."""
    type: OpType
    holder: str | None = None
    token: int | None = None
    """The fencing token sent (renew, release)."""
    ttl: float | None = None
    wait: float = 0.0
    lock_delay: float = 0.0
    request_id: str | None = None
    """Acquire/release: retries of one request carry the same id (DESIGN.md §3)."""
    attempt: int = 1
    node: str | None = None
    """The member the request was sent to."""
    status: int | None = None
    lease: Grant | None = None
    """ok acquire/renew: the grant; ok read: the lease read, None for ``not_found``."""
    current_token: int | None = None
    """ok verify: the token of the current grant (None: the name is free)."""
    error: str | None = None
    """The error code (``held``, ``not_holder``, ``unavailable``...) or exception name."""
    current: Grant | None = None
    """On 409: the current grant the refusal names (None: it names none)."""
    answered_by: str | None = None
    """``X-Paxlock-Node``: the member that answered."""
    decided_by: str | None = None
    """``X-Paxlock-Primary`` (the primary that served it, when forwarded), else the answerer."""

    @property
    def resp(self) -> float:
        """Completion time for the checker: +inf for an indeterminate operation."""
        return math.inf if self.type == "info" else self.end

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if v is not None}
        out["kind"] = "op"
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Op:
        data = {k: v for k, v in data.items() if k != "kind"}
        for key in ("lease", "current"):
            if data.get(key) is not None:
                data[key] = Grant(**data[key])
        return cls(**data)


@dataclass(slots=True)
class Event:
    """Something the nemesis did (or observed), e.g. ``kill n1`` or ``primary n2``."""

    t: float
    what: str
    fault: bool = True
    """False for observations (a new primary, a member caught up)."""

    def to_json(self) -> dict[str, Any]:
        return {"kind": "nemesis", **asdict(self)}


@dataclass
class History:
    ops: list[Op] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def write(self, path: Path) -> None:
        with open(path, "w") as file:
            file.write(json.dumps({"kind": "meta", **self.meta}) + "\n")
            lines: list[tuple[float, dict[str, Any]]] = [(op.inv, op.to_json()) for op in self.ops]
            lines += [(e.t, e.to_json()) for e in self.events]
            for _, line in sorted(lines, key=lambda item: item[0]):
                file.write(json.dumps(line) + "\n")

    @classmethod
    def read(cls, path: Path) -> History:
        history = cls()
        for line in _lines(path):
            kind = line.get("kind")
            if kind == "meta":
                history.meta = {k: v for k, v in line.items() if k != "kind"}
            elif kind == "op":
                history.ops.append(Op.from_json(line))
            elif kind == "nemesis":
                history.events.append(Event(line["t"], line["what"], line.get("fault", True)))
        return history


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    with open(path) as file:
        for raw in file:
            if raw.strip():
                yield json.loads(raw)


def count(ops: Iterable[Op]) -> dict[str, int]:
    out = {"attempted": 0, "ok": 0, "fail": 0, "info": 0}
    for op in ops:
        out["attempted"] += 1
        out[op.type] += 1
    return out
