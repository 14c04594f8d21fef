"""A real 3-node cluster of ``paxlock serve`` processes takes a lease on any node."""

from __future__ import annotations

from typing import Any


def test_acquire_on_any_node_is_forwarded_to_the_primary(cluster: Any, http: Any) -> None:
    primary = cluster.wait_ready()
    follower = next(n for n in cluster.members if n != primary)
    status, headers, lease = http("POST", cluster.url(follower) + "/v1/leases/smoke:acquire",
                                  {"holder": "alice", "ttl": 10})  # fmt: skip
    assert status == 200, lease
    assert headers["X-Paxlock-Node"] == follower and headers["X-Paxlock-Primary"] == primary
    assert lease["holder"] == "alice" and lease["token"] >= 1
    status, _, body = http("POST", cluster.url(primary) + "/v1/leases/smoke:acquire",
                           {"holder": "bob", "ttl": 10})  # fmt: skip
    assert status == 409 and body["error"] == "held" and body["holder"] == "alice"
