"""The sequential model of one lease name (DESIGN.md §3) that the linearizability search
of ``linearizability`` runs histories against. Pure.

The model of one name, and the decisions it encodes:

- State: ``holder`` (None when free), ``token`` (None when held through an indeterminate
  acquire whose token was never seen: "some token above ``last``"), ``exp`` (the earliest
  time the lease can have expired), ``last`` (the highest token granted on this name).
- Grant (acquire ok): the name is free and the token is above ``last``.
- **Expiry** is an internal, nondeterministic transition. The primary's timer starts when the
  grant is applied (after the acquire's invocation) and restarts at each confirmed renewal
  (after the renewal's invocation) and at every change of primary, so a lease can never
  expire before ``exp = max(invocation of the grant, of each ok renewal) + ttl``; it may live
  any time longer. The search lets it expire before an operation ``o`` only when ``exp``
  is at most ``o``'s completion time (some instant in ``o``'s window lies after ``exp``).
  This is looser than tracking linearization instants, so it never rejects a correct
  history, and still rejects a second grant, or a ``not_found`` read, earlier than ``exp``.
- Renew ok: holder and token match; ``exp`` moves to the renewal's invocation + ttl.
- Release ok: holder and token match; the name is free.
- **Lock-delay**: a grant asked with ``lock_delay`` ``d`` that *expires* (a release never
  blocks) leaves the name free of holders but closed to grants until ``exp + d`` at the
  earliest; reads then see ``not_found`` and acquires ``held`` naming no holder.
- Reads and refusals are observations: a read returns the current grant or ``not_found``;
  ``verify`` returns the current fencing token (None: free);
  409 ``held`` names the current grant (``held`` naming none — a grant to another request in
  flight, or lock-delay — constrains nothing); 409 ``not_holder`` names the current grant,
  or none when the name is free, and it is not the caller's.
- Indeterminate operations (``info``) may take effect at any time after their invocation,
  or never: acquires and releases are linearized only where they change the state; renewals
  and reads are dropped (a renewal only postpones an expiry the model never forces). Failed
  operations (``fail`` with no observation: a refused connection, a 400) are dropped.
- **Retries**: attempts of one request (same ``request_id``) are merged before the search
  (``linearizability.merge_retries``): a definite answer to a retry is a past fact, dated
  after the *first* attempt's invocation; every ``ok`` answer of a request must report the
  same grant.
- Indeterminate acquires of one holder (same ttl) are interchangeable but for their
  invocation time, and an earlier one allows everything a later one does (an earlier
  ``exp``), so only the earliest not yet linearized one is ever tried: each such class is
  represented by a count. That, dominance pruning, and linearizing state-preserving
  observations eagerly keep the search from going exponential (``linearizability``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

from history import Grant


class State(NamedTuple):
    holder: str | None
    token: int | None
    exp: float
    last: int
    delay: float = 0.0
    """The current grant's lock-delay (held), applied if it expires."""
    free_from: float = 0.0
    """Free name: no grant before this time (lock-delay after an expiry)."""


FREE = State(None, None, 0.0, 0)


class Kind(IntEnum):
    ACQUIRE = 0
    RENEW = 1
    RELEASE = 2
    OBSERVE = 3
    """A read, or a refusal that names the current grant."""
    NOT_MINE = 4
    """A ``not_holder`` refusal: an observation that also says "not (holder, token)"."""
    VERIFY = 5
    """An observation of the current token only (None: free)."""
    CRASHED_ACQUIRE = 6
    CRASHED_RELEASE = 7


@dataclass(frozen=True, slots=True)
class Step:
    """One operation prepared for the search."""

    op_id: int
    kind: Kind
    inv: float
    resp: float
    holder: str | None = None
    token: int | None = None
    ttl: float = 0.0
    seen: Grant | None = None
    """OBSERVE / NOT_MINE: the grant observed, None for a free name."""
    delay: float = 0.0
    """ACQUIRE: the lock-delay asked for."""


def _bind(state: State, token: int) -> State | None:
    """``state`` (held) if its token is ``token``, binding an unknown one, else None."""
    if state.token == token:
        return state
    if state.token is None and token > state.last:
        return state._replace(token=token, last=token)
    return None


def _observe(state: State, seen: Grant | None) -> State | None:
    """``state`` if it shows ``seen`` (binding an unknown token), else None."""
    if seen is None:
        return state if state.holder is None else None
    if state.holder != seen.holder:
        return None
    return _bind(state, seen.token)


def apply(state: State, step: Step, bound: float = math.inf) -> State | None:
    """The sequential model: the state after ``step``, or None if it cannot happen now.
    ``bound``: the step is linearized before this time (the return being explained)."""
    match step.kind:
        case Kind.ACQUIRE:
            assert step.token is not None
            if state.holder is not None or step.token <= state.last:
                return None
            if state.free_from > min(step.resp, bound):
                return None  # still in lock-delay throughout the acquire's window
            return State(step.holder, step.token, step.inv + step.ttl, step.token, step.delay)
        case Kind.CRASHED_ACQUIRE:
            if state.holder is not None or state.free_from > bound:
                return None  # refused: no change, never worth linearizing
            return State(step.holder, None, step.inv + step.ttl, state.last, step.delay)
        case Kind.RENEW:
            assert step.holder is not None and step.token is not None
            held = _observe(state, Grant(step.holder, step.token))
            if held is None:
                return None
            return held._replace(exp=max(held.exp, step.inv + step.ttl))
        case Kind.RELEASE | Kind.CRASHED_RELEASE:
            assert step.holder is not None and step.token is not None
            held = _observe(state, Grant(step.holder, step.token))
            if held is None:
                return None
            return State(None, None, 0.0, max(held.last, step.token))
        case Kind.OBSERVE:
            return _observe(state, step.seen)
        case Kind.NOT_MINE:
            seen = step.seen
            if seen is not None and (seen.holder, seen.token) == (step.holder, step.token):
                return None  # "not yours" naming the caller's own grant
            return _observe(state, step.seen)
        case Kind.VERIFY:
            if step.token is None:
                return state if state.holder is None else None
            return None if state.holder is None else _bind(state, step.token)
    raise AssertionError(step.kind)


def expire(state: State, bound: float) -> State | None:
    """The internal expiry transition, allowed once ``exp`` lies before ``bound``. After a
    lock-delay ``d`` the name stays blocked until ``exp + d`` at the earliest (the primary
    unblocks it a full ``d`` after applying the expiry)."""
    if state.holder is None or state.exp > bound:
        return None
    last = state.last if state.token is None else max(state.last, state.token)
    return State(None, None, 0.0, last, 0.0, state.exp + state.delay if state.delay else 0.0)
