"""Elections over real HTTP on a real 3-node cluster (DESIGN.md §3, §4): campaign, proclaim,
renew, resign, the leader object, and observe — long poll and server-sent events.

One cluster serves the module; each test uses election names of its own.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

import pytest

harness = sys.modules["paxlock_test_harness"]  # registered by tests/conftest.py
http = harness.http
wait_for = harness.wait_for

LEADER_KEYS = {"name", "leader", "value", "token", "revision", "ttl", "expires_in",
               "session", "waiters"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with harness.running_cluster(Path(tmp_path_factory.mktemp("elections"))) as running:
        yield running


@pytest.fixture
def primary(cluster: Any) -> str:
    return str(cluster.wait_ready())


def url(cluster: Any, node: str, name: str, verb: str = "", query: str = "") -> str:
    return (f"{cluster.url(node)}/v1/elections/{name}" + (f":{verb}" if verb else "")
            + (f"?{query}" if query else ""))  # fmt: skip


def campaign(cluster: Any, node: str, name: str, candidate: str, value: str | None = None,
             ttl: float = 10.0, **extra: Any) -> tuple[int, dict[str, str], Any]:  # fmt: skip
    result: tuple[int, dict[str, str], Any] = http(
        "POST", url(cluster, node, name, "campaign"),
        {"candidate": candidate, "value": value, "ttl": ttl, **extra},
        timeout_s=extra.get("wait", 0) + 10,
    )  # fmt: skip
    return result


def elected(cluster: Any, node: str, name: str, candidate: str, value: str | None = None,
            ttl: float = 10.0, **extra: Any) -> dict[str, Any]:  # fmt: skip
    status, _, leader = campaign(cluster, node, name, candidate, value, ttl, **extra)
    assert status == 200, leader
    return dict(leader)


def act(cluster: Any, node: str, name: str, verb: str, body: dict[str, Any]
        ) -> tuple[int, dict[str, str], Any]:  # fmt: skip
    result: tuple[int, dict[str, str], Any] = http("POST", url(cluster, node, name, verb), body)
    return result


def resign(cluster: Any, node: str, leader: dict[str, Any]) -> None:
    status, _, body = act(cluster, node, leader["name"], "resign",
                          {"candidate": leader["leader"], "token": leader["token"]})  # fmt: skip
    assert status == 200, body


def observe(cluster: Any, node: str, name: str, after: int, timeout: float
            ) -> tuple[int, dict[str, str], Any]:  # fmt: skip
    result: tuple[int, dict[str, str], Any] = http(
        "GET", url(cluster, node, name, "observe", f"after={after}&timeout={timeout}"),
        timeout_s=timeout + 10,
    )  # fmt: skip
    return result


# -- campaign, proclaim, renew, resign, leader ---------------------------------------------


def test_an_election_from_campaign_to_resign(cluster: Any, primary: str) -> None:
    follower = cluster.followers(primary)[0]
    leader = elected(cluster, follower, "life/a", "c1", "http://c1:8080", 5)
    assert set(leader) == LEADER_KEYS
    assert (leader["name"], leader["leader"], leader["value"], leader["ttl"]) == (
        "life/a", "c1", "http://c1:8080", 5)
    assert leader["revision"] == leader["token"] >= 1
    assert 4.5 < leader["expires_in"] <= 5
    for node in cluster.members:
        status, _, got = http("GET", url(cluster, node, "life/a"))
        assert status == 200 and set(got) == LEADER_KEYS, got
        assert (got["leader"], got["value"], got["token"]) == ("c1", "http://c1:8080",
                                                               leader["token"])  # fmt: skip

    status, _, proclaimed = act(cluster, primary, "life/a", "proclaim",
                                {"candidate": "c1", "token": leader["token"], "value": "v2"})
    assert status == 200, proclaimed
    assert set(proclaimed) == LEADER_KEYS
    assert (proclaimed["leader"], proclaimed["value"], proclaimed["token"]) == (
        "c1", "v2", leader["token"]), "a proclaim changes the value, not the grant"
    assert proclaimed["revision"] > leader["revision"]

    status, _, renewed = act(cluster, follower, "life/a", "renew",
                             {"candidate": "c1", "token": leader["token"]})  # fmt: skip
    assert status == 200, renewed
    assert set(renewed) == LEADER_KEYS
    assert (renewed["leader"], renewed["value"], renewed["token"], renewed["revision"]) == (
        "c1", "v2", leader["token"], proclaimed["revision"])
    assert 4.5 < renewed["expires_in"] <= 5

    status, _, got = http("GET", url(cluster, follower, "life/a"))
    assert status == 200 and (got["value"], got["revision"]) == ("v2", proclaimed["revision"])
    resign(cluster, follower, leader)
    for node in cluster.members:
        status, headers, body = http("GET", url(cluster, node, "life/a"))
        assert status == 404 and body["error"] == "not_found", body
        assert headers["Content-Type"].startswith("application/json")


def test_elections_lists_the_held_names_under_a_prefix_as_leaders(cluster: Any, primary: str
                                                                 ) -> None:  # fmt: skip
    first = elected(cluster, primary, "listed/a", "ca", "va")
    second = elected(cluster, primary, "listed/b", "cb")
    follower = next(node for node in cluster.members if node != primary)
    status, _, body = http("GET", f"{cluster.url(follower)}/v1/elections?prefix=listed/")
    assert status == 200, body
    assert [leader["name"] for leader in body["elections"]] == ["listed/a", "listed/b"]
    assert all(set(leader) == LEADER_KEYS for leader in body["elections"])
    assert body["elections"][0]["leader"] == "ca" and body["elections"][0]["value"] == "va"
    resign(cluster, primary, first)
    resign(cluster, primary, second)
    status, _, body = http("GET", f"{cluster.url(primary)}/v1/elections?prefix=listed/")
    assert (status, body) == (200, {"elections": []})
    status, _, body = http("GET", f"{cluster.url(primary)}/v1/elections?prefix=no%20spaces")
    assert status == 400 and body["error"] == "bad_request", body


def test_a_held_election_is_409_held_and_a_waiting_candidate_wins_on_resign(
    cluster: Any, primary: str
) -> None:
    follower = cluster.followers(primary)[0]
    first = elected(cluster, primary, "contend/a", "c1", "one")
    status, _, body = campaign(cluster, follower, "contend/a", "c2", "two")
    assert status == 409 and body["error"] == "held", body
    assert body["holder"] == "c1" and 0 < body["expires_in"] <= 10
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(campaign, cluster, follower, "contend/a", "c2", "two", 10, wait=10)
        wait_for(lambda: cluster.metric(primary, "paxlock_lease_waiters") == 1, 5.0,
                 "the second candidate to wait")  # fmt: skip
        resign(cluster, primary, first)
        status, _, second = waiting.result(timeout=10)
    assert status == 200, second
    assert (second["leader"], second["value"]) == ("c2", "two")
    assert second["token"] > first["token"]
    resign(cluster, primary, second)


@pytest.mark.parametrize("verb", ["proclaim", "renew", "resign"])
def test_only_the_leader_with_its_token_may_proclaim_renew_or_resign(
    cluster: Any, primary: str, verb: str
) -> None:
    name = f"notholder/{verb}"
    leader = elected(cluster, primary, name, "c1", "v")
    extra = {"value": "hijack"} if verb == "proclaim" else {}
    for body in ({"candidate": "c2", "token": leader["token"]},
                 {"candidate": "c1", "token": leader["token"] + 100}):  # fmt: skip
        status, headers, error = act(cluster, primary, name, verb, {**body, **extra})
        assert status == 409 and error["error"] == "not_holder", error
        assert headers["Content-Type"].startswith("application/json")
    status, _, got = http("GET", url(cluster, primary, name))
    assert (got["leader"], got["value"], got["revision"]) == ("c1", "v", leader["revision"])
    resign(cluster, primary, leader)
    status, _, error = act(cluster, primary, name, verb,
                           {"candidate": "c1", "token": leader["token"], **extra})  # fmt: skip
    assert status == 409 and error["error"] == "not_holder", error


def test_a_retried_campaign_returns_the_first_answer(cluster: Any, primary: str) -> None:
    follower = cluster.followers(primary)[0]
    first = elected(cluster, primary, "idem/a", "c1", "v", request_id="camp-1")
    again = elected(cluster, follower, "idem/a", "c1", "v", request_id="camp-1")
    assert (again["leader"], again["token"], again["revision"]) == (
        "c1", first["token"], first["revision"])
    status, _, body = campaign(cluster, primary, "idem/a", "c1", "v")  # no request id
    assert status == 409 and body["error"] == "held" and body["holder"] == "c1"
    resign(cluster, primary, first)


def test_an_unrenewed_leader_expires(cluster: Any, primary: str) -> None:
    ttl = 1.0
    sent = time.monotonic()
    elected(cluster, primary, "expire/a", "c1", ttl=ttl)
    wait_for(lambda: http("GET", url(cluster, primary, "expire/a"))[0] == 404, ttl + 3,
             "the leader's lease to expire")  # fmt: skip
    assert time.monotonic() - sent >= ttl


# -- observe: long poll --------------------------------------------------------------------


def test_observe_long_poll_answers_once_the_revision_passes_after(cluster: Any, primary: str
                                                                  ) -> None:  # fmt: skip
    follower = cluster.followers(primary)[0]
    leader = elected(cluster, primary, "poll/a", "c1", "v1")
    # after=0: the current state at once, from any node.
    for node in cluster.members:
        status, _, seen = observe(cluster, node, "poll/a", 0, 5)
        assert status == 200, seen
        assert set(seen) == LEADER_KEYS
        assert (seen["leader"], seen["value"]) == ("c1", "v1")
        assert seen["revision"] == leader["revision"]
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(observe, cluster, follower, "poll/a", leader["revision"], 10)
        with pytest.raises(FutureTimeout):  # it waits while nothing changes
            pending.result(timeout=0.5)
        proclaim = {"candidate": "c1", "token": leader["token"], "value": "v2"}
        status, _, proclaimed = act(cluster, primary, "poll/a", "proclaim", proclaim)
        assert status == 200, proclaimed
        status, _, seen = pending.result(timeout=10)
    assert status == 200, seen
    assert seen["revision"] > leader["revision"]
    assert (seen["leader"], seen["value"]) == ("c1", "v2")
    assert seen["revision"] == proclaimed["revision"]
    # A resignation is a change too: the leader is null.
    resign(cluster, primary, leader)
    status, _, seen = observe(cluster, follower, "poll/a", proclaimed["revision"], 10)
    assert status == 200 and seen["leader"] is None and seen["revision"] > proclaimed["revision"]
    assert set(seen) == LEADER_KEYS


def test_observe_long_poll_is_204_on_timeout(cluster: Any, primary: str) -> None:
    leader = elected(cluster, primary, "poll/quiet", "c1", "v")
    for node, name, after in [(primary, "poll/quiet", leader["revision"]),
                              (cluster.followers(primary)[0], "poll/nobody-ever", 0)]:  # fmt: skip
        sent = time.monotonic()
        status, _, body = observe(cluster, node, name, after, 0.4)
        elapsed = time.monotonic() - sent
        assert status == 204 and body is None
        assert 0.4 <= elapsed < 3.0, elapsed
    resign(cluster, primary, leader)


# -- observe: server-sent events -----------------------------------------------------------


@pytest.mark.parametrize("role", ["primary", "follower"])
def test_observe_event_stream_delivers_successive_changes(cluster: Any, primary: str,
                                                          role: str) -> None:  # fmt: skip
    name = f"sse/{role}"
    node = primary if role == "primary" else cluster.followers(primary)[0]
    stream = harness.EventStream(url(cluster, node, name, "observe"))
    try:
        assert stream.status == 200
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        revisions = []

        def expect(leader: str | None, value: str | None) -> dict[str, Any]:
            event = stream.next_event(timeout_s=5.0)
            data = event["data"]
            assert set(data) == LEADER_KEYS and data["name"] == name, data
            assert (data["leader"], data["value"]) == (leader, value), data
            assert int(event["id"]) == data["revision"]
            revisions.append(data["revision"])
            return dict(data)

        # Each change is made only after the previous one was seen: every change is an event.
        first = elected(cluster, primary, name, "c1", "v1")
        assert expect("c1", "v1")["token"] == first["token"]
        status, _, _ = act(cluster, primary, name, "proclaim",
                           {"candidate": "c1", "token": first["token"], "value": "v2"})  # fmt: skip
        assert status == 200
        expect("c1", "v2")
        resign(cluster, primary, first)
        expect(None, None)
        second = elected(cluster, primary, name, "c2", "w1", ttl=1.0)
        assert expect("c2", "w1")["token"] == second["token"]
        expect(None, None)  # its TTL ran out: the expiry is a change as well
        assert revisions == sorted(set(revisions)), revisions
    finally:
        stream.close()


def test_event_stream_resumes_after_last_event_id(cluster: Any, primary: str) -> None:
    leader = elected(cluster, primary, "sse/resume", "c1", "v1")
    proclaim = {"candidate": "c1", "token": leader["token"], "value": "v2"}
    status, _, proclaimed = act(cluster, primary, "sse/resume", "proclaim", proclaim)
    assert status == 200
    follower = cluster.followers(primary)[0]
    stream = harness.EventStream(url(cluster, follower, "sse/resume", "observe"),
                                 headers={"Last-Event-ID": str(leader["revision"])})  # fmt: skip
    try:
        event = stream.next_event(timeout_s=5.0)
        assert int(event["id"]) == proclaimed["revision"] and event["data"]["value"] == "v2"
    finally:
        stream.close()
    # Resuming from the latest revision: nothing until the next change.
    stream = harness.EventStream(url(cluster, follower, "sse/resume", "observe",
                                     f"after={proclaimed['revision']}"))  # fmt: skip
    try:
        resign(cluster, primary, leader)
        event = stream.next_event(timeout_s=5.0)
        assert event["data"]["leader"] is None
        assert int(event["id"]) > proclaimed["revision"]
    finally:
        stream.close()
