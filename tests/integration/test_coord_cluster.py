"""Sessions, semaphores, read/write locks and groups on a real 3-member cluster (issue 15):
a session's expiry ends everything bound to it at once and hands the lease to its waiter; a
waiting writer is not overtaken by readers that come after it; group observe (SSE) sees
every join and leave; bad input is a 400 in the JSON shape; a follower forwards.

One module-scoped cluster; every wait is on a condition with a deadline."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

harness = sys.modules["paxlock_test_harness"]
http, wait_for = harness.http, harness.wait_for


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    root: Path = tmp_path_factory.mktemp("coord")
    with harness.running_cluster(root, 3) as running:
        yield running


def unique(prefix: str) -> str:
    return f"{prefix}/{uuid.uuid4().hex[:8]}"


def post(url: str, body: Any, timeout_s: float = 5.0) -> tuple[int, Any]:
    status, _, answer = http("POST", url, body, timeout_s=timeout_s)
    return status, answer


def in_thread(call: Any) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(call()), daemon=True)
    thread.start()
    return thread, out


def waiters(cluster: Any, primary: str) -> float:
    return cluster.metric(primary, "paxlock_lease_waiters") or 0.0


def test_a_session_expiry_ends_everything_bound_to_it_at_once(cluster: Any) -> None:
    primary = cluster.wait_ready()
    base = cluster.url(primary)
    lease, sem, rw, group = unique("lease"), unique("sem"), unique("rw"), unique("grp")
    status, session = post(f"{base}/v1/sessions", {"holder": "worker", "ttl": 2})
    assert status == 200, session
    sid = session["id"]
    assert sid == f"s{session['token']}"
    assert post(f"{base}/v1/leases/{lease}:acquire",
                {"holder": "worker", "session": sid})[0] == 200  # fmt: skip
    assert post(f"{base}/v1/semaphores/{sem}:acquire",
                {"holder": "worker", "limit": 1, "session": sid})[0] == 200  # fmt: skip
    assert post(f"{base}/v1/rwlocks/{rw}:acquire",
                {"holder": "worker", "mode": "read", "session": sid})[0] == 200  # fmt: skip
    assert http("PUT", f"{base}/v1/groups/{group}")[0] == 201
    assert post(f"{base}/v1/groups/{group}/members/w1:join", {"session": sid})[0] == 200
    _, _, held = http("GET", f"{base}/v1/sessions/{sid}")
    assert sorted(h["kind"] for h in held["holds"]) == ["lease", "member", "rwlock", "semaphore"]

    thread, got = in_thread(lambda: post(f"{base}/v1/leases/{lease}:acquire",
                                         {"holder": "waiter", "ttl": 5, "wait": 20},
                                         timeout_s=25))  # fmt: skip
    wait_for(lambda: waiters(cluster, primary) >= 1, 5.0, "the waiter to park")
    # Nobody renews: at the first read that finds the session gone, so is everything bound.
    wait_for(lambda: http("GET", f"{base}/v1/sessions/{sid}")[0] == 404, 10.0, "the expiry")
    assert http("GET", f"{base}/v1/semaphores/{sem}")[0] == 404
    assert http("GET", f"{base}/v1/rwlocks/{rw}")[0] == 404
    assert http("GET", f"{base}/v1/groups/{group}/members")[2]["members"] == []
    thread.join(10)
    status, granted = got[0]
    assert status == 200 and granted["holder"] == "waiter", granted
    assert granted["token"] > session["token"]


def test_a_waiting_writer_is_not_overtaken_by_later_readers(cluster: Any) -> None:
    primary = cluster.wait_ready()
    base, name = cluster.url(primary), unique("rw")
    status, first = post(f"{base}/v1/rwlocks/{name}:acquire",
                         {"holder": "r0", "mode": "read", "ttl": 30})  # fmt: skip
    assert status == 200, first
    parked = waiters(cluster, primary)
    thread, got = in_thread(lambda: post(f"{base}/v1/rwlocks/{name}:acquire",
                                         {"holder": "w", "mode": "write", "ttl": 30,
                                          "wait": 20}, timeout_s=25))  # fmt: skip
    wait_for(lambda: waiters(cluster, primary) > parked, 5.0, "the writer to park")
    for n in range(1, 6):  # a stream of readers, each compatible with r0 but not before w
        status, refused = post(f"{base}/v1/rwlocks/{name}:acquire",
                               {"holder": f"r{n}", "mode": "read", "ttl": 30})  # fmt: skip
        assert status == 409 and refused["error"] == "held", refused
    assert post(f"{base}/v1/rwlocks/{name}:release",
                {"holder": "r0", "token": first["token"]})[0] == 200  # fmt: skip
    thread.join(10)
    status, writer = got[0]
    assert status == 200 and writer["holders"] == ["w"], writer
    status, refused = post(f"{base}/v1/rwlocks/{name}:acquire",
                           {"holder": "r9", "mode": "read", "ttl": 30})  # fmt: skip
    assert status == 409 and refused["holder"] == "w"


def test_group_observe_streams_every_join_and_leave(cluster: Any) -> None:
    primary = cluster.wait_ready()
    base, group = cluster.url(primary), unique("grp")
    follower = cluster.url(cluster.followers(primary)[0])
    assert http("PUT", f"{base}/v1/groups/{group}")[0] == 201
    start = http("GET", f"{base}/v1/groups/{group}")[2]["revision"]
    stream = harness.EventStream(f"{follower}/v1/groups/{group}:observe?after={start}")
    try:
        assert stream.status == 200
        _, session = post(f"{base}/v1/sessions", {"holder": "agents", "ttl": 30})
        caps = base64.b64encode(b"gpu=1").decode()
        for member in ("a", "b", "c"):
            status, joined = post(f"{base}/v1/groups/{group}/members/{member}:join",
                                  {"session": session["id"], "capabilities": caps})  # fmt: skip
            assert status == 200 and joined["capabilities"] == caps, joined
        assert post(f"{base}/v1/groups/{group}/members/a:leave", {})[0] == 200
        status, closed = post(f"{base}/v1/sessions/{session['id']}:close", {"holder": "agents"})
        assert status == 200 and {f["holder"] for f in closed["freed"]} == {"b", "c"}
        seen = [stream.next_event(5.0)["data"] for _ in range(6)]
    finally:
        stream.close()
    assert [(e["type"], e["member"]) for e in seen] == [
        ("joined", "a"), ("joined", "b"), ("joined", "c"), ("left", "a"), ("left", "b"),
        ("left", "c")]  # fmt: skip
    revisions = [e["revision"] for e in seen]
    assert revisions == sorted(revisions) and revisions[4] == revisions[5]  # one entry
    status, _, poll = http("GET", f"{follower}/v1/groups/{group}:observe?after={start}&timeout=0")
    assert status == 200 and len(poll["events"]) == 6 and poll["members"] == []
    assert http("DELETE", f"{base}/v1/groups/{group}")[0] == 200


@pytest.mark.parametrize("method, path, body, code", [
    ("POST", "/v1/sessions", {"holder": "h"}, "bad_request"),
    ("POST", "/v1/sessions", {"holder": "h", "ttl": -1}, "bad_request"),
    ("POST", "/v1/leases/x:acquire", {"holder": "h", "ttl": 5, "session": "s1"}, "bad_request"),
    ("POST", "/v1/semaphores/x:acquire", {"holder": "h", "limit": 0, "ttl": 5}, "bad_request"),
    ("POST", "/v1/rwlocks/x:acquire", {"holder": "h", "mode": "up", "ttl": 5}, "bad_request"),
    ("PUT", "/v1/groups/members", None, "bad_request"),
    ("POST", "/v1/groups/g/members/m:join", {"session": "s1", "capabilities": "!!"},
     "bad_request"),
    ("GET", "/v1/sessions/s999999999", None, "not_found"),
    ("POST", "/v1/leases/x:acquire", {"holder": "h", "session": "s999999999"}, "not_found"),
    ("GET", "/v1/groups/no-such-group/leader", None, "not_found"),
])  # fmt: skip
def test_bad_input_is_answered_in_the_json_error_shape(cluster: Any, method: str, path: str,
                                                       body: Any, code: str) -> None:  # fmt: skip
    status, _, answer = http(method, cluster.url(cluster.wait_ready()) + path, body)
    assert answer["error"] == code and answer["message"], answer
    assert status == {"bad_request": 400, "not_found": 404}[code]


def test_a_follower_forwards_the_new_routes_to_the_primary(cluster: Any) -> None:
    primary = cluster.wait_ready()
    follower = cluster.url(cluster.followers(primary)[0])
    status, headers, session = http("POST", f"{follower}/v1/sessions",
                                    {"holder": "fwd", "ttl": 10})  # fmt: skip
    assert status == 200 and headers["X-Paxlock-Primary"] == primary, session
    group = unique("fwd")
    assert http("PUT", f"{follower}/v1/groups/{group}")[0] == 201
    status, _, joined = http("POST", f"{follower}/v1/groups/{group}/members/m:join",
                             {"session": session["id"]})  # fmt: skip
    assert status == 200 and joined["session"] == session["id"]
    status, _, leader = http("POST", f"{follower}/v1/groups/{group}/leader:campaign",
                             {"candidate": "m", "session": session["id"]})  # fmt: skip
    assert status == 200 and leader["leader"] == "m" and leader["name"] == group, leader
    assert http("GET", f"{follower}/v1/groups/{group}/leader")[2]["leader"] == "m"
    status, _, closed = http("POST", f"{follower}/v1/sessions/{session['id']}:close",
                             {"holder": "fwd"})  # fmt: skip
    assert status == 200 and len(closed["freed"]) == 2  # the membership and the leadership
    assert http("GET", f"{follower}/v1/groups/{group}/leader")[2]["leader"] is None


def test_the_cli_opens_binds_and_closes(cluster: Any) -> None:
    """``paxlock session|semaphore|group`` with ``--json``, one process per command."""
    endpoints = ["--endpoint", ",".join(cluster.urls()), "--json"]

    def paxlock(*words: str) -> Any:
        done = subprocess.run([sys.executable, "-m", "paxlock.api.cli", *words, *endpoints],
                              capture_output=True, text=True, timeout=30)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    session = paxlock("session", "open", "--ttl", "30")
    sem, group = unique("cli"), unique("cli")
    permit = paxlock("semaphore", "acquire", sem, "--limit", "2", "--session", session["id"])
    assert permit["session"] == session["id"] and permit["limit"] == 2
    paxlock("group", "create", group)
    paxlock("group", "join", group, "m1", "--session", session["id"], "--capabilities", "x")
    assert [m["member"] for m in paxlock("group", "members", group)] == ["m1"]
    freed = paxlock("session", "close", session["id"])
    assert sorted(f["kind"] for f in freed) == ["member", "semaphore"]
    held = subprocess.run([sys.executable, "-m", "paxlock.api.cli", "session", "get",
                           session["id"], *endpoints], capture_output=True, text=True,
                          timeout=30)  # fmt: skip
    assert held.returncode == 1 and "no session" in held.stderr
