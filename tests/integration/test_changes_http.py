"""What a status page reads, over real HTTP on a real 3-node cluster: ``GET /v1/changes``
(long poll and server-sent events on the cluster-wide revision), ``waiters`` on lease and
leader objects, and ``revision`` and ``primary_changes`` on the cluster object.

One cluster serves the module; the failover test kills its primary and runs last.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

import pytest

harness = sys.modules["paxlock_test_harness"]  # registered by tests/conftest.py
http = harness.http
wait_for = harness.wait_for


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with harness.running_cluster(Path(tmp_path_factory.mktemp("changes"))) as running:
        yield running


@pytest.fixture
def primary(cluster: Any) -> str:
    return str(cluster.wait_ready())


def revision(cluster: Any, node: str) -> int:
    status, _, view = http("GET", f"{cluster.url(node)}/v1/cluster")
    assert status == 200, view
    return int(view["revision"])


def changes(cluster: Any, node: str, after: int, timeout: float
            ) -> tuple[int, dict[str, str], Any]:  # fmt: skip
    result: tuple[int, dict[str, str], Any] = http(
        "GET", f"{cluster.url(node)}/v1/changes?after={after}&timeout={timeout}",
        timeout_s=timeout + 10,
    )  # fmt: skip
    return result


def post(cluster: Any, node: str, path: str, body: Any) -> Any:
    status, _, answer = http("POST", f"{cluster.url(node)}{path}", body)
    assert status == 200, (path, answer)
    return answer


def test_changes_long_poll_answers_after_any_kind_of_change(cluster: Any, primary: str) -> None:
    """A lease acquire, a session open, a group join: each wakes a poll waiting at a
    follower (served from its own applied log), with the revision that passed ``after``."""
    follower = cluster.followers(primary)[0]
    session: dict[str, Any] = {}

    def acquire() -> None:
        post(cluster, primary, "/v1/leases/changes/a:acquire", {"holder": "h", "ttl": 30})

    def open_session() -> None:
        session.update(post(cluster, primary, "/v1/sessions", {"holder": "h", "ttl": 30}))

    def join() -> None:
        assert http("PUT", f"{cluster.url(primary)}/v1/groups/changes-g")[0] == 201
        after = revision(cluster, primary)
        with ThreadPoolExecutor(1) as pool:  # the group's creation passed; now the join
            pending = pool.submit(changes, cluster, follower, after, 10)
            with pytest.raises(FutureTimeout):
                pending.result(timeout=0.3)
            post(cluster, primary, "/v1/groups/changes-g/members/m1:join",
                 {"session": session["id"]})  # fmt: skip
            status, _, body = pending.result(timeout=10)
        assert status == 200 and body["revision"] > after, body

    for change in (acquire, open_session, join):
        wait_for(lambda: revision(cluster, follower) == revision(cluster, primary), 5.0,
                 "the follower to apply what the primary did")  # fmt: skip
        after = revision(cluster, follower)
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(changes, cluster, follower, after, 10)
            with pytest.raises(FutureTimeout):  # it waits while nothing changes
                pending.result(timeout=0.3)
            change()
            status, _, body = pending.result(timeout=10)
        assert status == 200, (change.__name__, body)
        assert set(body) == {"revision"} and body["revision"] > after, body


def test_changes_long_poll_is_204_on_timeout_and_400_on_bad_values(cluster: Any,
                                                                   primary: str) -> None:  # fmt: skip
    follower = cluster.followers(primary)[0]
    status, _, body = changes(cluster, follower, 0, 5)  # after=0: the revision now, at once
    assert status == 200 and body["revision"] >= 1, body
    sent = time.monotonic()
    status, _, body = changes(cluster, follower, body["revision"] + 10**9, 0.4)
    elapsed = time.monotonic() - sent
    assert (status, body) == (204, None) and 0.4 <= elapsed < 3.0, (status, elapsed)
    for query in ("after=-1", "after=x", "timeout=-1", "timeout=3601", "timeout=soon"):
        status, _, body = http("GET", f"{cluster.url(follower)}/v1/changes?{query}")
        assert status == 400 and body["error"] == "bad_request", (query, body)


def test_changes_event_stream_delivers_successive_revisions_and_resumes(cluster: Any,
                                                                        primary: str) -> None:  # fmt: skip
    follower = cluster.followers(primary)[0]
    base = cluster.url(primary)
    stream = harness.EventStream(f"{cluster.url(follower)}/v1/changes")
    try:
        assert stream.status == 200
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        first = stream.next_event(timeout_s=5.0)  # after=0: the revision now
        seen = [int(first["id"])]
        assert first["data"] == {"revision": seen[0]}
        # Each change is made only after the previous one was seen: each is its own event.
        lease = post(cluster, primary, "/v1/leases/changes/sse:acquire", {"holder": "h", "ttl": 30})
        body = {"holder": "h", "token": lease["token"]}
        steps: list[Callable[[], Any]] = [
            lambda: post(cluster, primary, "/v1/leases/changes/sse:release", body),
            lambda: http("PUT", f"{base}/v1/groups/changes-sse"),
        ]
        while True:
            event = stream.next_event(timeout_s=5.0)
            assert int(event["id"]) == event["data"]["revision"] > seen[-1], (event, seen)
            seen.append(int(event["id"]))
            if not steps:
                break
            steps.pop(0)()
        assert seen[1] == lease["revision"]
    finally:
        stream.close()
    # Last-Event-ID resumes after the last revision seen: the first event is the next change
    # (without it, the first event would be the revision now, at once).
    stream = harness.EventStream(f"{cluster.url(follower)}/v1/changes",
                                 headers={"Last-Event-ID": str(seen[-1])})  # fmt: skip
    try:
        lease = post(cluster, primary, "/v1/leases/changes/sse:acquire", {"holder": "h", "ttl": 30})
        event = stream.next_event(timeout_s=5.0)
        assert event["data"] == {"revision": lease["revision"]}, event
    finally:
        stream.close()


def test_waiters_count_waiting_acquires_and_campaigns(cluster: Any, primary: str) -> None:
    """Acquires with ``wait`` parked behind a holder, sent to the primary itself and to a
    follower (which relays it): the primary's linearizable reads count both."""
    follower = cluster.followers(primary)[0]
    held = post(cluster, primary, "/v1/leases/changes/w:acquire", {"holder": "h", "ttl": 30})
    assert held["waiters"] == 0

    def waiters() -> tuple[int, int, int]:
        lease = http("GET", f"{cluster.url(follower)}/v1/leases/changes/w")[2]
        leader = http("GET", f"{cluster.url(primary)}/v1/elections/changes/w")[2]
        listed = http("GET", f"{cluster.url(primary)}/v1/leases?prefix=changes/w")[2]
        return lease["waiters"], leader["waiters"], listed["leases"][0]["waiters"]

    assert waiters() == (0, 0, 0)
    wait = {"ttl": 30, "wait": 20}
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(http, "POST", f"{cluster.url(primary)}/v1/leases/changes/w:acquire",
                            {"holder": "w1", **wait}, 30)  # fmt: skip
        wait_for(lambda: waiters() == (1, 1, 1), 5.0, "one waiter counted")
        second = pool.submit(http, "POST",
                             f"{cluster.url(follower)}/v1/elections/changes/w:campaign",
                             {"candidate": "w2", **wait}, 30)  # fmt: skip
        wait_for(lambda: waiters() == (2, 2, 2), 5.0, "two waiters counted")
        post(cluster, primary, "/v1/leases/changes/w:release",
             {"holder": "h", "token": held["token"]})  # fmt: skip
        status, _, granted = first.result(timeout=10)
        assert status == 200 and granted["holder"] == "w1", granted
        assert granted["waiters"] == 1, granted  # itself no longer, the campaign still
        wait_for(lambda: waiters() == (1, 1, 1), 5.0, "the granted waiter uncounted")
        post(cluster, primary, "/v1/leases/changes/w:release",
             {"holder": "w1", "token": granted["token"]})  # fmt: skip
        status, _, leader = second.result(timeout=10)
        assert status == 200 and leader["leader"] == "w2" and leader["waiters"] == 0, leader
    assert waiters() == (0, 0, 0)


def test_cluster_object_has_revision_and_primary_changes_through_a_failover(
        cluster: Any, primary: str) -> None:  # fmt: skip
    """Runs last in the module: it kills the primary."""
    for node in cluster.members:
        _, _, view = http("GET", f"{cluster.url(node)}/v1/cluster")
        assert isinstance(view["revision"], int) and view["revision"] >= 0
        history = view["primary_changes"]
        assert 1 <= len(history) <= 20 and history[-1]["primary"] == primary, history
        assert all(set(entry) == {"at", "primary", "ballot"} for entry in history)
        assert history[-1]["ballot"] is not None and history[-1]["ballot"].endswith(primary)
        assert abs(history[-1]["at"] - time.time()) < 600
    survivors = cluster.followers(primary)
    before = {node: len(cluster.cluster_view(node)["primary_changes"]) for node in survivors}
    killed_at = time.time()
    cluster.kill(primary)
    successor = cluster.wait_ready(20.0)
    assert successor != primary
    for node in survivors:
        history = cluster.cluster_view(node)["primary_changes"]
        assert len(history) > before[node] or len(history) == 20, history
        last = history[-1]
        assert last["primary"] == successor and last["ballot"].endswith(successor), history
        assert last["at"] >= killed_at - 1.0, (last, killed_at)
        assert [entry["at"] for entry in history] == sorted(e["at"] for e in history)
