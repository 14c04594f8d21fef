"""A follower relays lease requests to the primary over the peer link (``coordinator.relay``),
not as a second HTTP request: real processes; what the client sees is the primary's answer,
and no HTTP request for it ever reaches the primary."""

from __future__ import annotations

import socket
import sys
from typing import Any

import msgspec
import pytest

from paxlock.api.server.peer import decode_batch, encode_batch
from paxlock.coordinator.core.keeper_effects import Reply, RequestKey, TooMany, Unavailable
from paxlock.coordinator.core.lease_commands import Acquire, Lease, Proclaim, Refused, Release
from paxlock.coordinator.core.replica_io import AcquireOp, ProclaimOp, ReleaseOp, RenewOp
from paxlock.coordinator.relay import (
    RELAYED, RelayRenew, relayed, reply_message, reply_of, request_message, request_op,
)  # fmt: skip

harness = sys.modules["paxlock_test_harness"]
ACQUIRE = 'method="POST",route="/v1/leases/{name}:acquire",status="200"'


def http_count(cluster: Any, node: str, labels: str) -> float:
    return cluster.metric(node, "paxlock_http_requests_total", "{" + labels + "}") or 0.0


def test_every_lease_operation_is_relayed_and_answered_as_the_primary_would(
    cluster: Any, http: Any,
) -> None:
    primary = cluster.wait_ready()
    follower = cluster.followers(primary)[0]
    base = cluster.url(follower) + "/v1"
    status, headers, lease = http("POST", f"{base}/leases/relay/a:acquire",
                                  {"holder": "alice", "ttl": 30})  # fmt: skip
    assert status == 200 and lease["holder"] == "alice", lease
    assert headers["X-Paxlock-Node"] == follower and headers["X-Paxlock-Primary"] == primary
    assert 29 <= lease["expires_in"] <= 30  # the primary's timer, relayed back
    status, _, refused = http("POST", f"{base}/leases/relay/a:acquire",
                              {"holder": "bob", "ttl": 30})  # fmt: skip
    assert status == 409 and refused["error"] == "held", refused
    assert refused["holder"] == "alice" and 28 <= refused["expires_in"] <= 30, refused
    status, _, renewed = http("POST", f"{base}/leases/relay/a:renew",
                              {"holder": "alice", "token": lease["token"]})  # fmt: skip
    assert status == 200 and renewed["token"] == lease["token"], renewed
    status, _, body = http("POST", f"{base}/leases/relay/a:release",
                           {"holder": "alice", "token": lease["token"]})  # fmt: skip
    assert (status, body) == (200, {"released": True})
    status, _, leader = http("POST", f"{base}/elections/relay/e:campaign",
                             {"candidate": "c1", "value": "v1", "ttl": 30})  # fmt: skip
    assert status == 200 and leader["value"] == "v1", leader
    status, _, leader = http("POST", f"{base}/elections/relay/e:proclaim",
                             {"candidate": "c1", "token": leader["token"], "value": "v2"})  # fmt: skip
    assert status == 200 and leader["value"] == "v2", leader
    status, _, wrong = http("POST", f"{base}/leases/relay/a:release",
                            {"holder": "alice", "token": 10**9})  # fmt: skip
    assert status in (404, 409) and wrong["error"] in ("not_found", "not_holder"), wrong

    relayed_ok = cluster.metric(follower, "paxlock_http_forwarded_total", '{outcome="ok"}')
    assert relayed_ok is not None and relayed_ok >= 7
    assert http_count(cluster, primary, ACQUIRE) == 0  # none came to it by HTTP


def test_a_waiter_relayed_by_a_follower_leaves_the_queue_when_its_client_goes(
    cluster: Any, http: Any, wait_for: Any,
) -> None:
    """The client of a parked acquire hangs up: the follower sends a cancel, and the
    primary takes the waiter out of the queue (it would otherwise be granted a lease that
    nobody will ever renew or release)."""
    primary = cluster.wait_ready()
    follower = cluster.followers(primary)[0]
    url = cluster.url(follower) + "/v1/leases/relay/parked"
    status, _, held = http("POST", url + ":acquire", {"holder": "a", "ttl": 30})
    assert status == 200
    port = int(cluster.url(follower).rsplit(":", 1)[1])
    body = b'{"holder": "b", "ttl": 30, "wait": 60}'
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(b"POST /v1/leases/relay/parked:acquire HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                     % (len(body), body))  # fmt: skip
        wait_for(lambda: cluster.metric(primary, "paxlock_lease_waiters") == 1, 10,
                 "the relayed waiter parked at the primary")  # fmt: skip
    wait_for(lambda: cluster.metric(primary, "paxlock_lease_waiters") == 0, 10,
             "the waiter gone from the primary's queue")  # fmt: skip
    status, _, _ = http("POST", url + ":release", {"holder": "a", "token": held["token"]})
    assert status == 200
    status, _, lease = http("GET", cluster.url(primary) + "/v1/leases/relay/parked")
    assert status == 404, lease  # nobody was granted it


def test_relay_messages_cross_the_wire_whole_and_bounded() -> None:
    """Every relayed operation and outcome survives the peer frame codec; a forged field
    beyond its bound fails the frame (``decode_batch``), as any other peer message."""
    ops = [
        AcquireOp(Acquire("x", "h", 5.0, "v", 0.0, "r1", "p"), 2.5),
        RenewOp("x", "h", 7, "p"),
        ReleaseOp(Release("x", "h", 7, "r2", "p")),
        ProclaimOp(Proclaim("x", "h", 7, "v2", "r3", "p")),
    ]
    for seq, op in enumerate(ops, 1):
        assert relayed(op)
        message = request_message(seq, op)
        assert message is not None
        (decoded,) = decode_batch(encode_batch([message]))
        assert decoded == message and request_op(decoded) == op  # type: ignore[arg-type]
    lease = Lease("x", "h", 7, 3, 5.0, None, 0.0)
    for reply in (Reply(RequestKey(4), lease, 4.5),
                  Reply(RequestKey(4), Refused("held", "x", "h", 7)),
                  Reply(RequestKey(4), TooMany("holds", "too many")),
                  Reply(RequestKey(4), Unavailable("stepping down"))):  # fmt: skip
        (decoded,) = decode_batch(encode_batch([reply_message(9, reply)]))
        back = reply_of(decoded)  # type: ignore[arg-type]
        assert back.to == RELAYED and back.outcome == reply.outcome
        assert back.expires_in_s == reply.expires_in_s
    forged = encode_batch([RelayRenew(1, "x" * 5000, "h", 1)])
    with pytest.raises(msgspec.ValidationError, match="length"):
        decode_batch(forged)
