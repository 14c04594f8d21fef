"""The client-side checks of a history: validity intervals (mutual exclusion as clients that
follow the SDK's conservative rule see it) and fencing tokens. Pure.

- **Validity intervals**: a client may use a grant from its acknowledgement until
  ``invocation + ttl × (1 − margin)`` (DESIGN.md §3), extended the same way by each
  acknowledged renewal and ended by its first release attempt. Two grants of one name must
  never have overlapping intervals.
- **Fencing tokens**: distinct across grants, and increasing in real time (a grant
  acknowledged before another was requested has the smaller token), across all names.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable

from findings import Finding
from history import Op


def check_validity(ops: Iterable[Op], margin: float) -> list[Finding]:
    """No two grants of one name are both usable by their clients at one instant."""
    by_grant: dict[tuple[str, int], list[tuple[float, float, int]]] = defaultdict(list)
    released_at: dict[tuple[str, str | None, int | None], float] = {}
    ops = list(ops)
    for op in ops:
        if op.f == "release":
            key = (op.name, op.holder, op.token)
            released_at[key] = min(released_at.get(key, math.inf), op.inv)
    for op in ops:
        if op.type != "ok" or op.f not in ("acquire", "renew") or op.lease is None:
            continue
        ttl = op.lease.ttl if op.lease.ttl is not None else (op.ttl or 0.0)
        until = op.inv + ttl * (1 - margin)
        until = min(until, released_at.get((op.name, op.holder, op.lease.token), math.inf))
        if op.end < until:
            by_grant[(op.name, op.lease.token)].append((op.end, until, op.id))
    findings = []
    by_name: dict[str, list[tuple[float, float, int, int]]] = defaultdict(list)
    for (name, token), intervals in by_grant.items():
        by_name[name] += [(start, end, token, op_id) for start, end, op_id in intervals]
    for name, usable in by_name.items():
        usable.sort()
        reach: tuple[float, int, int] | None = None  # (end, token, op) furthest so far
        for start, end, token, op_id in usable:
            if reach is not None and reach[1] != token and start < reach[0]:
                findings.append(Finding(
                    "validity", name,
                    f"grant token {token} (op {op_id}) usable from t={start:.3f} while grant "
                    f"token {reach[1]} (op {reach[2]}) is usable until t={reach[0]:.3f}",
                    (reach[2], op_id),
                ))  # fmt: skip
            if reach is None or end > reach[0]:
                reach = (end, token, op_id)
    return findings


def check_tokens(ops: Iterable[Op]) -> list[Finding]:
    """Fencing tokens are unique per grant and increase with real time, across all names."""
    grants = [op for op in ops if op.type == "ok" and op.f == "acquire" and op.lease is not None]
    findings = []
    owner: dict[int, Op] = {}
    for op in grants:
        assert op.lease is not None
        other = owner.setdefault(op.lease.token, op)
        if other is not op and (other.name, other.holder) != (op.name, op.holder):
            findings.append(Finding("tokens", op.name, f"token {op.lease.token} granted twice: "
                                    f"op {other.id} ({other.name} to {other.holder}) and op "
                                    f"{op.id} ({op.name} to {op.holder})", (other.id, op.id)))  # fmt: skip
    by_end = sorted(grants, key=lambda op: op.end)
    ends = [op.end for op in by_end]
    best: list[tuple[int, int]] = []  # prefix max of (token, op id) by completion
    for op in by_end:
        assert op.lease is not None
        item = (op.lease.token, op.id)
        best.append(item if not best or item > best[-1] else best[-1])
    for op in grants:
        assert op.lease is not None
        before = bisect_left(ends, op.inv)
        if before and best[before - 1][0] >= op.lease.token:
            token, earlier = best[before - 1]
            findings.append(Finding("tokens", op.name, f"op {op.id} was granted token "
                                    f"{op.lease.token} after op {earlier} had been granted "
                                    f"token {token}", (earlier, op.id)))  # fmt: skip
    return findings
