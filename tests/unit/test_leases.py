"""The lease state machine, one rule per test (DESIGN.md §3), plus property tests over random
command sequences: invariants, snapshot round trips and determinism across processes."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paxlock.coordinator.core.lease_commands import (
    Acquire,
    Expire,
    Expired,
    Ignored,
    Lease,
    LeaseCommand,
    Proclaim,
    Refused,
    Release,
    Released,
    Unblock,
    Unblocked,
    Verification,
)
from paxlock.coordinator.core.leases import LeaseMachine


def grant(
    machine: LeaseMachine,
    name: str = "db",
    holder: str = "a",
    *,
    value: str | None = None,
    lock_delay_s: float = 0.0,
    request_id: str | None = None,
) -> Lease:
    result = machine.apply(Acquire(name, holder, 10.0, value, lock_delay_s, request_id))
    assert isinstance(result, Lease), result
    return result


# --- grants, tokens and revisions ------------------------------------------------------------


def test_acquire_on_free_name_grants_with_token_equal_to_revision() -> None:
    m = LeaseMachine()
    lease = grant(m, value="v", lock_delay_s=2)
    assert lease == Lease("db", "a", 1, 1, 10.0, "v", 2.0)
    assert m.revision == 1 and m.get("db") == lease


def test_fencing_tokens_strictly_increase_across_grants() -> None:
    m = LeaseMachine()
    tokens = []
    for i in range(5):
        lease = grant(m, name=f"n{i % 2}", holder=f"h{i}")
        tokens.append(lease.token)
        m.apply(Release(lease.name, lease.holder, lease.token))
    assert tokens == sorted(set(tokens)) and len(tokens) == 5


def test_revision_is_raised_by_grant_proclaim_release_and_expiry() -> None:
    m = LeaseMachine()
    lease = grant(m)
    assert m.revision == 1
    proclaimed = m.apply(Proclaim("db", "a", lease.token, "new"))
    assert isinstance(proclaimed, Lease) and proclaimed.revision == 2 == m.revision
    assert isinstance(m.apply(Release("db", "a", lease.token)), Released)
    assert m.revision == 3
    again = grant(m)
    assert again.token == 4
    expired = m.apply(Expire("db", again.token))
    assert isinstance(expired, Expired) and expired.revision == 5 == m.revision


def test_refusals_and_stale_commands_do_not_raise_revision() -> None:
    m = LeaseMachine()
    lease = grant(m)
    m.apply(Acquire("db", "b", 5.0))
    m.apply(Release("db", "b", lease.token))
    m.apply(Expire("db", 999))
    m.apply(Unblock("db", 999))
    assert m.revision == 1


def test_unblock_does_not_raise_revision() -> None:
    m = LeaseMachine()
    lease = grant(m, lock_delay_s=1.0)
    m.apply(Expire("db", lease.token))
    before = m.revision
    assert m.apply(Unblock("db", lease.token)) == Unblocked("db", lease.token, before)
    assert m.revision == before


def test_proclaim_changes_value_keeps_token() -> None:
    m = LeaseMachine()
    lease = grant(m, value="old")
    result = m.apply(Proclaim("db", "a", lease.token, "new"))
    assert isinstance(result, Lease)
    assert (result.value, result.token, result.revision) == ("new", lease.token, 2)
    assert m.get("db") == result


# --- conflicts ----------------------------------------------------------------------------


def test_acquire_on_held_name_is_held_with_current_holder() -> None:
    m = LeaseMachine()
    lease = grant(m)
    assert m.apply(Acquire("db", "b", 5.0)) == Refused("held", "db", "a", lease.token)


def test_acquire_by_holder_without_request_id_is_held() -> None:
    m = LeaseMachine()
    lease = grant(m)
    assert m.apply(Acquire("db", "a", 10.0)) == Refused("held", "db", "a", lease.token)


def test_acquire_by_holder_with_a_new_request_id_is_held() -> None:
    m = LeaseMachine()
    grant(m, request_id="r1")
    result = m.apply(Acquire("db", "a", 10.0, request_id="r2"))
    assert isinstance(result, Refused) and result.code == "held"


@pytest.mark.parametrize("holder,token", [("b", 1), ("a", 2)])
def test_release_needs_holder_and_token(holder: str, token: int) -> None:
    m = LeaseMachine()
    grant(m)
    assert m.apply(Release("db", holder, token)) == Refused("not_holder", "db", "a", 1)
    assert m.get("db") is not None
    assert m.apply(Release("db", "a", 1)) == Released("db", 1, 2)
    assert m.get("db") is None


@pytest.mark.parametrize("holder,token", [("b", 1), ("a", 2)])
def test_proclaim_needs_holder_and_token(holder: str, token: int) -> None:
    m = LeaseMachine()
    grant(m, value="v")
    assert m.apply(Proclaim("db", holder, token, "x")) == Refused("not_holder", "db", "a", 1)
    lease = m.get("db")
    assert lease is not None and lease.value == "v"


def test_release_of_free_name_is_not_holder() -> None:
    assert LeaseMachine().apply(Release("db", "a", 1)) == Refused("not_holder", "db")


# --- expiry and lock-delay -------------------------------------------------------------------


def test_expire_with_current_token_frees_name_without_lock_delay() -> None:
    m = LeaseMachine()
    lease = grant(m)
    assert m.apply(Expire("db", lease.token)) == Expired("db", "a", 1, 2, blocked=False)
    assert m.get("db") is None and m.blocked("db") is None
    assert grant(m, holder="b").token == 3


def test_stale_expire_is_a_noop() -> None:
    m = LeaseMachine()
    old = grant(m)
    m.apply(Release("db", "a", old.token))
    new = grant(m, holder="b")
    before = m.snapshot()
    assert m.apply(Expire("db", old.token)) == Ignored("db", old.token)
    assert m.get("db") == new and m.snapshot() == before


def test_lock_delay_blocks_name_after_expiry_not_after_release() -> None:
    m = LeaseMachine()
    released = grant(m, lock_delay_s=5.0)
    m.apply(Release("db", "a", released.token))
    assert m.blocked("db") is None
    grant(m, holder="b", lock_delay_s=5.0)  # release left the name free at once
    m.apply(Expire("db", 3))
    block = m.blocked("db")
    assert block is not None and (block.holder, block.token) == ("b", 3)


def test_blocked_name_answers_held_until_unblock() -> None:
    m = LeaseMachine()
    lease = grant(m, lock_delay_s=5.0)
    assert m.apply(Expire("db", lease.token)) == Expired("db", "a", 1, 2, blocked=True)
    refused = m.apply(Acquire("db", "b", 5.0))
    assert refused == Refused("held", "db", None, lease.token, blocked=True)
    assert m.apply(Release("db", "a", lease.token)) == Refused("not_holder", "db")
    m.apply(Unblock("db", lease.token))
    assert grant(m, holder="b").token == 3


def test_stale_unblock_is_a_noop() -> None:
    m = LeaseMachine()
    lease = grant(m, lock_delay_s=5.0)
    m.apply(Expire("db", lease.token))
    assert m.apply(Unblock("db", lease.token + 1)) == Ignored("db", lease.token + 1)
    assert m.blocked("db") is not None


# --- idempotency -----------------------------------------------------------------------------


def test_retry_with_same_request_id_returns_first_result() -> None:
    m = LeaseMachine()
    command = Acquire("db", "a", 10.0, request_id="r1")
    first = m.apply(command)
    assert isinstance(first, Lease)
    m.apply(Release("db", "a", first.token))
    grant(m, holder="b")
    revision = m.revision
    assert m.apply(command) == first  # not a conflict with itself, even after the release
    current = m.get("db")
    assert m.revision == revision and current is not None and current.holder == "b"


def test_retry_of_release_returns_released_not_not_holder() -> None:
    m = LeaseMachine()
    lease = grant(m)
    release = Release("db", "a", lease.token, request_id="r9")
    first = m.apply(release)
    assert isinstance(first, Released)
    assert m.apply(release) == first


def test_retry_of_refused_acquire_returns_first_refusal() -> None:
    m = LeaseMachine()
    lease = grant(m)
    command = Acquire("db", "b", 10.0, request_id="rb")
    first = m.apply(command)
    m.apply(Release("db", "a", lease.token))
    assert m.apply(command) == first  # a duplicate in the log must not grant late
    assert m.get("db") is None


def test_request_id_reused_for_a_different_command_is_bad_request() -> None:
    m = LeaseMachine()
    grant(m, request_id="r1")
    result = m.apply(Acquire("other", "a", 10.0, request_id="r1"))
    assert isinstance(result, Refused) and result.code == "bad_request"
    assert m.get("other") is None


def test_request_ids_are_scoped_per_holder() -> None:
    m = LeaseMachine()
    grant(m, name="x", holder="a", request_id="r")
    assert grant(m, name="y", holder="b", request_id="r").holder == "b"


def test_replay_answers_from_window_without_applying() -> None:
    m = LeaseMachine()
    command = Acquire("db", "a", 10.0, request_id="r1")
    assert m.replay(command) is None
    first = m.apply(command)
    assert m.replay(command) == first
    assert m.replay(Acquire("db", "a", 10.0)) is None


def test_idempotency_window_evicts_holders_oldest_first() -> None:
    m = LeaseMachine(window_per_holder=2, window_total=10)
    for i in range(3):
        grant(m, name=f"n{i}", request_id=f"r{i}")
    assert m.window_size() == 2
    assert expired(m.replay(Acquire("n0", "a", 10.0, request_id="r0")))
    assert isinstance(m.replay(Acquire("n1", "a", 10.0, request_id="r1")), Lease)


def test_idempotency_window_total_cap_evicts_oldest_of_cluster() -> None:
    m = LeaseMachine(window_per_holder=2, window_total=3)
    for i in range(4):
        grant(m, name=f"n{i}", holder=f"h{i}", request_id="r")
    assert m.window_size() == 3
    assert expired(m.replay(Acquire("n0", "h0", 10.0, request_id="r")))
    assert isinstance(m.replay(Acquire("n1", "h1", 10.0, request_id="r")), Lease)


def expired(result: object) -> bool:
    return isinstance(result, Refused) and result.code == "request_expired"


def test_a_retried_acquire_whose_result_was_evicted_is_never_applied_as_new() -> None:
    """DESIGN §3: "a retry whose result is no longer kept is never treated as new: it gets
    409 request_expired" (applied as new, it would conflict with its own grant: held)."""
    m = LeaseMachine(window_per_holder=1, window_total=1)
    command = Acquire("db", "a", 10.0, request_id="r1")
    first = m.apply(command)
    assert isinstance(first, Lease)
    m.apply(Proclaim("db", "a", first.token, "v", request_id="r2"))  # evicts r1
    assert expired(m.apply(command)) and expired(m.replay(command))
    assert m.get("db") is not None and m.get("db").token == first.token  # unchanged


def test_a_retried_release_whose_result_was_evicted_is_not_not_holder() -> None:
    m = LeaseMachine(window_per_holder=1, window_total=1)
    lease = grant(m, request_id="r1")
    release = Release("db", "a", lease.token, request_id="r2")
    assert isinstance(m.apply(release), Released)
    grant(m, name="other", request_id="r3")  # evicts r2
    assert expired(m.apply(release))


def test_expired_fingerprints_survive_a_snapshot() -> None:
    m = LeaseMachine(window_per_holder=1, window_total=1)
    grant(m, request_id="r1")
    grant(m, name="other", request_id="r2")  # evicts r1
    restored = LeaseMachine.restore(m.snapshot())
    assert expired(restored.replay(Acquire("db", "a", 10.0, request_id="r1")))
    assert restored.snapshot() == m.snapshot()


# --- queries and validation --------------------------------------------------------------------


def test_verify_reports_whether_token_is_current() -> None:
    m = LeaseMachine()
    assert m.verify("db", 1) == Verification(False, None)
    lease = grant(m)
    assert m.verify("db", lease.token) == (True, lease.token)
    m.apply(Release("db", "a", lease.token))
    new = grant(m, holder="b")
    assert m.verify("db", lease.token) == (False, new.token)


def test_list_filters_by_prefix_sorted_by_name() -> None:
    m = LeaseMachine()
    for name in ["svc/b", "other", "svc/a"]:
        grant(m, name=name)
    assert [lease.name for lease in m.list("svc/")] == ["svc/a", "svc/b"]
    assert len(m.list()) == 3


@pytest.mark.parametrize(
    "command",
    [
        Acquire("bad name", "a", 1.0),
        Acquire("db", "", 1.0),
        Acquire("db", "a", 0.0),
        Acquire("db", "a", float("nan")),
        Acquire("db", "a", 1.0, lock_delay_s=-1.0),
        Acquire("db", "a", 1.0, value="x" * 4097),
        Acquire("db", "a", 1.0, request_id=""),
        Proclaim("db", "a", 1, "x" * 4097),
        Expire("", 1),
    ],
)
def test_malformed_command_is_bad_request_and_changes_nothing(command: LeaseCommand) -> None:
    m = LeaseMachine()
    before = m.snapshot()
    result = m.apply(command)
    assert isinstance(result, Refused) and result.code == "bad_request" and result.message
    assert m.snapshot() == before


# --- snapshots -------------------------------------------------------------------------------


def test_snapshot_round_trip_is_exact() -> None:
    m = LeaseMachine(window_per_holder=3, window_total=7)
    grant(m, name="a", request_id="r1", value="v")
    b = grant(m, name="b", holder="b", lock_delay_s=3.0)
    m.apply(Expire("b", b.token))
    m.apply(Acquire("a", "c", 1.0, request_id="rc"))
    restored = LeaseMachine.restore(m.snapshot())
    assert restored.snapshot() == m.snapshot()
    assert restored.revision == m.revision and restored.list() == m.list()
    assert restored.blocks() == m.blocks()
    assert (restored.window_per_holder, restored.window_total) == (3, 7)
    assert restored.replay(Acquire("a", "a", 10.0, value="v", request_id="r1")) == m.get("a")


def test_restore_rejects_an_unknown_snapshot_version() -> None:
    data = msgspec.msgpack.decode(LeaseMachine().snapshot())
    data[0] = 99
    with pytest.raises(ValueError, match="version"):
        LeaseMachine.restore(msgspec.msgpack.encode(data))


def test_integer_durations_encode_like_floats() -> None:
    ints, floats = LeaseMachine(), LeaseMachine()
    ints.apply(Acquire("db", "a", 10, lock_delay_s=1, request_id="r"))
    floats.apply(Acquire("db", "a", 10.0, lock_delay_s=1.0, request_id="r"))
    assert ints.snapshot() == floats.snapshot()
    assert LeaseMachine.restore(ints.snapshot()).snapshot() == ints.snapshot()


# --- properties ------------------------------------------------------------------------------

NAMES = ["a", "b", "svc/a"]
HOLDERS = ["h1", "h2", "h3"]
REQUEST_IDS = [None, "r1", "r2", "r3"]


@st.composite
def command_sequences(draw: st.DrawFn) -> list[LeaseCommand]:
    """Random commands whose tokens are drawn mostly from tokens granted so far, so that
    releases, proclaims and expiries often hit (tokens are revisions, hence predictable)."""
    n = draw(st.integers(1, 60))
    commands: list[LeaseCommand] = []
    for _ in range(n):
        kind = draw(st.sampled_from(["acquire", "release", "proclaim", "expire", "unblock"]))
        name = draw(st.sampled_from(NAMES))
        holder = draw(st.sampled_from(HOLDERS))
        token = draw(st.integers(0, len(commands) + 1))
        rid = draw(st.sampled_from(REQUEST_IDS))
        if kind == "acquire":
            delay = draw(st.sampled_from([0.0, 1.5]))
            commands.append(Acquire(name, holder, 5.0, None, delay, rid))
        elif kind == "release":
            commands.append(Release(name, holder, token, rid))
        elif kind == "proclaim":
            commands.append(Proclaim(name, holder, token, draw(st.sampled_from(["x", None])), rid))
        elif kind == "expire":
            commands.append(Expire(name, token))
        else:
            commands.append(Unblock(name, token))
    return commands


def run(machine: LeaseMachine, commands: list[LeaseCommand]) -> list[object]:
    return [machine.apply(c) for c in commands]


@settings(max_examples=300, deadline=None)
@given(command_sequences())
def test_random_sequences_keep_invariants(commands: list[LeaseCommand]) -> None:
    m = LeaseMachine(window_per_holder=2, window_total=5)
    last_token, last_revision = 0, 0
    for command in commands:
        result = m.apply(command)
        assert m.revision >= last_revision, "revision is monotone"
        changed = m.revision > last_revision
        if changed and isinstance(result, Lease) and result.token == m.revision:  # a grant
            assert result.token > last_token, "fencing tokens strictly increase"
            last_token = result.token
        if m.revision > last_revision:  # every change is the current revision of something
            assert m.revision == last_revision + 1
        last_revision = m.revision
        held = [lease.name for lease in m.list()]
        assert len(held) == len(set(held)), "a name has at most one holder"
        assert not set(held) & {b.name for b in m.blocks()}, "a blocked name is not held"
        assert all(lease.token <= last_token for lease in m.list())
        assert m.window_size() <= 5


@settings(max_examples=200, deadline=None)
@given(command_sequences(), st.data())
def test_snapshot_restore_mid_sequence_gives_identical_results(
    commands: list[LeaseCommand], data: st.DataObject
) -> None:
    cut = data.draw(st.integers(0, len(commands)))
    original = LeaseMachine(window_per_holder=2, window_total=5)
    run(original, commands[:cut])
    restored = LeaseMachine.restore(original.snapshot())
    assert restored.snapshot() == original.snapshot()
    assert run(restored, commands[cut:]) == run(original, commands[cut:])
    assert restored.snapshot() == original.snapshot()


@settings(max_examples=100, deadline=None)
@given(command_sequences())
def test_two_machines_fed_the_same_sequence_have_identical_snapshots(
    commands: list[LeaseCommand],
) -> None:
    one, two = LeaseMachine(), LeaseMachine()
    assert run(one, commands) == run(two, commands)
    assert one.snapshot() == two.snapshot()


_DIGEST_SCRIPT = textwrap.dedent(
    """
    import hashlib, random
    from paxlock.coordinator.core.lease_commands import *
    from paxlock.coordinator.core.leases import LeaseMachine
    rng = random.Random(7)
    m = LeaseMachine(window_per_holder=3, window_total=20)
    names = [f"n{i}" for i in range(12)]
    holders = [f"h{i}" for i in range(6)]
    for step in range(3000):
        name, holder = rng.choice(names), rng.choice(holders)
        token, rid = rng.randint(0, step + 1), rng.choice([None, f"r{rng.randint(0, 9)}"])
        command = rng.choice([
            Acquire(name, holder, 5.0, None, rng.choice([0.0, 2.0]), rid),
            Release(name, holder, token, rid),
            Proclaim(name, holder, token, "v", rid),
            Expire(name, token),
            Unblock(name, token),
        ])
        m.apply(command)
    print(hashlib.sha256(m.snapshot()).hexdigest())
    """
)


def test_snapshots_do_not_depend_on_string_hash_seed() -> None:
    """Python randomizes str hashes per process: two nodes must still agree byte for byte."""
    digests = set()
    for seed in ["1", "2", "3"]:
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", _DIGEST_SCRIPT], env=env, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        digests.add(out.stdout.strip())
    assert len(digests) == 1
    assert len(hashlib.sha256().hexdigest()) == len(digests.pop())
