"""Snapshots on a real cluster: the log is compacted every few slots, a member that was down
across compactions catches up by snapshot transfer, and restarts load the snapshot."""

from __future__ import annotations

import sqlite3
from typing import Any


def chosen_index(cluster: Any, node_id: str) -> int:
    view = cluster.cluster_view(node_id)
    return -1 if view is None else int(view["chosen_index"])


def test_a_member_behind_the_compaction_point_catches_up_by_snapshot(
    cluster_factory: Any, http: Any, wait_for: Any,
) -> None:
    cluster = cluster_factory(3, ["--snapshot-every", "10"])
    primary = cluster.wait_ready()
    lagging = next(n for n in cluster.members if n != primary)
    cluster.kill(lagging)
    url = cluster.url(primary)
    for i in range(40):  # about 80 slots: several compactions while `lagging` is down
        status, _, lease = http("POST", f"{url}/v1/leases/snap/{i}:acquire",
                                {"holder": "h", "ttl": 60})  # fmt: skip
        assert status == 200, lease
        if i % 2:
            status, _, _ = http("POST", f"{url}/v1/leases/snap/{i}:release",
                                {"holder": "h", "token": lease["token"]})  # fmt: skip
            assert status == 200
    db = sqlite3.connect(f"file:{cluster.members[primary].data_dir / 'paxlock.db'}?mode=ro",
                         uri=True)  # fmt: skip
    try:
        (lowest,) = db.execute("SELECT MIN(slot) FROM chosen").fetchone()
    finally:
        db.close()
    assert lowest is None or lowest > 10, "the primary's log was compacted"
    cluster.start(lagging)
    target = chosen_index(cluster, primary)
    wait_for(lambda: chosen_index(cluster, lagging) >= target, 20, f"{lagging} to catch up")
    status, _, lease = http("GET", cluster.url(lagging) + "/v1/leases/snap/38?consistent=false")
    assert status == 200 and lease["holder"] == "h"
    status, _, _ = http("GET", cluster.url(lagging) + "/v1/leases/snap/39?consistent=false")
    assert status == 404
    # and a full restart rebuilds every member from its snapshot plus the rest of its log
    tokens = {i: http("GET", f"{url}/v1/leases/snap/{i}")[2]["token"] for i in range(0, 40, 2)}
    for node_id in cluster.members:
        cluster.kill(node_id)
    for node_id in cluster.members:
        cluster.start(node_id)
    new_primary = cluster.wait_ready()
    for i, token in tokens.items():
        status, _, lease = http("GET", f"{cluster.url(new_primary)}/v1/leases/snap/{i}")
        assert status == 200 and lease["token"] == token
