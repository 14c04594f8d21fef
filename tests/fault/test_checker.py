"""The checker's own tests: known-bad histories are rejected (each for the right reason),
known-good ones accepted, and a huge ambiguous one answered ``unknown`` within its budget."""

from __future__ import annotations

import math
import time

from history import Grant, History, Op
from lease_model import Kind, State, Step, apply, expire
from linearizability import Verdict, check

TTL = 10.0


class H:
    """A tiny builder of histories: times in seconds, one method per kind of answer."""

    def __init__(self) -> None:
        self.ops: list[Op] = []

    def _add(self, **fields: object) -> Op:
        op = Op(id=len(self.ops) + 1, **fields)  # type: ignore[arg-type]
        self.ops.append(op)
        return op

    def grant(self, holder: str, name: str, inv: float, end: float, token: int,
              ttl: float = TTL) -> Op:  # fmt: skip
        return self._add(process=holder, f="acquire", name=name, inv=inv, end=end, type="ok",
                         holder=holder, ttl=ttl, lease=Grant(holder, token, ttl))  # fmt: skip

    def held(self, holder: str, name: str, inv: float, end: float,
             by: tuple[str, int] | None) -> Op:  # fmt: skip
        return self._add(process=holder, f="acquire", name=name, inv=inv, end=end, type="fail",
                         holder=holder, ttl=TTL, error="held",
                         current=Grant(*by) if by else None)  # fmt: skip

    def acquire_unknown(self, holder: str, name: str, inv: float, end: float,
                        ttl: float = TTL) -> Op:  # fmt: skip
        return self._add(process=holder, f="acquire", name=name, inv=inv, end=end, type="info",
                         holder=holder, ttl=ttl, error="TimeoutError")  # fmt: skip

    def renew(self, holder: str, name: str, inv: float, end: float, token: int,
              ttl: float = TTL) -> Op:  # fmt: skip
        return self._add(process=holder, f="renew", name=name, inv=inv, end=end, type="ok",
                         holder=holder, token=token, lease=Grant(holder, token, ttl))  # fmt: skip

    def not_holder(self, holder: str, name: str, inv: float, end: float, token: int,
                   current: tuple[str, int] | None, f: str = "renew") -> Op:  # fmt: skip
        return self._add(process=holder, f=f, name=name, inv=inv, end=end, type="fail",
                         holder=holder, token=token, error="not_holder",
                         current=Grant(*current) if current else None)  # fmt: skip

    def release(self, holder: str, name: str, inv: float, end: float, token: int,
                type: str = "ok") -> Op:  # fmt: skip
        return self._add(process=holder, f="release", name=name, inv=inv, end=end, type=type,
                         holder=holder, token=token)  # fmt: skip

    def read(self, reader: str, name: str, inv: float, end: float,
             lease: tuple[str, int] | None) -> Op:  # fmt: skip
        return self._add(process=reader, f="read", name=name, inv=inv, end=end, type="ok",
                         lease=Grant(*lease, TTL) if lease else None)  # fmt: skip

    def verify(self, reader: str, name: str, inv: float, end: float, token: int,
               current: int | None) -> Op:  # fmt: skip
        return self._add(process=reader, f="verify", name=name, inv=inv, end=end, type="ok",
                         token=token, current_token=current)  # fmt: skip

    def check(self, budget_s: float = 5.0, margin: float = 0.2) -> object:
        return check(self.ops, budget_s=budget_s, margin=margin)


def _rejected(h: H, check_name: str, op_id: int | None = None) -> None:
    result = h.check()
    assert result.verdict is Verdict.VIOLATION, result.summary()  # type: ignore[attr-defined]
    findings = [f for f in result.findings if f.check == check_name]  # type: ignore[attr-defined]
    assert findings, result.summary()  # type: ignore[attr-defined]
    if op_id is not None:
        assert any(op_id in f.op_ids for f in findings), result.summary()  # type: ignore[attr-defined]


def _accepted(h: H) -> None:
    result = h.check()
    assert result.verdict is Verdict.OK, result.summary()  # type: ignore[attr-defined]


# -- known-bad histories ---------------------------------------------------------------------


def test_double_grant_is_rejected() -> None:
    """Two holders granted one name, the first neither released nor possibly expired."""
    h = H()
    h.grant("a", "x", 0.0, 0.1, token=1)
    second = h.grant("b", "x", 1.0, 1.1, token=2)
    _rejected(h, "linearizability", second.id)
    _rejected(h, "validity")


def test_double_grant_is_rejected_even_when_concurrent() -> None:
    h = H()
    h.grant("a", "x", 0.0, 0.5, token=1)
    h.grant("b", "x", 0.1, 0.6, token=2)
    _rejected(h, "linearizability")


def test_stale_read_is_rejected() -> None:
    """A read that starts after a release and a new grant were acknowledged returns the old
    holder: the read was served from a stale state."""
    h = H()
    h.grant("a", "x", 0.0, 0.1, token=1)
    h.release("a", "x", 0.2, 0.3, token=1)
    h.grant("b", "x", 0.4, 0.5, token=3)
    stale = h.read("r", "x", 0.6, 0.7, ("a", 1))
    _rejected(h, "linearizability", stale.id)


def test_stale_not_found_read_is_rejected() -> None:
    h = H()
    h.grant("a", "x", 0.0, 0.1, token=1)
    stale = h.read("r", "x", 0.2, 0.3, None)
    _rejected(h, "linearizability", stale.id)


def test_lost_release_is_rejected() -> None:
    """A release was acknowledged, yet a later read still shows the grant."""
    h = H()
    h.grant("a", "x", 0.0, 0.1, token=1)
    h.release("a", "x", 0.2, 0.3, token=1)
    lost = h.read("r", "x", 0.4, 0.5, ("a", 1))
    _rejected(h, "linearizability", lost.id)


def test_lost_grant_across_a_restart_is_rejected() -> None:
    """A grant acknowledged before a full restart is gone after it, long before its TTL."""
    h = H()
    h.grant("a", "x", 0.0, 0.1, token=1, ttl=60.0)
    lost = h.read("r", "x", 5.0, 5.1, None)
    _rejected(h, "linearizability", lost.id)


def test_non_increasing_token_is_rejected() -> None:
    h = H()
    h.grant("a", "x", 0.0, 0.1, token=5)
    h.release("a", "x", 0.2, 0.3, token=5)
    again = h.grant("b", "x", 0.4, 0.5, token=5)
    _rejected(h, "linearizability", again.id)
    _rejected(h, "tokens", again.id)


def test_token_order_across_names_is_checked() -> None:
    """Tokens are cluster-wide revisions: a later grant on another name has a larger one."""
    h = H()
    h.grant("a", "x", 0.0, 0.1, token=7)
    later = h.grant("b", "y", 0.2, 0.3, token=6)
    _rejected(h, "tokens", later.id)


def test_one_token_for_two_names_is_rejected() -> None:
    h = H()
    h.grant("a", "x", 0.0, 0.1, token=7)
    h.grant("b", "y", 0.0, 0.1, token=7)
    _rejected(h, "tokens")


def test_renew_after_release_is_rejected() -> None:
    h = H()
    h.grant("a", "x", 0.0, 0.1, token=1)
    h.release("a", "x", 0.2, 0.3, token=1)
    renew = h.renew("a", "x", 0.4, 0.5, token=1)
    _rejected(h, "linearizability", renew.id)


def test_wrong_not_holder_is_rejected() -> None:
    """A renewal refused ``not_holder`` while the caller's grant was surely current."""
    h = H()
    h.grant("a", "x", 0.0, 0.1, token=1)
    refused = h.not_holder("a", "x", 0.2, 0.3, token=1, current=None)
    _rejected(h, "linearizability", refused.id)


def test_held_naming_a_stale_holder_is_rejected() -> None:
    h = H()
    h.grant("a", "x", 0.0, 0.1, token=1)
    h.release("a", "x", 0.2, 0.3, token=1)
    h.grant("b", "x", 0.4, 0.5, token=3)
    stale = h.held("c", "x", 0.6, 0.7, by=("a", 1))
    _rejected(h, "linearizability", stale.id)


def test_expiry_before_the_ttl_is_rejected() -> None:
    """With ttl 2, a grant invoked at 0 cannot have expired by 1.5."""
    h = H()
    h.grant("a", "x", 0.0, 0.1, token=1, ttl=2.0)
    early = h.grant("b", "x", 1.0, 1.5, token=2, ttl=2.0)
    _rejected(h, "linearizability", early.id)


def test_renewal_postpones_the_earliest_expiry() -> None:
    """Expiry counts from the last acknowledged renewal's invocation, not the grant."""
    h = H()
    h.grant("a", "x", 0.0, 0.1, token=1, ttl=2.0)
    h.renew("a", "x", 1.5, 1.6, token=1, ttl=2.0)
    early = h.read("r", "x", 2.5, 2.6, None)  # 2.6 < 1.5 + 2
    _rejected(h, "linearizability", early.id)


def test_overlapping_validity_is_rejected() -> None:
    """Client-side view (no search involved): with ttl 2 and margin 0.2 the first client may
    use its grant until 1.6; a second grant acknowledged at 1.3 breaks mutual exclusion."""
    h = H()
    first = h.grant("a", "x", 0.0, 0.1, token=1, ttl=2.0)
    second = h.grant("b", "x", 1.2, 1.3, token=2, ttl=2.0)
    result = check(h.ops, budget_s=5.0, margin=0.2)
    assert any(f.check == "validity" and set(f.op_ids) == {first.id, second.id}
               for f in result.findings), result.summary()  # fmt: skip


def test_validity_ends_at_the_release() -> None:
    h = H()
    h.grant("a", "x", 0.0, 0.1, token=1, ttl=2.0)
    h.release("a", "x", 0.5, 0.6, token=1)
    h.grant("b", "x", 0.7, 0.8, token=3, ttl=2.0)
    _accepted(h)


# -- known-good histories --------------------------------------------------------------------


def test_sequential_lock_history_is_accepted() -> None:
    h = H()
    h.read("r", "x", 0.0, 0.1, None)
    h.grant("a", "x", 0.2, 0.3, token=1)
    h.held("b", "x", 0.4, 0.5, by=("a", 1))
    h.renew("a", "x", 0.6, 0.7, token=1)
    h.read("r", "x", 0.8, 0.9, ("a", 1))
    h.release("a", "x", 1.0, 1.1, token=1)
    h.not_holder("a", "x", 1.2, 1.3, token=1, current=None)
    h.grant("b", "x", 1.4, 1.5, token=3)
    h.read("r", "x", 1.6, 1.7, ("b", 3))
    _accepted(h)


def test_release_concurrent_with_a_waiting_acquire_is_accepted() -> None:
    """A parked acquire granted right after a concurrent release (seen in a real run): the
    release is linearized first although it returns last."""
    h = H()
    h.grant("a", "x", 0.0, 0.1, token=17)
    h.grant("b", "x", 0.2, 0.50, token=19)
    h.release("a", "x", 0.3, 0.51, token=17)
    h.renew("b", "x", 0.6, 0.7, token=19)
    _accepted(h)


def test_expiry_after_the_ttl_is_accepted() -> None:
    h = H()
    h.grant("a", "x", 0.0, 0.1, token=1, ttl=1.0)
    h.read("r", "x", 1.5, 1.6, None)
    h.grant("b", "x", 1.7, 1.8, token=4, ttl=1.0)
    h.not_holder("a", "x", 1.9, 2.0, token=1, current=("b", 4), f="release")
    _accepted(h)


def test_lease_may_outlive_its_ttl() -> None:
    """A new primary restarts timers at the full TTL: a lease seen long after is fine."""
    h = H()
    h.grant("a", "x", 0.0, 0.1, token=1, ttl=1.0)
    h.read("r", "x", 5.0, 5.1, ("a", 1))
    _accepted(h)


def test_indeterminate_acquire_may_take_effect_late() -> None:
    """An acquire that timed out is applied much later (a follower forwarded it after a
    pause): the name shows it, with a token nobody acknowledged, which the holder learns."""
    h = H()
    h.acquire_unknown("a", "x", 0.0, 1.0)
    h.read("r", "x", 1.5, 1.6, None)
    h.read("r", "x", 3.0, 3.1, ("a", 9))
    h.held("a", "x", 3.2, 3.3, by=("a", 9))
    h.release("a", "x", 3.4, 3.5, token=9)
    h.read("r", "x", 3.6, 3.7, None)
    _accepted(h)


def test_indeterminate_acquire_that_never_happened_is_accepted() -> None:
    h = H()
    h.acquire_unknown("a", "x", 0.0, 1.0)
    h.grant("b", "x", 2.0, 2.1, token=3)
    h.read("r", "x", 2.2, 2.3, ("b", 3))
    _accepted(h)


def test_indeterminate_release_may_take_effect() -> None:
    h = H()
    h.grant("a", "x", 0.0, 0.1, token=1)
    h.release("a", "x", 0.2, 2.2, token=1, type="info")
    h.read("r", "x", 0.5, 0.6, ("a", 1))
    h.read("r", "x", 1.0, 1.1, None)
    _accepted(h)


def test_unknown_token_must_still_increase() -> None:
    """An indeterminate grant's token, once read, is above every earlier grant's."""
    h = H()
    h.grant("a", "x", 0.0, 0.1, token=5, ttl=1.0)
    h.release("a", "x", 0.2, 0.3, token=5)
    h.acquire_unknown("b", "x", 0.4, 1.4)
    bad = h.read("r", "x", 2.0, 2.1, ("b", 4))
    _rejected(h, "linearizability", bad.id)


def test_names_are_independent() -> None:
    h = H()
    h.grant("a", "x", 0.0, 0.1, token=1)
    h.grant("a", "y", 0.0, 0.1, token=2)
    h.read("r", "x", 0.2, 0.3, ("a", 1))
    h.read("r", "y", 0.2, 0.3, ("a", 2))
    _accepted(h)


def test_a_history_survives_its_json_lines_file(tmp_path: object) -> None:
    from pathlib import Path

    h = H()
    h.grant("a", "x", 0.0, 0.1, token=1)
    h.acquire_unknown("b", "x", 0.2, 1.2)
    path = Path(str(tmp_path)) / "h.jsonl"
    History(h.ops, [], {"scenario": "unit"}).write(path)
    back = History.read(path)
    assert back.ops == h.ops and back.meta == {"scenario": "unit"}
    assert back.ops[1].resp == math.inf


# -- fencing checks, lock-delay, retries -----------------------------------------------------


def test_stale_verify_is_rejected() -> None:
    """A resource server's fencing check told that a superseded token is still current."""
    h = H()
    h.grant("a", "x", 0.0, 0.1, token=1)
    h.release("a", "x", 0.2, 0.3, token=1)
    h.grant("b", "x", 0.4, 0.5, token=3)
    stale = h.verify("server", "x", 0.6, 0.7, token=1, current=1)
    _rejected(h, "linearizability", stale.id)


def test_verify_is_accepted() -> None:
    h = H()
    h.verify("server", "x", 0.0, 0.1, token=1, current=None)
    h.grant("a", "x", 0.2, 0.3, token=2)
    h.verify("server", "x", 0.4, 0.5, token=1, current=2)
    _accepted(h)


def test_grant_inside_the_lock_delay_is_rejected() -> None:
    """A lease with lock-delay 5 expired (ttl 1): nobody may get the name before t=6."""
    h = H()
    first = h.grant("a", "x", 0.0, 0.1, token=1, ttl=1.0)
    first.lock_delay = 5.0
    h.read("r", "x", 2.0, 2.1, None)  # expired
    early = h.grant("b", "x", 3.0, 3.1, token=3, ttl=1.0)
    _rejected(h, "linearizability", early.id)


def test_grant_after_the_lock_delay_or_a_release_is_accepted() -> None:
    h = H()
    first = h.grant("a", "x", 0.0, 0.1, token=1, ttl=1.0)
    first.lock_delay = 5.0
    h.read("r", "x", 2.0, 2.1, None)
    h.grant("b", "y", 3.0, 3.1, token=2, ttl=1.0).lock_delay = 5.0
    h.release("b", "y", 3.2, 3.3, token=2)  # a release never blocks
    h.grant("c", "y", 3.4, 3.5, token=4, ttl=1.0)
    h.grant("b", "x", 6.0, 6.1, token=5, ttl=1.0)
    _accepted(h)


def _attempt(h: H, op: Op, request_id: str, attempt: int) -> Op:
    op.request_id, op.attempt = request_id, attempt
    return op


def test_retry_answered_with_the_first_grant_is_one_operation() -> None:
    """The first attempt timed out but was applied; the grant since expired and another
    holder took the name; the retry (same request id) replays the first grant, a past fact."""
    h = H()
    _attempt(h, h.acquire_unknown("a", "x", 0.0, 1.0, ttl=1.0), "a-1", 1)
    h.read("r", "x", 0.5, 0.6, ("a", 4))
    h.grant("b", "x", 2.0, 2.1, token=6, ttl=1.0)
    _attempt(h, h.grant("a", "x", 2.5, 2.6, token=4, ttl=1.0), "a-1", 2)
    h.read("r", "x", 2.7, 2.8, ("b", 6))
    _accepted(h)


def test_retry_answered_with_the_first_refusal_is_a_past_fact() -> None:
    """A release applied (and refused: the grant had moved on) while its answer was lost; its
    retry long after replays that refusal, naming the grant current *then* (seen in a run)."""
    h = H()
    h.grant("a", "x", 0.0, 0.1, token=13, ttl=1.0)
    h.grant("b", "x", 0.0, 5.0, token=20, ttl=1.0)  # a waiting acquire, granted at expiry
    _attempt(h, h.release("a", "x", 2.0, 3.0, token=13, type="info"), "a-9", 1)
    h.release("b", "x", 5.1, 5.2, token=20)
    h.grant("c", "x", 5.3, 5.4, token=39)
    retry = h.not_holder("a", "x", 6.0, 6.1, token=13, current=("b", 20), f="release")
    _attempt(h, retry, "a-9", 2)
    _accepted(h)


def test_stale_refusal_of_a_first_attempt_is_rejected() -> None:
    h = H()
    h.grant("b", "x", 0.0, 0.1, token=20)
    h.release("b", "x", 0.2, 0.3, token=20)
    h.grant("c", "x", 0.4, 0.5, token=39)
    stale = h.not_holder("a", "x", 0.6, 0.7, token=13, current=("b", 20), f="release")
    _attempt(h, stale, "a-9", 1)
    _rejected(h, "linearizability", stale.id)


def test_two_grants_for_one_request_are_rejected() -> None:
    h = H()
    first = _attempt(h, h.grant("a", "x", 0.0, 0.1, token=4), "a-1", 1)
    again = _attempt(h, h.grant("a", "x", 0.2, 0.3, token=5), "a-1", 2)
    result = h.check()
    assert any(f.check == "idempotency" and {first.id, again.id} <= set(f.op_ids)
               for f in result.findings), result.summary()  # type: ignore[attr-defined]  # fmt: skip


# -- the model itself ----------------------------------------------------------------------


def test_model_steps() -> None:
    free = State(None, None, 0.0, 0)
    grant = Step(1, Kind.ACQUIRE, 0.0, 0.1, "a", 3, 2.0)
    held = apply(free, grant)
    assert held == State("a", 3, 2.0, 3)
    assert apply(held, grant) is None  # held: no second grant
    assert expire(held, 1.9) is None and expire(held, 2.0) == State(None, None, 0.0, 3)
    crashed = Step(2, Kind.CRASHED_ACQUIRE, 1.0, math.inf, "b", None, 2.0)
    unknown = apply(free, crashed)
    assert unknown == State("b", None, 3.0, 0)
    seen = apply(unknown, Step(3, Kind.OBSERVE, 0, 0, seen=Grant("b", 8)))
    assert seen == State("b", 8, 3.0, 8)


# -- the budget -----------------------------------------------------------------------------


def test_huge_ambiguous_history_is_unknown_within_budget() -> None:
    """Hundreds of mutually concurrent reads of contradictory states and indeterminate
    operations of many holders: the search cannot finish, so it must say ``unknown`` (not
    ok, not violation) and stop close to its budget."""
    h = H()
    holders = [f"c{i}" for i in range(40)]
    for i, holder in enumerate(holders):
        h.acquire_unknown(holder, "x", 0.001 * i, 1000.0, ttl=0.001)
        h.release(holder, "x", 0.001 * i, 1000.0, token=i + 1, type="info")
    for i in range(300):
        holder = holders[i % len(holders)]
        h.read("r", "x", 1.0 + 0.001 * i, 900.0 + 0.001 * i,
               (holder, (i % len(holders)) + 1) if i % 3 else None)  # fmt: skip
    started = time.monotonic()
    result = check(h.ops, budget_s=1.0)
    elapsed = time.monotonic() - started
    assert result.verdict is Verdict.UNKNOWN, result.summary()
    assert elapsed < 3.0, elapsed
