"""A follower that cannot reach the primary it forwards to answers 503 with a sentence that
names the primary, its URL and what went wrong — never a Python repr such as
``ClientConnectorError(ConnectionKey(...`` (issue 11 item 7). A real cluster whose election
timeout (8 s) well outlasts the forwarding timeout (5 s), so the followers still name the old
primary while it is frozen (SIGSTOP) and right after it is killed."""

from __future__ import annotations

import sys
from typing import Any

harness = sys.modules["paxlock_test_harness"]
ELECTION_TIMEOUT_S = 8


def forwarded_503(cluster: Any, follower: str, primary: str, name: str) -> str:
    status, headers, body = harness.http(
        "POST", cluster.url(follower) + f"/v1/leases/{name}:acquire",
        {"holder": "h", "ttl": 5}, timeout_s=30,
    )  # fmt: skip
    assert status == 503 and body["error"] == "unavailable", (status, body)
    assert headers["X-Paxlock-Primary"] == primary and headers["Retry-After"]
    message: str = body["message"]
    assert message.startswith(f"the primary {primary} at {cluster.url(primary)} did not answer")
    assert "Error(" not in message and "ConnectionKey" not in message, message
    return message


def test_a_forwarding_follower_says_in_a_sentence_why_the_primary_did_not_answer(
    cluster_factory: Any,
) -> None:
    cluster = cluster_factory(3, ["--election-timeout", str(ELECTION_TIMEOUT_S)])
    primary = cluster.wait_ready(timeout_s=4 * ELECTION_TIMEOUT_S)
    follower = cluster.followers(primary)[0]

    cluster.pause(primary)  # frozen: the connection opens, no answer comes
    try:
        message = forwarded_503(cluster, follower, primary, "forward/frozen")
    finally:
        cluster.resume(primary)
    assert message.endswith("within 5 s"), message

    cluster.kill(primary)  # gone: the connection is refused
    message = forwarded_503(cluster, follower, primary, "forward/killed")
    assert message.endswith("connection refused"), message
