"""Leases over real HTTP on a real 3-node cluster (DESIGN.md §3, §4; issue 4 item 6):
acquire, renew, release, reads, verify, contention and FIFO waiters, fencing tokens,
forwarding, lock-delay, TTL expiry and idempotency.

One cluster serves the whole module (tests use names of their own, so they cannot see each
other's leases). Waits are conditions polled under a deadline; where a test checks that a
TTL or a lock-delay has *not* run out early, it compares ``time.monotonic()`` readings taken
around the requests: a server event that an answer reveals happened after that request was
sent and before its answer arrived.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

harness = sys.modules["paxlock_test_harness"]  # registered by tests/conftest.py
http = harness.http
wait_for = harness.wait_for

LEASE_KEYS = {"name", "holder", "token", "revision", "ttl", "expires_in", "value", "lock_delay",
              "session", "waiters"}
WAITERS = "paxlock_lease_waiters"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with harness.running_cluster(Path(tmp_path_factory.mktemp("leases"))) as running:
        yield running


@pytest.fixture
def primary(cluster: Any) -> str:
    return str(cluster.wait_ready())


def lease_url(cluster: Any, node: str, name: str, verb: str = "") -> str:
    return f"{cluster.url(node)}/v1/leases/{name}" + (f":{verb}" if verb else "")


def acquire(cluster: Any, node: str, name: str, holder: str, ttl: float = 10.0,
            **extra: Any) -> tuple[int, dict[str, str], Any]:  # fmt: skip
    result: tuple[int, dict[str, str], Any] = http(
        "POST", lease_url(cluster, node, name, "acquire"), {"holder": holder, "ttl": ttl, **extra},
        timeout_s=extra.get("wait", 0) + 10,
    )  # fmt: skip
    return result


def granted(cluster: Any, node: str, name: str, holder: str, ttl: float = 10.0,
            **extra: Any) -> dict[str, Any]:  # fmt: skip
    status, _, body = acquire(cluster, node, name, holder, ttl, **extra)
    assert status == 200, body
    return dict(body)


def release(cluster: Any, node: str, lease: dict[str, Any]) -> None:
    status, _, body = http("POST", lease_url(cluster, node, lease["name"], "release"),
                           {"holder": lease["holder"], "token": lease["token"]})  # fmt: skip
    assert (status, body) == (200, {"released": True})


def assert_error(status: int, headers: dict[str, str], body: Any, expected_status: int,
                 code: str) -> None:  # fmt: skip
    """The one error shape of §4: ``{"error": CODE, "message": TEXT}``, as JSON."""
    assert status == expected_status, body
    assert headers["Content-Type"].startswith("application/json"), headers
    assert isinstance(body, dict) and body["error"] == code, body
    assert isinstance(body["message"], str) and body["message"], body


# -- acquire, renew, release, reads --------------------------------------------------------


def test_acquire_returns_the_lease_object_of_design_4(cluster: Any, primary: str) -> None:
    status, headers, lease = acquire(cluster, primary, "obj/a", "alice", 7.5, value="hello",
                                     lock_delay=0.25)  # fmt: skip
    assert status == 200, lease
    assert headers["Content-Type"].startswith("application/json")
    assert set(lease) == LEASE_KEYS
    assert lease["name"] == "obj/a" and lease["holder"] == "alice"
    assert lease["ttl"] == 7.5 and lease["lock_delay"] == 0.25 and lease["value"] == "hello"
    assert isinstance(lease["token"], int) and lease["token"] >= 1
    assert lease["revision"] == lease["token"], "the grant is the last change of the lease"
    assert 7.0 < lease["expires_in"] <= 7.5
    # Defaults: no value, no lock-delay.
    plain = granted(cluster, primary, "obj/b", "bob", 3)
    assert plain["value"] is None and plain["lock_delay"] == 0 and plain["ttl"] == 3


def test_get_returns_the_lease_and_404_not_found_after_release(cluster: Any, primary: str
                                                               ) -> None:  # fmt: skip
    lease = granted(cluster, primary, "get/a", "alice", 10, value="v1")
    for node in cluster.members:
        status, _, got = http("GET", lease_url(cluster, node, "get/a"))
        assert status == 200, got
        assert set(got) == LEASE_KEYS
        assert {k: got[k] for k in LEASE_KEYS - {"expires_in"}} == {
            k: lease[k] for k in LEASE_KEYS - {"expires_in"}
        }
        assert 0 < got["expires_in"] <= lease["expires_in"]
    release(cluster, primary, lease)
    for node in cluster.members:
        status, headers, body = http("GET", lease_url(cluster, node, "get/a"))
        assert_error(status, headers, body, 404, "not_found")
    status, headers, body = http("GET", lease_url(cluster, primary, "get/never-taken"))
    assert_error(status, headers, body, 404, "not_found")


def test_renew_restarts_the_ttl_and_keeps_the_token(cluster: Any, primary: str) -> None:
    ttl = 1.0
    sent = time.monotonic()
    lease = granted(cluster, primary, "renew/a", "alice", ttl)
    # Renew well inside the TTL for three TTLs: the lease must live on, token unchanged.
    nodes = list(cluster.members)
    renewals = 0
    while time.monotonic() - sent < 3 * ttl:
        node = nodes[renewals % len(nodes)]
        status, _, renewed = http("POST", lease_url(cluster, node, "renew/a", "renew"),
                                  {"holder": "alice", "token": lease["token"]})  # fmt: skip
        assert status == 200, renewed
        assert set(renewed) == LEASE_KEYS
        assert (renewed["token"], renewed["holder"], renewed["revision"]) == (
            lease["token"], "alice", lease["revision"],
        ), "a renewal is no change of the lease: same token, same revision"  # fmt: skip
        assert 0.5 * ttl < renewed["expires_in"] <= ttl
        renewals += 1
        time.sleep(ttl / 4)  # the client's renewal period, not a synchronisation
    # The last renewal restarted the full TTL: no expiry before it has run out again.
    last_renewal_sent = time.monotonic()
    status, _, renewed = http("POST", lease_url(cluster, primary, "renew/a", "renew"),
                              {"holder": "alice", "token": lease["token"]})  # fmt: skip
    assert status == 200, renewed
    while True:
        status, _, got = http("GET", lease_url(cluster, primary, "renew/a"))
        received = time.monotonic()
        if status == 404:
            break
        assert status == 200 and got["token"] == lease["token"], got
        assert received - last_renewal_sent < ttl + 3.0, "the renewed lease never expired"
        time.sleep(0.05)
    assert received - last_renewal_sent >= ttl, "expired before the renewed TTL ran out"


@pytest.mark.parametrize("verb", ["renew", "release"])
def test_renew_and_release_by_anyone_but_the_holder_are_409_not_holder(
    cluster: Any, primary: str, verb: str
) -> None:
    name = f"notholder/{verb}"
    lease = granted(cluster, primary, name, "alice", 10)
    for body in (
        {"holder": "mallory", "token": lease["token"]},  # wrong holder
        {"holder": "alice", "token": lease["token"] + 1000},  # wrong token
        {"holder": "alice", "token": lease["token"] - 1},  # an older grant's token
    ):
        status, headers, error = http("POST", lease_url(cluster, primary, name, verb), body)
        assert_error(status, headers, error, 409, "not_holder")
    # Nothing changed: alice still holds it with her token.
    status, _, got = http("GET", lease_url(cluster, primary, name))
    assert status == 200 and (got["holder"], got["token"]) == ("alice", lease["token"])
    release(cluster, primary, lease)
    # After the release the old grant is nobody's: renew and release are refused.
    body = {"holder": "alice", "token": lease["token"]}
    for action in ("renew", "release"):
        status, headers, error = http("POST", lease_url(cluster, primary, name, action), body)
        assert_error(status, headers, error, 409, "not_holder")
    status, headers, error = http("POST", lease_url(cluster, primary, "notholder/never", verb),
                                  {"holder": "alice", "token": 1})  # fmt: skip
    assert_error(status, headers, error, 409, "not_holder")


def test_names_with_slashes_and_listing_by_prefix(cluster: Any, primary: str) -> None:
    names = ["ls/db/primary", "ls/db/replica-1", "ls/db/replica.2", "ls/cache", "ls/dbx",
             "ls/a_b/c/d/e/f"]  # fmt: skip
    leases = {name: granted(cluster, primary, name, f"h-{i}", 30) for i, name in enumerate(names)}
    follower = cluster.followers(primary)[0]
    for node in (primary, follower):
        for prefix, expected in [
            ("ls/db/", ["ls/db/primary", "ls/db/replica-1", "ls/db/replica.2"]),
            ("ls/db", ["ls/db/primary", "ls/db/replica-1", "ls/db/replica.2", "ls/dbx"]),
            ("ls/", sorted(names)),
            ("ls/nothing/", []),
        ]:
            status, _, body = http("GET", f"{cluster.url(node)}/v1/leases?prefix={prefix}")
            assert status == 200, body
            assert set(body) == {"leases"}
            assert [lease["name"] for lease in body["leases"]] == expected, prefix
            for lease in body["leases"]:
                assert set(lease) == LEASE_KEYS
                assert (lease["holder"], lease["token"]) == (
                    leases[lease["name"]]["holder"], leases[lease["name"]]["token"])
    # No prefix: every lease of the cluster (a superset of ours).
    status, _, body = http("GET", f"{cluster.url(primary)}/v1/leases")
    assert status == 200 and set(names) <= {lease["name"] for lease in body["leases"]}
    # Reads, renewals and releases address the same names, slashes and all.
    for name, lease in leases.items():
        status, _, got = http("GET", lease_url(cluster, follower, name))
        assert status == 200 and got["name"] == name, got
        status, _, got = http("POST", lease_url(cluster, follower, name, "renew"),
                              {"holder": lease["holder"], "token": lease["token"]})  # fmt: skip
        assert status == 200 and got["name"] == name, got
        release(cluster, follower, lease)
    status, _, body = http("GET", f"{cluster.url(primary)}/v1/leases?prefix=ls/")
    assert (status, body) == (200, {"leases": []})


DOT_NAMES = ["dots/a/../b", "dots/./c", "dots/d/..", "dots/e/."]
"""Valid names (``.`` is in the pattern) whose segments look like URL dot-segments."""

def test_names_with_dot_segments_on_the_primary(cluster: Any, primary: str) -> None:
    for name in DOT_NAMES:
        lease = granted(cluster, primary, name, "alice", 5)
        assert lease["name"] == name, lease
        status, _, got = http("GET", lease_url(cluster, primary, name))
        assert status == 200 and got["name"] == name, got
        release(cluster, primary, lease)


def test_names_with_dot_segments_through_a_follower(cluster: Any, primary: str) -> None:
    """Regression: the forwarder once handed aiohttp the proxied URL as a str, and yarl
    removed its dot-segments: a follower forwarded an acquire of ``dots/a/../b`` as one of
    ``dots/b`` (a lease on another name than the client asked for)."""
    follower = cluster.followers(primary)[0]
    try:
        for name in DOT_NAMES:
            lease = granted(cluster, follower, name, "alice", 5)
            assert lease["name"] == name, f"asked for {name!r}, was granted {lease['name']!r}"
            status, _, got = http("GET", lease_url(cluster, follower, name))
            assert status == 200 and got["name"] == name, got
            release(cluster, follower, lease)
    finally:  # leave nothing behind under whatever name the server used
        for lease in http("GET", f"{cluster.url(primary)}/v1/leases?prefix=dots/")[2]["leases"]:
            release(cluster, primary, lease)


def test_verify_answers_whether_a_token_is_the_current_grant(cluster: Any, primary: str
                                                             ) -> None:  # fmt: skip
    follower = cluster.followers(primary)[0]

    def verify(token: int, node: str = primary) -> Any:
        status, _, body = http("POST", lease_url(cluster, node, "verify/a", "verify"),
                               {"token": token})  # fmt: skip
        assert status == 200, body
        return body

    first = granted(cluster, primary, "verify/a", "alice", 10)
    assert verify(first["token"]) == {"current": True, "token": first["token"]}
    assert verify(first["token"], follower) == {"current": True, "token": first["token"]}
    assert verify(first["token"] - 1) == {"current": False, "token": first["token"]}
    release(cluster, primary, first)
    assert verify(first["token"]) == {"current": False, "token": None}
    second = granted(cluster, primary, "verify/a", "bob", 10)
    assert second["token"] > first["token"]
    # A resource server holding the old token learns it is stale, and the current one.
    assert verify(first["token"], follower) == {"current": False, "token": second["token"]}
    assert verify(second["token"], follower) == {"current": True, "token": second["token"]}
    release(cluster, primary, second)


def test_stale_reads_on_a_follower_are_served_locally(cluster: Any, primary: str) -> None:
    """``?consistent=false`` answers from the follower's own state: no forwarding."""
    follower = cluster.followers(primary)[0]
    lease = granted(cluster, primary, "stale/a", "alice", 30, value="x")
    url = lease_url(cluster, follower, "stale/a") + "?consistent=false"
    forwarded = ("paxlock_http_forwarded_total", '{outcome="ok"}')
    before = cluster.metric(follower, *forwarded) or 0.0

    def read_back() -> Any:
        status, headers, body = http("GET", url)
        return body if status == 200 else None

    got = wait_for(read_back, 5.0, "the follower to apply the grant")
    assert (got["holder"], got["token"], got["value"]) == ("alice", lease["token"], "x")
    status, headers, listed = http(
        "GET", f"{cluster.url(follower)}/v1/leases?prefix=stale/&consistent=false"
    )
    assert status == 200 and [x["token"] for x in listed["leases"]] == [lease["token"]]
    assert headers["X-Paxlock-Node"] == follower
    after = cluster.metric(follower, *forwarded) or 0.0
    assert after == before, "a stale read must not be forwarded to the primary"
    # ...while a consistent read is (which also shows the counter is the right one).
    assert http("GET", lease_url(cluster, follower, "stale/a"))[0] == 200
    assert cluster.metric(follower, *forwarded) == after + 1
    release(cluster, primary, lease)
    wait_for(lambda: http("GET", url)[0] == 404, 5.0, "the follower to apply the release")


# -- contention and waiters ------------------------------------------------------------------


def test_contention_is_409_held_with_holder_and_expires_in(cluster: Any, primary: str) -> None:
    lease = granted(cluster, primary, "held/a", "alice", 8)
    for node in cluster.members:
        status, headers, body = acquire(cluster, node, "held/a", "bob", 5)
        assert_error(status, headers, body, 409, "held")
        assert body["holder"] == "alice"
        assert 0 < body["expires_in"] <= 8
    release(cluster, primary, lease)


def test_concurrent_acquires_of_one_name_grant_it_exactly_once(cluster: Any, primary: str
                                                                ) -> None:  # fmt: skip
    nodes = list(cluster.members)
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(
            lambda i: acquire(cluster, nodes[i % len(nodes)], "race/a", f"racer-{i}", 10),
            range(12)))  # fmt: skip
    winners = [body for status, _, body in answers if status == 200]
    assert len(winners) == 1, [a[2] for a in answers]
    (winner,) = winners
    for status, _, body in answers:
        if status != 200:
            assert status == 409 and body["error"] == "held", body
            assert body["holder"] in (winner["holder"], None), body
    status, _, got = http("GET", lease_url(cluster, primary, "race/a"))
    assert (got["holder"], got["token"]) == (winner["holder"], winner["token"])
    release(cluster, primary, winner)


def test_an_acquire_is_not_reentrant_without_its_request_id(cluster: Any, primary: str) -> None:
    lease = granted(cluster, primary, "reentrant/a", "alice", 10)
    status, headers, body = acquire(cluster, primary, "reentrant/a", "alice", 10)
    assert_error(status, headers, body, 409, "held")
    assert body["holder"] == "alice"
    release(cluster, primary, lease)


def test_waiters_are_granted_on_release_in_fifo_order(cluster: Any, primary: str) -> None:
    """Three acquires wait (one through each node); each release grants the next in arrival
    order, with increasing tokens."""
    name = "fifo/a"
    first = granted(cluster, primary, name, "owner", 30)
    nodes = [*cluster.followers(primary), primary]
    base = cluster.metric(primary, WAITERS) or 0.0
    with ThreadPoolExecutor(3) as pool:
        waiting: list[Future[Any]] = []
        for i, node in enumerate(nodes):
            waiting.append(pool.submit(acquire, cluster, node, name, f"w{i}", 30, wait=15))
            # The next waiter starts only once this one is parked at the primary.
            wait_for(lambda: cluster.metric(primary, WAITERS) == base + i + 1, 5.0,
                     f"waiter w{i} to be parked")  # fmt: skip
        assert not any(f.done() for f in waiting)
        holder = first
        for i, future in enumerate(waiting):
            release(cluster, primary, holder)
            status, _, lease = future.result(timeout=10)
            assert status == 200, lease
            assert lease["holder"] == f"w{i}", f"grant {i} went to {lease['holder']}"
            assert lease["token"] > holder["token"]
            assert not any(f.done() for f in waiting[i + 1:]), "one grant per release"
            holder = lease
        release(cluster, primary, holder)
    assert cluster.metric(primary, WAITERS) == base


def test_a_waiter_whose_wait_elapses_gets_409_held(cluster: Any, primary: str) -> None:
    lease = granted(cluster, primary, "waitout/a", "alice", 30)
    follower = cluster.followers(primary)[0]
    sent = time.monotonic()
    status, headers, body = acquire(cluster, follower, "waitout/a", "bob", 5, wait=0.6)
    elapsed = time.monotonic() - sent
    assert_error(status, headers, body, 409, "held")
    assert body["holder"] == "alice" and 0 < body["expires_in"] <= 30
    assert 0.6 <= elapsed < 3.0, elapsed
    release(cluster, primary, lease)


def test_a_waiter_that_gave_up_leaves_the_queue_to_the_next(cluster: Any, primary: str
                                                             ) -> None:  # fmt: skip
    name = "fifo/giveup"
    first = granted(cluster, primary, name, "owner", 30)
    base = cluster.metric(primary, WAITERS) or 0.0
    with ThreadPoolExecutor(2) as pool:
        impatient = pool.submit(acquire, cluster, primary, name, "impatient", 5, wait=1.5)
        wait_for(lambda: cluster.metric(primary, WAITERS) == base + 1, 5.0, "impatient parked")
        patient = pool.submit(acquire, cluster, primary, name, "patient", 5, wait=15)
        wait_for(lambda: cluster.metric(primary, WAITERS) == base + 2, 5.0, "patient parked")
        status, _, body = impatient.result(timeout=10)
        assert status == 409 and body["error"] == "held" and body["holder"] == "owner", body
        assert cluster.metric(primary, WAITERS) == base + 1
        release(cluster, primary, first)
        status, _, lease = patient.result(timeout=10)
    assert status == 200 and lease["holder"] == "patient", lease
    release(cluster, primary, lease)


def test_a_waiter_is_granted_when_the_lease_expires(cluster: Any, primary: str) -> None:
    ttl = 1.0
    sent = time.monotonic()
    lease = granted(cluster, primary, "waitexp/a", "alice", ttl)
    status, _, second = acquire(cluster, primary, "waitexp/a", "bob", 10, wait=10)
    received = time.monotonic()
    assert status == 200, second
    assert second["holder"] == "bob" and second["token"] > lease["token"]
    assert received - sent >= ttl, "granted before the first lease's TTL ran out"
    assert received - sent < ttl + 3.0
    release(cluster, primary, second)


# -- fencing tokens ------------------------------------------------------------------------


def test_tokens_strictly_increase_across_grants_of_one_name(cluster: Any, primary: str) -> None:
    nodes = list(cluster.members)
    tokens = []
    for i in range(12):
        lease = granted(cluster, nodes[i % len(nodes)], "tokens/one", f"h{i % 2}", 10)
        tokens.append(lease["token"])
        release(cluster, nodes[(i + 1) % len(nodes)], lease)
    assert tokens == sorted(set(tokens)), tokens


def test_tokens_strictly_increase_across_names(cluster: Any, primary: str) -> None:
    nodes = list(cluster.members)
    sequential = [granted(cluster, nodes[i % 3], f"tokens/many/{i}", "h", 10)["token"]
                  for i in range(15)]  # fmt: skip
    assert sequential == sorted(set(sequential)), sequential
    # Concurrent grants (batched into slots) still get distinct tokens, all above the rest.
    with ThreadPoolExecutor(8) as pool:
        concurrent = list(pool.map(
            lambda i: granted(cluster, nodes[i % 3], f"tokens/burst/{i}", "h", 10)["token"],
            range(24)))  # fmt: skip
    assert len(set(concurrent)) == len(concurrent)
    assert min(concurrent) > max(sequential)


# -- forwarding ----------------------------------------------------------------------------


def test_every_follower_forwards_to_the_primary(cluster: Any, primary: str) -> None:
    def check(headers: dict[str, str], node: str) -> None:
        assert headers["X-Paxlock-Node"] == node, headers
        assert headers["X-Paxlock-Primary"] == primary, headers

    for node in cluster.followers(primary) + [primary]:
        name = f"fwd/{node}"
        status, headers, lease = acquire(cluster, node, name, "alice", 10)
        assert status == 200, lease
        check(headers, node)
        body = {"holder": "alice", "token": lease["token"]}
        for method, url, payload in [
            ("GET", lease_url(cluster, node, name), None),
            ("GET", f"{cluster.url(node)}/v1/leases?prefix=fwd/", None),
            ("POST", lease_url(cluster, node, name, "renew"), body),
            ("POST", lease_url(cluster, node, name, "verify"), {"token": lease["token"]}),
        ]:
            status, headers, answer = http(method, url, payload)
            assert status == 200, answer
            check(headers, node)
        status, headers, answer = acquire(cluster, node, name, "bob", 10)
        assert status == 409 and answer["holder"] == "alice"
        check(headers, node)
        status, headers, answer = http("POST", lease_url(cluster, node, name, "release"), body)
        assert (status, answer) == (200, {"released": True})
        check(headers, node)
        status, headers, answer = http("GET", lease_url(cluster, node, name))
        assert status == 404
        check(headers, node)


# -- lock-delay and expiry -----------------------------------------------------------------


def test_lock_delay_blocks_an_expired_name_for_that_long(cluster: Any, primary: str) -> None:
    ttl, lock_delay = 1.0, 1.5
    name = "lockdelay/expired"
    lease = granted(cluster, primary, name, "alice", ttl, lock_delay=lock_delay)
    # Wait for the expiry, remembering when the lease was last seen held.
    started = last_held_sent = time.monotonic()
    while True:
        sent = time.monotonic()
        status, _, got = http("GET", lease_url(cluster, primary, name))
        if status == 404:
            break
        assert status == 200 and got["token"] == lease["token"], got
        last_held_sent = sent
        assert sent - started < ttl + 5, "the lease never expired"
        time.sleep(0.02)
    # The name is free of holders but blocked: acquires are 409 held until the delay ends.
    refusals = 0
    while True:
        status, headers, body = acquire(cluster, primary, name, "bob", 5)
        received = time.monotonic()
        if status == 200:
            break
        assert_error(status, headers, body, 409, "held")
        assert body["holder"] is None and body["expires_in"] is not None, body
        assert 0 <= body["expires_in"] <= lock_delay
        refusals += 1
        assert received - last_held_sent < ttl + lock_delay + 5, "the name stayed blocked"
        time.sleep(0.05)
    assert refusals > 0, "the name was not blocked at all after the expiry"
    # The expiry happened after ``last_held_sent``, the block ends lock_delay after it.
    assert received - last_held_sent >= lock_delay
    assert body["token"] > lease["token"]
    release(cluster, primary, body)


def test_a_waiter_is_granted_once_the_lock_delay_after_an_expiry_ends(cluster: Any, primary: str
                                                                      ) -> None:  # fmt: skip
    ttl, lock_delay = 0.8, 1.0
    sent = time.monotonic()
    lease = granted(cluster, primary, "lockdelay/waiter", "alice", ttl, lock_delay=lock_delay)
    status, _, second = acquire(cluster, primary, "lockdelay/waiter", "bob", 5, wait=10)
    received = time.monotonic()
    assert status == 200, second
    assert second["holder"] == "bob" and second["token"] > lease["token"]
    assert received - sent >= ttl + lock_delay, "granted inside the lock-delay"
    assert received - sent < ttl + lock_delay + 3.0
    release(cluster, primary, second)


def test_release_does_not_start_a_lock_delay(cluster: Any, primary: str) -> None:
    lease = granted(cluster, primary, "lockdelay/released", "alice", 10, lock_delay=30)
    release(cluster, primary, lease)
    second = granted(cluster, primary, "lockdelay/released", "bob", 10)
    assert second["token"] > lease["token"]
    release(cluster, primary, second)


def test_an_unrenewed_lease_expires_after_its_ttl_and_not_before(cluster: Any, primary: str
                                                                 ) -> None:  # fmt: skip
    ttl = 1.5
    name = "expiry/a"
    sent = time.monotonic()
    lease = granted(cluster, primary, name, "alice", ttl)
    follower = cluster.followers(primary)[0]
    seen_expires_in: list[float] = []
    while True:
        status, _, got = http("GET", lease_url(cluster, follower, name))
        received = time.monotonic()
        if status == 404:
            break
        assert status == 200 and got["token"] == lease["token"], got
        seen_expires_in.append(got["expires_in"])
        assert received - sent < ttl + 3.0, "the lease outlived its TTL by far"
        time.sleep(0.05)
    assert received - sent >= ttl, f"expired {received - sent:.3f}s after the acquire was sent"
    assert seen_expires_in == sorted(seen_expires_in, reverse=True), "expires_in counts down"
    status, _, body = http("POST", lease_url(cluster, primary, name, "renew"),
                           {"holder": "alice", "token": lease["token"]})  # fmt: skip
    assert status == 409 and body["error"] == "not_holder"
    second = granted(cluster, primary, name, "bob", 5)  # no lock-delay: free at once
    assert second["token"] > lease["token"]
    release(cluster, primary, second)


# -- idempotency ---------------------------------------------------------------------------

STABLE_KEYS = LEASE_KEYS - {"expires_in"}


@pytest.mark.parametrize("via", ["body", "header"])
def test_a_retried_acquire_returns_the_first_response_even_after_release(
    cluster: Any, primary: str, via: str
) -> None:
    name = f"idem/{via}"
    body: dict[str, Any] = {"holder": "alice", "ttl": 10, "value": "v"}
    headers: dict[str, str] = {}
    if via == "body":
        body["request_id"] = f"req-{via}"
    else:
        headers["Idempotency-Key"] = f"req-{via}"
    nodes = list(cluster.members)

    def send(node: str) -> Any:
        status, _, answer = http("POST", lease_url(cluster, node, name, "acquire"), body,
                                 headers=headers)  # fmt: skip
        assert status == 200, answer
        return answer

    first = send(primary)
    for node in nodes:  # a retry, through any node, is the first answer, not a conflict
        again = send(node)
        assert {k: again[k] for k in STABLE_KEYS} == {k: first[k] for k in STABLE_KEYS}
    release(cluster, primary, first)
    after = send(nodes[1])
    assert {k: after[k] for k in STABLE_KEYS} == {k: first[k] for k in STABLE_KEYS}
    # The replay granted nothing: the name is free.
    assert http("GET", lease_url(cluster, primary, name))[0] == 404
    other = granted(cluster, primary, name, "bob", 10)
    assert other["token"] > first["token"]
    # Even now that bob holds it, alice's retry still gets her first answer.
    again = send(primary)
    assert {k: again[k] for k in STABLE_KEYS} == {k: first[k] for k in STABLE_KEYS}
    release(cluster, primary, other)


def test_a_retried_refused_acquire_stays_refused_after_the_name_is_freed(
    cluster: Any, primary: str
) -> None:
    """The first answer is returned "whatever happened since" (DESIGN §3): a 409 too."""
    lease = granted(cluster, primary, "idem/refused", "alice", 10)
    follower = cluster.followers(primary)[0]
    status, _, first = acquire(cluster, follower, "idem/refused", "bob", 10, request_id="bob-1")
    assert status == 409 and first["error"] == "held" and first["holder"] == "alice", first
    release(cluster, primary, lease)
    status, _, again = acquire(cluster, follower, "idem/refused", "bob", 10, request_id="bob-1")
    assert status == 409 and again["error"] == "held" and again["holder"] == "alice", again
    assert http("GET", lease_url(cluster, primary, "idem/refused"))[0] == 404
    # A new request id is a new request.
    fresh = granted(cluster, follower, "idem/refused", "bob", 10, request_id="bob-2")
    assert fresh["token"] > lease["token"]
    release(cluster, primary, fresh)


def test_a_request_id_reused_for_another_request_is_400(cluster: Any, primary: str) -> None:
    lease = granted(cluster, primary, "idem/reuse", "alice", 10, request_id="r-reuse")
    status, headers, body = acquire(cluster, primary, "idem/reuse", "alice", 20,
                                    request_id="r-reuse")  # fmt: skip
    assert_error(status, headers, body, 400, "bad_request")
    release(cluster, primary, lease)


def test_a_retried_release_returns_the_first_response(cluster: Any, primary: str) -> None:
    lease = granted(cluster, primary, "idem/release", "alice", 10)
    body = {"holder": "alice", "token": lease["token"], "request_id": "rel-1"}
    for node in [primary, *cluster.followers(primary)]:
        status, _, answer = http("POST", lease_url(cluster, node, "idem/release", "release"), body)
        assert (status, answer) == (200, {"released": True}), answer
        status, _, answer = http(  # the same request id as a header
            "POST", lease_url(cluster, node, "idem/release", "release"),
            {"holder": "alice", "token": lease["token"]}, headers={"Idempotency-Key": "rel-1"})
        assert (status, answer) == (200, {"released": True}), answer
    # Without the request id, a second release is a plain not_holder.
    status, headers, answer = http("POST", lease_url(cluster, primary, "idem/release", "release"),
                                   {"holder": "alice", "token": lease["token"]})  # fmt: skip
    assert_error(status, headers, answer, 409, "not_holder")


# -- cluster, health, metrics --------------------------------------------------------------


def test_cluster_object_health_readiness_and_metrics(cluster: Any, primary: str) -> None:
    for node in cluster.members:
        status, headers, view = http("GET", f"{cluster.url(node)}/v1/cluster")
        assert status == 200, view
        assert set(view) == {"node", "role", "primary", "ballot", "learn_mode", "chosen_index",
                             "applied_index", "revision", "members", "primary_changes"}  # fmt: skip
        assert view["node"] == node and view["primary"] == primary
        assert view["role"] == "voter"
        assert isinstance(view["chosen_index"], int) and isinstance(view["applied_index"], int)
        assert [m["id"] for m in view["members"]] == sorted(cluster.members)
        for member in view["members"]:
            assert set(member) == {"id", "url", "reachable", "chosen_index", "lag",
                                   "heard_s_ago", "heard_via"}  # fmt: skip
            assert member["url"] == cluster.url(member["id"])
            assert member["reachable"] is True
        assert http("GET", f"{cluster.url(node)}/healthz")[0] == 200
        assert http("GET", f"{cluster.url(node)}/readyz")[0] == 200
        status, headers, text = http("GET", f"{cluster.url(node)}/metrics")
        assert status == 200 and headers["Content-Type"].startswith("text/plain")
        for name in ("paxlock_chosen_index", "paxlock_is_primary", "paxlock_leases_held"):
            assert harness.metric_value(text, name) is not None, name
        assert harness.metric_value(text, "paxlock_is_primary") == (node == primary)
    assert (cluster.metric(primary, "paxlock_lease_grants_total") or 0) > 0


def test_a_waiter_that_disconnects_leaves_the_queue(cluster_factory: Any) -> None:
    """Found by the SDK tests: a parked acquire whose client went away was still granted on
    release — to nobody — and the name stayed blocked for its TTL."""
    import asyncio

    import aiohttp

    cluster = cluster_factory(3)
    url = cluster.url(cluster.wait_ready())

    async def scenario() -> tuple[int, int]:
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{url}/v1/leases/gone:acquire",
                                    json={"holder": "a", "ttl": 30}) as response:  # fmt: skip
                held = await response.json()
            try:
                await session.post(f"{url}/v1/leases/gone:acquire",
                                   json={"holder": "b", "ttl": 30, "wait": 30},
                                   timeout=aiohttp.ClientTimeout(total=0.5))  # fmt: skip
            except TimeoutError:
                pass  # b gives up and disconnects while parked
            for _ in range(100):  # wait (bounded) until the primary has dropped b's request
                async with session.get(f"{url}/metrics") as response:
                    if "paxlock_lease_waiters 0.0" in await response.text():
                        break
                await asyncio.sleep(0.05)
            async with session.post(f"{url}/v1/leases/gone:release",
                                    json={"holder": "a", "token": held["token"]}) as response:
                released = response.status
            async with session.get(f"{url}/v1/leases/gone") as response:
                return released, response.status

    assert asyncio.run(scenario()) == (200, 404)  # free, not granted to the vanished b
