"""The amnesia scenario of issue 13: an empty store must never vote under a member id that
voted before. n3 is down while A acquires ``x`` (only n1 and n2 know the grant); n1 and n2
die; n1's data dir is lost; n1 restarts empty next to n3. B must *not* be granted ``x``
(before member identity it was, with A's fencing token), and n1 stays a learner until it is
added back."""

from __future__ import annotations

import shutil
import sys
import time
from typing import Any

import pytest

harness = sys.modules["paxlock_test_harness"]
wait_for, try_http = harness.wait_for, harness.try_http
WATCH_S = 5.0
"""How long B keeps trying: far beyond an election timeout and a bootstrap."""


def test_an_empty_store_never_votes_under_a_member_id_that_voted(cluster: Any) -> None:
    cluster.wait_ready()
    cluster.kill("n3")
    granted: list[dict[str, Any]] = []

    def acquired() -> bool:  # n3 may have been the primary: retried until n1 and n2 serve
        answer = try_http("POST", cluster.url("n1") + "/v1/leases/x:acquire",
                          {"holder": "A", "ttl": 120, "request_id": "a-1"})  # fmt: skip
        if answer is not None and answer[0] == 200:
            granted.append(answer[2])
        return bool(granted)

    wait_for(acquired, 20.0, "A's grant by n1 and n2")
    lease = granted[0]
    cluster.kill("n1")
    cluster.kill("n2")
    shutil.rmtree(cluster.members["n1"].data_dir)
    cluster.start("n3")
    cluster.start("n1")
    wait_for(lambda: "starts as a learner" in cluster.members["n1"].log_path.read_text(),
             20.0, "n1 to say it is a learner")  # fmt: skip

    deadline = time.monotonic() + WATCH_S
    while time.monotonic() < deadline:
        for node in ("n1", "n3"):
            answer = try_http("POST", cluster.url(node) + "/v1/leases/x:acquire",
                              {"holder": "B", "ttl": 10}, timeout_s=1.0)  # fmt: skip
            assert answer is None or answer[0] != 200, (
                f"B was granted x by {node} (A holds token {lease['token']}): {answer}")
        time.sleep(0.1)  # pacing B's retries, not synchronisation
    status, _, body = harness.http("GET", cluster.url("n1") + "/readyz")
    assert status == 503 and body["reason"].startswith("learner"), body

    cluster.start("n2")  # n2 remembers the grant: the cluster serves again, A still holds x
    wait_for(lambda: (try_http("GET", cluster.url("n2") + "/v1/leases/x") or [0])[0] == 200,
             20.0, "n2 and n3 to serve")  # fmt: skip
    _, _, current = harness.http("GET", cluster.url("n2") + "/v1/leases/x")
    assert (current["holder"], current["token"]) == ("A", lease["token"])
