"""A full-cluster restart (issue 4 item 6): every member stopped at once — by SIGKILL, a power
cut, or by SIGTERM — and started again on the same data dirs keeps every lease (holder,
token, value), every election, every lock-delay and the idempotency window, and the next
grants get higher tokens than any before. Lease timers restart at the full TTL, so a
lease does not expire early because the cluster was down.
"""

from __future__ import annotations

import signal
import sys
import time
from typing import Any

import pytest

harness = sys.modules["paxlock_test_harness"]  # registered by tests/conftest.py
http = harness.http
try_http = harness.try_http
wait_for = harness.wait_for

KEPT_KEYS = ("name", "holder", "token", "revision", "ttl", "value", "lock_delay")


def lease_url(cluster: Any, node: str, name: str, verb: str = "") -> str:
    return f"{cluster.url(node)}/v1/leases/{name}" + (f":{verb}" if verb else "")


def ok(answer: tuple[int, dict[str, str], Any]) -> Any:
    status, _, body = answer
    assert status == 200, body
    return body


def populate(cluster: Any, primary: str, round_: int) -> dict[str, dict[str, Any]]:
    """Leases of every kind, through every member; returns them by name."""
    nodes = list(cluster.members)
    leases: dict[str, dict[str, Any]] = {}
    for i in range(8):
        name = f"r{round_}/svc/{i}" if i % 2 else f"r{round_}.lease-{i}"
        body: dict[str, Any] = {"holder": f"holder-{i}", "ttl": 120}
        if i % 3 == 0:
            body["value"] = f"value {i} ✓"
        if i % 4 == 1:
            body["lock_delay"] = 5
        leases[name] = ok(http("POST", lease_url(cluster, nodes[i % len(nodes)], name, "acquire"),
                               body))  # fmt: skip
    return leases


def assert_kept(cluster: Any, leases: dict[str, dict[str, Any]]) -> None:
    for i, (name, lease) in enumerate(leases.items()):
        node = list(cluster.members)[i % len(cluster.members)]
        got = ok(http("GET", lease_url(cluster, node, name)))
        assert {k: got[k] for k in KEPT_KEYS} == {k: lease[k] for k in KEPT_KEYS}, name


@pytest.mark.parametrize(
    ("size", "sig"),
    [(3, signal.SIGKILL), (5, signal.SIGKILL), (3, signal.SIGTERM)],
    ids=["3-nodes-kill-9", "5-nodes-kill-9", "3-nodes-sigterm"],
)
def test_a_full_cluster_restart_keeps_every_lease(cluster_factory: Any, size: int, sig: int
                                                  ) -> None:  # fmt: skip
    cluster = cluster_factory(size)
    primary = cluster.wait_ready()
    leases = populate(cluster, primary, 1)
    # An election with a proclaimed value, a released lease, a replayable request.
    leader = ok(http("POST", f"{cluster.url(primary)}/v1/elections/r1/leader:campaign",
                     {"candidate": "c1", "ttl": 120, "value": "v1"}))  # fmt: skip
    leader = ok(http("POST", f"{cluster.url(primary)}/v1/elections/r1/leader:proclaim",
                     {"candidate": "c1", "token": leader["token"], "value": "v2"}))  # fmt: skip
    gone = ok(http("POST", lease_url(cluster, primary, "r1/gone", "acquire"),
                   {"holder": "x", "ttl": 120}))  # fmt: skip
    ok(http("POST", lease_url(cluster, primary, "r1/gone", "release"),
            {"holder": "x", "token": gone["token"]}))  # fmt: skip
    retried = {"holder": "idem", "ttl": 120, "request_id": "before-restart"}
    first = ok(http("POST", lease_url(cluster, primary, "r1/idem", "acquire"), retried))
    highest = max(lease["revision"] for lease in [*leases.values(), leader, first])

    cluster.restart_all(sig)

    assert_kept(cluster, leases)
    for node in cluster.members:
        got = ok(http("GET", f"{cluster.url(node)}/v1/elections/r1/leader"))
        assert (got["leader"], got["value"], got["token"], got["revision"]) == (
            "c1", "v2", leader["token"], leader["revision"])
        assert http("GET", lease_url(cluster, node, "r1/gone"))[0] == 404
    listed = ok(http("GET", f"{cluster.url(primary)}/v1/leases?prefix=r1/"))["leases"]
    assert sorted(lease["name"] for lease in listed) == sorted(
        [n for n in leases if n.startswith("r1/")] + ["r1/idem", "r1/leader"])
    # The idempotency window survived: the retry is the first answer, not a conflict.
    again = ok(http("POST", lease_url(cluster, primary, "r1/idem", "acquire"), retried))
    assert (again["token"], again["holder"]) == (first["token"], "idem")
    # The grants are live: their holders renew and release them with their old tokens.
    name, lease = next(iter(leases.items()))
    renewed = ok(http("POST", lease_url(cluster, primary, name, "renew"),
                      {"holder": lease["holder"], "token": lease["token"]}))  # fmt: skip
    assert renewed["token"] == lease["token"]
    # New grants get higher tokens than every grant before the restart.
    fresh = ok(http("POST", lease_url(cluster, primary, "r1/fresh", "acquire"),
                    {"holder": "y", "ttl": 120}))  # fmt: skip
    assert fresh["token"] > highest
    ok(http("POST", lease_url(cluster, primary, name, "release"),
            {"holder": lease["holder"], "token": lease["token"]}))  # fmt: skip
    again = ok(http("POST", lease_url(cluster, primary, name, "acquire"),
                    {"holder": "z", "ttl": 120}))  # fmt: skip
    assert again["token"] > fresh["token"]


def test_two_restarts_in_a_row_keep_leases_and_raise_tokens(cluster_factory: Any) -> None:
    cluster = cluster_factory(3)
    primary = cluster.wait_ready()
    leases = populate(cluster, primary, 1)
    cluster.restart_all(signal.SIGKILL)
    primary = cluster.wait_ready()
    more = populate(cluster, primary, 2)
    assert min(x["token"] for x in more.values()) > max(x["token"] for x in leases.values())
    cluster.restart_all(signal.SIGKILL)
    assert_kept(cluster, {**leases, **more})
    primary = cluster.wait_ready()
    fresh = ok(http("POST", lease_url(cluster, primary, "r3/fresh", "acquire"),
                    {"holder": "y", "ttl": 10}))  # fmt: skip
    assert fresh["token"] > max(lease["revision"] for lease in more.values())


def test_lease_timers_restart_at_the_full_ttl_after_a_restart(cluster_factory: Any) -> None:
    """A lease is never ended early by a restart: its TTL counts again from the new primary's
    office, which begins after the members were started."""
    cluster = cluster_factory(3)
    primary = cluster.wait_ready()
    ttl = 2.0
    lease = ok(http("POST", lease_url(cluster, primary, "timer/a", "acquire"),
                    {"holder": "alice", "ttl": ttl}))  # fmt: skip
    # A lock-delay that is running when the cluster goes down is kept as well.
    blocked = ok(http("POST", lease_url(cluster, primary, "timer/blocked", "acquire"),
                      {"holder": "bob", "ttl": 0.3, "lock_delay": 60}))  # fmt: skip
    wait_for(lambda: http("GET", lease_url(cluster, primary, "timer/blocked"))[0] == 404, 5.0,
             "timer/blocked to expire into its lock-delay")  # fmt: skip
    for member in cluster.members.values():
        member.process.send_signal(signal.SIGKILL)
        member.process.wait(timeout=15)
    started = time.monotonic()
    primary = cluster.start_many()
    got = ok(http("GET", lease_url(cluster, primary, "timer/a")))
    assert (got["holder"], got["token"]) == ("alice", lease["token"])
    status, _, refused = http("POST", lease_url(cluster, primary, "timer/blocked", "acquire"),
                              {"holder": "carol", "ttl": 5})  # fmt: skip
    assert status == 409 and refused["error"] == "held", refused
    assert refused["holder"] is None and refused["token"] == blocked["token"], refused
    while True:
        status, _, got = http("GET", lease_url(cluster, primary, "timer/a"))
        received = time.monotonic()
        if status == 404:
            break
        assert status == 200 and got["token"] == lease["token"], got
        assert received - started < ttl + 20, "the lease never expired after the restart"
        time.sleep(0.05)
    assert received - started >= ttl, "the lease expired before a full TTL after the restart"
