"""Reachability and lag as the cluster really is (issue 11, item 4): ``/v1/cluster`` and
``paxlock status`` on real processes that are frozen (SIGSTOP) and killed.

A member is ``reachable`` in a node's view when that node heard from it within twice the
election timeout — directly, or (for a follower looking at another follower) through the
primary's heartbeats, which carry what the primary heard from each member. Every view
reports each member's last known chosen index and its lag. ``paxlock status`` asks every
endpoint it is given (``--endpoint``, or ``PAXLOCK_ENDPOINTS``) and exits 4 when there is
no primary.

Waits are conditions under a deadline. The cluster runs with the default election timeout
of the test harness (0.3 s, so a member is unreachable 0.6 s after it was last heard); the
deadlines are far longer, for a loaded machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Any

harness = sys.modules["paxlock_test_harness"]  # registered by tests/conftest.py
wait_for = harness.wait_for

DEADLINE_S = 10.0


def views(cluster: Any, *, without: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """``/v1/cluster`` of every live member not in ``without`` (all of them, or none)."""
    out = {}
    for node in cluster.members:
        if node in without or not cluster.alive(node):
            continue
        view = cluster.cluster_view(node)
        if view is None:
            return {}
        out[node] = view
    return out


def member(view: dict[str, Any], node: str) -> dict[str, Any]:
    found: dict[str, Any] = next(m for m in view["members"] if m["id"] == node)
    return found


def everyone_sees(cluster: Any, node: str, reachable: bool,
                  without: tuple[str, ...] = ()) -> bool:  # fmt: skip
    seen = views(cluster, without=(node, *without))
    return bool(seen) and all(member(v, node)["reachable"] is reachable for v in seen.values())


def test_every_view_reports_every_members_chosen_index_and_lag(cluster: Any, http: Any) -> None:
    primary = cluster.wait_ready()
    status, _, _ = http("POST", cluster.url(primary) + "/v1/leases/status-a:acquire",
                        {"holder": "alice", "ttl": 30})  # fmt: skip
    assert status == 200

    def caught_up() -> dict[str, dict[str, Any]] | None:
        seen = views(cluster)
        top = max((v["chosen_index"] for v in seen.values()), default=0)
        done = len(seen) == 3 and all(
            m["reachable"] is True and m["chosen_index"] == top and m["lag"] == 0
            for v in seen.values() for m in v["members"])  # fmt: skip
        return seen if done else None

    seen = wait_for(caught_up, DEADLINE_S, "every view to show every member caught up")
    for node, view in seen.items():
        assert member(view, node)["heard_s_ago"] == 0.0  # a node hears itself
        for other in view["members"]:
            assert other["url"] == cluster.url(other["id"])
            assert isinstance(other["heard_s_ago"], float) and other["heard_s_ago"] >= 0


def test_a_frozen_or_dead_follower_is_unreachable_in_every_view(cluster: Any) -> None:
    primary = cluster.wait_ready()
    frozen, other = cluster.followers(primary)
    wait_for(lambda: everyone_sees(cluster, frozen, True), DEADLINE_S, "all reachable")

    cluster.pause(frozen)  # SIGSTOP: its connections stay open, it just says nothing
    try:
        wait_for(lambda: everyone_sees(cluster, frozen, False), DEADLINE_S,
                 f"{frozen} frozen: unreachable for {primary} and for {other}")  # fmt: skip
        # Its last known chosen index stays, and the primary and the other follower still
        # see each other.
        for view in views(cluster, without=(frozen,)).values():
            assert isinstance(member(view, frozen)["chosen_index"], int)
            assert member(view, other)["reachable"] and member(view, primary)["reachable"]
    finally:
        cluster.resume(frozen)
    wait_for(lambda: everyone_sees(cluster, frozen, True), DEADLINE_S, f"{frozen} back")

    cluster.kill(frozen, signal.SIGTERM)  # the process exits
    wait_for(lambda: everyone_sees(cluster, frozen, False), DEADLINE_S,
             f"{frozen} exited: unreachable in every view")  # fmt: skip


def test_a_frozen_primary_is_unreachable_once_its_followers_stop_hearing_it(
    cluster: Any,
) -> None:
    old = cluster.wait_ready()
    cluster.pause(old)
    try:
        def successor() -> str | None:
            seen = views(cluster, without=(old,))
            primaries = {v["primary"] for v in seen.values()}
            if len(seen) != 2 or len(primaries) != 1 or None in primaries:
                return None
            (new,) = primaries
            ok = all(not member(v, old)["reachable"] and member(v, new)["reachable"]
                     for v in seen.values())  # fmt: skip
            return str(new) if ok else None

        new = wait_for(successor, DEADLINE_S, "a successor and the old primary unreachable")
        assert new != old
    finally:
        cluster.resume(old)


# -- paxlock status ----------------------------------------------------------------------------


def status_command(*args: str, endpoints: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("PAXLOCK_ENDPOINTS", None)
    if endpoints is not None:
        env["PAXLOCK_ENDPOINTS"] = endpoints
    return subprocess.run([sys.executable, "-m", "paxlock.api.cli", "status", *args],
                          capture_output=True, text=True, timeout=60, env=env)  # fmt: skip


def table_rows(stdout: str) -> dict[str, list[str]]:
    """The member rows of the table, by member id (the first column)."""
    rows = {}
    for line in stdout.splitlines():
        words = line.split()
        if words and words[0].startswith("n") and words[0][1:].isdigit():
            rows[words[0]] = words
    return rows


def test_status_asks_every_endpoint_shows_a_table_and_fails_without_a_primary(
    cluster: Any,
) -> None:
    primary = cluster.wait_ready()
    dead = f"http://127.0.0.1:{harness.free_port()}"  # nobody listens there
    endpoints = ",".join([dead, *cluster.urls()])

    # PAXLOCK_ENDPOINTS, a dead endpoint first: the others answer, a primary is known.
    done = wait_for(lambda: (d := status_command(endpoints=endpoints)).returncode == 0 and d,
                    DEADLINE_S, "paxlock status exit 0")  # fmt: skip
    rows = table_rows(done.stdout)
    assert set(rows) == set(cluster.members), done.stdout
    assert "primary" in rows[primary] and all(
        "primary" not in rows[n] for n in cluster.members if n != primary), done.stdout
    assert all("up" in row for row in rows.values()), done.stdout
    assert dead in done.stderr  # the endpoint that did not answer is named

    # --json: one object, the same facts; --endpoint flags instead of the environment.
    flags = [arg for url in cluster.urls() for arg in ("--endpoint", url)]
    done = status_command("--json", *flags)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["primary"] == primary and report["ballot"]
    assert [m["id"] for m in report["members"]] == sorted(cluster.members)
    for row in report["members"]:
        assert row["reachable"] is True and row["answered"] is True
        assert isinstance(row["chosen_index"], int) and isinstance(row["applied_index"], int)
        assert isinstance(row["lag"], int) and row["role"] in ("primary", "follower")

    # A frozen follower: marked down, the command still succeeds (there is a primary).
    frozen = cluster.followers(primary)[0]
    cluster.pause(frozen)
    try:
        def down() -> subprocess.CompletedProcess[str] | None:
            done = status_command(endpoints=endpoints)
            row = table_rows(done.stdout).get(frozen, [])
            return done if done.returncode == 0 and "DOWN" in row else None

        wait_for(down, DEADLINE_S, f"paxlock status to show {frozen} DOWN")
    finally:
        cluster.resume(frozen)

    # The majority gone: no primary, exit status 4.
    for node in cluster.followers(primary):
        cluster.kill(node)

    def no_primary() -> subprocess.CompletedProcess[str] | None:
        done = status_command(endpoints=endpoints)
        return done if done.returncode == 4 else None

    done = wait_for(no_primary, DEADLINE_S, "paxlock status exit 4 without a primary")
    assert "no primary" in done.stderr
    done = status_command("--json", endpoints=endpoints)
    assert done.returncode == 4 and json.loads(done.stdout)["primary"] is None

    # Nobody answers at all: the cluster is unavailable, exit status 4.
    cluster.kill(primary)
    done = status_command(endpoints=endpoints)
    assert done.returncode == 4, (done.stdout, done.stderr)
