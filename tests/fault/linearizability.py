"""The checker of a Jepsen-style run: is what the clients saw explainable by one lease state
machine (DESIGN.md §3) applying the operations one at a time, each at an instant between its
invocation and its completion? Pure: a list of ``history.Op`` in, a ``CheckResult`` out.

Three checks:

1. **Linearizability** against a sequential model of one name (names are independent, so the
   history is partitioned by name — P-compositionality — and each part searched alone). The
   search is Lowe's just-in-time variant of Wing & Gong (the algorithm family of Knossos and
   Porcupine): events are visited in time order; a *configuration* is (model state, the
   operations already linearized but not yet returned, how many indeterminate operations of
   each class were linearized); at each return, every configuration is extended by
   linearizing pending operations (and model-internal expiries) until the returning one is
   linearized; configurations are deduplicated (the memo) and dominated ones dropped. No
   configuration left = not linearizable. A time budget (and a cap on configurations) ends
   the search with ``unknown``, never with a guess.
2. **Validity intervals**: a client may use a grant from its acknowledgement until
   ``invocation + ttl × (1 − margin)`` (the SDK's conservative rule, DESIGN.md §3), extended
   the same way by each acknowledged renewal and ended by its first release attempt. Two
   grants of one name must never have overlapping intervals.
3. **Fencing tokens**: distinct across grants, and increasing in real time (a grant
   acknowledged before another was requested has the smaller token).

Durability across restarts ("nothing acknowledged is lost") is part of 1: a grant or release
acknowledged before a restart constrains every later read.

The sequential model itself, and the decisions it encodes, are in ``lease_model``; the
client-side checks (2 and 3) in ``fencing``; the result types in ``findings``.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from typing import NamedTuple

from fencing import check_tokens, check_validity
from findings import CheckResult, Finding, NameResult, Verdict
from history import Op
from lease_model import FREE, Kind, State, Step, apply, expire

__all__ = ["CheckResult", "Finding", "Verdict", "check", "merge_retries"]

CONFIGS_MAX = 200_000
"""Configurations alive at once before the search gives up with ``unknown``."""
CLOCK_EVERY = 256
"""Search steps between two looks at the clock."""


# -- preparing a history --------------------------------------------------------------------


def merge_retries(ops: Sequence[Op]) -> tuple[list[Op], list[Finding]]:
    """Attempts of one request (same holder and ``request_id``) as the checker sees them.

    The state machine applies a request id at most once and answers every later attempt
    from its window with that first result, "whatever happened since" (DESIGN.md §3): an
    answer to a retry is a past fact, dated somewhere after the *first* attempt was sent. So
    the attempts up to the first definite answer become one operation from the first
    invocation to that answer:

    - an ``ok`` answer: the one application (the indeterminate attempts before it are
      replays or never happened);
    - a refusal of a release: releases always go through the log, so the refusal is the
      one application, and nothing else of the request ever takes effect;
    - a refusal of an acquire: either that (a replay of a logged refusal) or a parked
      request's deadline, which is no application at all — after which an earlier
      indeterminate attempt may still be applied. So the earlier attempts stay, as
      indeterminate acquires; the refusal becomes an observation from the first invocation.

    Every ``ok`` answer of one request must report the same grant (idempotency).
    """
    groups: dict[tuple[str | None, str], list[Op]] = defaultdict(list)
    out: list[Op] = []
    for op in ops:
        if op.request_id is not None and op.f in ("acquire", "release"):
            groups[(op.holder, op.request_id)].append(op)
        else:
            out.append(op)
    findings = []
    for (holder, request_id), attempts in groups.items():
        attempts.sort(key=lambda op: op.inv)
        oks = [op for op in attempts if op.type == "ok"]
        grants = {(op.lease.holder, op.lease.token) if op.lease else None for op in oks}
        if len(grants) > 1:
            findings.append(Finding("idempotency", attempts[0].name,
                                    f"request {request_id} of {holder} answered ok with "
                                    f"different grants {sorted(map(str, grants))}",
                                    tuple(op.id for op in oks)))  # fmt: skip
        definite = next((op for op in attempts if op.type == "ok" or op.error in _REFUSALS),
                        None)  # fmt: skip
        if definite is None:
            out += attempts
            continue
        before = [op for op in attempts if op.inv < definite.inv]
        out.append(replace(definite, inv=attempts[0].inv))
        if definite.type != "ok" and definite.f == "acquire":
            out += [op for op in before if op.type == "info"]
    out.sort(key=lambda op: op.inv)
    return out, findings


_REFUSALS = ("held", "not_holder", "bad_request")


def _step(op: Op) -> Step | Finding | None:
    """The search step of one operation; None when it constrains nothing; a Finding when the
    answer is malformed on its own (a grant to someone else...)."""
    if op.type == "info":
        if op.f == "acquire":
            return Step(op.id, Kind.CRASHED_ACQUIRE, op.inv, math.inf, op.holder, None,
                        op.ttl or 0.0, delay=op.lock_delay)  # fmt: skip
        if op.f == "release":
            return Step(op.id, Kind.CRASHED_RELEASE, op.inv, math.inf, op.holder, op.token)
        return None
    if op.type == "fail":
        if op.error == "held" and op.current is not None:
            return Step(op.id, Kind.OBSERVE, op.inv, op.end, seen=op.current)
        if op.error == "not_holder" and op.f in ("renew", "release"):
            return Step(op.id, Kind.NOT_MINE, op.inv, op.end, op.holder, op.token,
                        seen=op.current)  # fmt: skip
        return None
    lease = op.lease
    if op.f == "verify":
        if op.error == "inconsistent_verify":
            return Finding("response", op.name, f"op {op.id} verify of token {op.token} "
                           f"answered current={op.current_token == op.token} inconsistently "
                           f"with the current token {op.current_token}", (op.id,))  # fmt: skip
        return Step(op.id, Kind.VERIFY, op.inv, op.end, token=op.current_token)
    if op.f == "read":
        return Step(op.id, Kind.OBSERVE, op.inv, op.end, seen=lease)
    if op.f == "release":
        return Step(op.id, Kind.RELEASE, op.inv, op.end, op.holder, op.token)
    if lease is None or lease.holder != op.holder:
        return Finding("response", op.name, f"op {op.id} {op.f} by {op.holder} answered ok "
                       f"with lease {lease}", (op.id,))  # fmt: skip
    ttl = lease.ttl if lease.ttl is not None else (op.ttl or 0.0)
    if op.f == "acquire":
        return Step(op.id, Kind.ACQUIRE, op.inv, op.end, op.holder, lease.token, ttl,
                    delay=op.lock_delay)  # fmt: skip
    if lease.token != op.token:
        return Finding("response", op.name, f"op {op.id} renew of token {op.token} answered "
                       f"with token {lease.token}", (op.id,))  # fmt: skip
    return Step(op.id, Kind.RENEW, op.inv, op.end, op.holder, op.token, ttl)


def _crash_class(step: Step) -> tuple[Kind, str | None, float | int | None, float]:
    if step.kind is Kind.CRASHED_ACQUIRE:
        return (step.kind, step.holder, step.ttl, step.delay)
    return (step.kind, step.holder, step.token, 0.0)


# -- the search -----------------------------------------------------------------------------


class Config(NamedTuple):
    state: State
    linearized: frozenset[int]
    """Step indexes linearized but not yet returned."""
    crashed: tuple[int, ...]
    """Per crash class, how many of its (invocation-ordered) members were linearized."""


class _OutOfBudget(Exception):
    pass


class NameSearch:
    """The search over the operations of one name."""

    def __init__(self, name: str, steps: Sequence[Step], deadline: float,
                 configs_max: int = CONFIGS_MAX) -> None:  # fmt: skip
        self.name = name
        self.deadline = deadline
        self.configs_max = configs_max
        self.complete = [s for s in steps if s.resp != math.inf]
        crashed = sorted((s for s in steps if s.resp == math.inf), key=lambda s: s.inv)
        classes: dict[tuple[Kind, str | None, float | int | None, float], list[Step]] = {}
        for step in crashed:
            classes.setdefault(_crash_class(step), []).append(step)
        self.classes = list(classes.values())
        self.class_invs = [[s.inv for s in members] for members in self.classes]
        self.steps_taken = 0
        self.peak = 0

    def run(self) -> NameResult:
        started = time.monotonic()
        result = NameResult(self.name, Verdict.OK, len(self.complete) + sum(map(len, self.classes)))
        try:
            finding = self._search()
        except _OutOfBudget:
            result.verdict = Verdict.UNKNOWN
        else:
            if finding is not None:
                result.verdict, result.finding = Verdict.VIOLATION, finding
        result.steps, result.configs_max = self.steps_taken, self.peak
        result.elapsed_s = time.monotonic() - started
        return result

    def _events(self) -> list[tuple[float, int, int]]:
        """(time, 0 = call / 1 = return, index into ``complete``), calls first on ties."""
        events = []
        for index, step in enumerate(self.complete):
            events.append((step.inv, 0, index))
            events.append((step.resp, 1, index))
        events.sort()
        return events

    def _search(self) -> Finding | None:
        configs = {Config(FREE, frozenset(), (0,) * len(self.classes))}
        pending: set[int] = set()
        for at, is_return, index in self._events():
            if not is_return:
                pending.add(index)
                continue
            # crashed members invoked by now (calls precede returns at equal times)
            available = [bisect_right(invs, at) for invs in self.class_invs]
            nxt: set[Config] = set()
            for config in configs:
                if index in config.linearized:  # linearized earlier, before another return
                    nxt.add(Config(config.state, config.linearized - {index}, config.crashed))
                else:
                    self._close(config, index, pending, available, at, nxt)
            pending.discard(index)
            if not nxt:
                return self._violation(index, configs)
            configs = _prune(nxt)
            self.peak = max(self.peak, len(configs))
        return None

    def _close(self, start: Config, target: int, pending: set[int], available: list[int],
               bound: float, out: set[Config]) -> None:  # fmt: skip
        """Every way to linearize pending steps (and expiries) up to and including
        ``target``; the configurations right after ``target`` go to ``out``. A configuration
        dominated by one already met (see ``_dominates``) is not explored: it could only
        reach what the dominating one reaches."""
        seen = _Frontier()
        seen.add(start)
        stack = [start]
        while stack:
            config = stack.pop()
            self.steps_taken += 1
            if self.steps_taken % CLOCK_EVERY == 0:
                if time.monotonic() > self.deadline or len(seen) + len(out) > self.configs_max:
                    raise _OutOfBudget
            state, linearized, crashed = config
            linearized = self._observe_eagerly(state, linearized, pending, target, bound)
            for index in pending:
                if index in linearized:
                    continue
                after = apply(state, self.complete[index], bound)
                if after is None:
                    continue
                if index == target:
                    out.add(Config(after, linearized, crashed))
                    continue
                if seen.add(Config(after, linearized | {index}, crashed)):
                    stack.append(Config(after, linearized | {index}, crashed))
            for cls, used in enumerate(crashed):
                if used >= available[cls]:
                    continue
                after = apply(state, self.classes[cls][used], bound)
                if after is not None and after != state:
                    bumped = crashed[:cls] + (used + 1,) + crashed[cls + 1:]
                    if seen.add(Config(after, linearized, bumped)):
                        stack.append(Config(after, linearized, bumped))
            expired = expire(state, bound)
            if expired is not None and seen.add(Config(expired, linearized, crashed)):
                stack.append(Config(expired, linearized, crashed))

    def _observe_eagerly(self, state: State, linearized: frozenset[int], pending: set[int],
                         target: int, bound: float) -> frozenset[int]:  # fmt: skip
        """Linearize now every pending step that observes ``state`` without changing it.

        Such a step (a read, a refusal, a verify that binds nothing) placed now leaves every
        later choice open, so the configuration with it linearized dominates the one
        without: the search need not branch on it. This keeps operations stuck for long
        (at a paused member) from multiplying the configurations by two each."""
        eager = [index for index in pending
                 if index != target and index not in linearized
                 and apply(state, self.complete[index], bound) == state]  # fmt: skip
        return linearized | frozenset(eager) if eager else linearized

    def _violation(self, index: int, configs: set[Config]) -> Finding:
        step = self.complete[index]
        states = sorted({_show(c.state) for c in configs})[:6]
        seen = step.seen
        signature = ""
        if step.kind is Kind.NOT_MINE and seen is not None and \
                (seen.holder, seen.token) == (step.holder, step.token):  # fmt: skip
            signature = "not-holder-naming-the-caller"
        return Finding(
            "linearizability", self.name,
            f"op {step.op_id} ({step.kind.name.lower()} holder={step.holder} token={step.token} "
            f"seen={step.seen}, window [{step.inv:.3f}, {step.resp:.3f}]) cannot be linearized: "
            f"no state reachable before it allows it; possible states just before were "
            f"{'; '.join(states)}",
            (step.op_id,), signature,
        )  # fmt: skip


class _Frontier:
    """Configurations met so far, grouped by (holder, token, linearized set); ``add`` is
    false for one that is equal to, or dominated by, one already met."""

    def __init__(self) -> None:
        self._groups: dict[tuple[str | None, int | None, frozenset[int]], list[Config]] = {}
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, config: Config) -> bool:
        key = (config.state.holder, config.state.token, config.linearized)
        group = self._groups.setdefault(key, [])
        if any(_dominates(other, config) for other in group):
            return False
        group.append(config)
        self.size += 1
        return True


def _show(state: State) -> str:
    if state.holder is None:
        blocked = f", lock-delay until t>={state.free_from:.3f}" if state.free_from else ""
        return f"free (last token {state.last}{blocked})"
    token = state.token if state.token is not None else f">{state.last}"
    return f"held by {state.holder} token {token} (may expire from t={state.exp:.3f})"


def _prune(configs: set[Config]) -> set[Config]:
    """Drop dominated configurations: same holder, token and linearized set, and no more
    permissive (a later ``exp``, a higher ``last``, more crashed operations used up)."""
    groups: dict[tuple[str | None, int | None, frozenset[int]], list[Config]] = defaultdict(list)
    for config in configs:
        groups[(config.state.holder, config.state.token, config.linearized)].append(config)
    kept: set[Config] = set()
    for group in groups.values():
        if len(group) == 1:
            kept.add(group[0])
            continue
        group.sort(key=lambda c: (c.state.exp, c.state.last, sum(c.crashed)))
        frontier: list[Config] = []
        for config in group:
            if not any(_dominates(other, config) for other in frontier):
                frontier.append(config)
        kept.update(frontier)
    return kept


def _dominates(a: Config, b: Config) -> bool:
    """``a`` allows everything ``b`` does: an expiry no later, a lock-delay no longer, a
    lower highest token, no more indeterminate operations used up."""
    x, y = a.state, b.state
    return (x.exp <= y.exp and x.last <= y.last and x.delay <= y.delay
            and x.free_from <= y.free_from
            and all(m <= n for m, n in zip(a.crashed, b.crashed)))  # fmt: skip


def check(ops: Sequence[Op], *, budget_s: float = 10.0, margin: float = 0.2,
          configs_max: int = CONFIGS_MAX) -> CheckResult:  # fmt: skip
    """All three checks; ``budget_s`` bounds the linearizability search of all names."""
    started = time.monotonic()
    deadline = started + budget_s
    result = CheckResult(Verdict.OK)
    ops, result.findings = merge_retries(ops)
    by_name: dict[str, list[Step]] = defaultdict(list)
    for op in ops:
        prepared = _step(op)
        if isinstance(prepared, Finding):
            result.findings.append(prepared)
        elif prepared is not None:
            by_name[op.name].append(prepared)
    for name in sorted(by_name):
        named = NameSearch(name, by_name[name], deadline, configs_max).run()
        result.names[name] = named
        if named.finding is not None:
            result.findings.append(named.finding)
    result.findings += check_validity(ops, margin)
    result.findings += check_tokens(ops)
    if result.findings:
        result.verdict = Verdict.VIOLATION
    elif any(n.verdict is Verdict.UNKNOWN for n in result.names.values()):
        result.verdict = Verdict.UNKNOWN
    result.elapsed_s = time.monotonic() - started
    return result
