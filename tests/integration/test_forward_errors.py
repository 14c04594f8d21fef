"""A follower that cannot reach the primary it relays to answers 503 with a sentence that
names the primary, its URL and what went wrong — never a Python repr such as
``ClientConnectorError(ConnectionKey(...`` (issue 11 item 7). A real cluster; each request
reaches a follower well within the election timeout (2 s) of the primary's last heartbeat, so
the follower still names that primary and forwards to it."""

from __future__ import annotations

import sys
from typing import Any

harness = sys.modules["paxlock_test_harness"]
ELECTION_TIMEOUT_S = 2
FORWARD_TIMEOUT_S = 5
"""A forwarded acquire without ``wait`` gets this long (``app.FORWARD_MARGIN_S``)."""


def forwarded_503(cluster: Any, follower: str, primary: str, name: str) -> str:
    status, headers, body = harness.http(
        "POST", cluster.url(follower) + f"/v1/leases/{name}:acquire",
        {"holder": "h", "ttl": 5}, timeout_s=30,
    )  # fmt: skip
    assert status == 503 and body["error"] == "unavailable", (status, body)
    assert headers["Retry-After"]  # (X-Paxlock-Primary names the primary known by now)
    message: str = body["message"]
    assert message.startswith(f"the primary {primary} at {cluster.url(primary)} did not answer")
    assert "Error(" not in message and "ConnectionKey" not in message, message
    return message


def test_a_forwarding_follower_says_in_a_sentence_why_the_primary_did_not_answer(
    cluster_factory: Any,
) -> None:
    cluster = cluster_factory(3, ["--election-timeout", str(ELECTION_TIMEOUT_S)])
    primary = cluster.wait_ready()
    follower = cluster.followers(primary)[0]

    # Frozen: the request is relayed over the peer link, no answer comes. It fails when the
    # others elect a new primary (the follower gives up on the old one then), or after the
    # forwarding timeout, whichever comes first.
    cluster.pause(primary)
    try:
        message = forwarded_503(cluster, follower, primary, "forward/frozen")
    finally:
        cluster.resume(primary)
    assert message.endswith(f"within {FORWARD_TIMEOUT_S} s") or (
        ": it is not the primary any more (" in message), message

    # Gone: the peer link closed, and the connection is refused when it is dialled again.
    primary = cluster.wait_ready()
    follower = cluster.followers(primary)[0]
    cluster.kill(primary)
    message = forwarded_503(cluster, follower, primary, "forward/killed")
    assert message.endswith(("connection refused", "it closed the connection")), message
