"""The backup, restore and disk-replacement procedures of the Operations section, done on a
real cluster exactly as written there (issue 7).

- An online backup of each member (SQLite's backup API on a read-only connection, while the
  member runs) is a consistent database; restoring every member from its own backup brings
  the whole cluster back at that point, leases and fencing tokens included.
- A backup restores only the member it was taken from: any other member refuses it.
- A member whose disk was lost comes back with an empty data dir as a learner, and is
  replaced through the log (remove, add, promote) before it votes again.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

DB_NAME = "paxlock.db"
try_http = sys.modules["paxlock_test_harness"].try_http


def online_backup(db_path: Path, target: Path) -> None:
    """The Operations section's backup command: a consistent copy of a live member's store."""
    source = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    copy = sqlite3.connect(target)
    try:
        source.backup(copy)
    finally:
        copy.close()
        source.close()


def test_every_member_restored_from_its_own_backup_brings_the_cluster_back(
    cluster_factory: Any, http: Any, wait_for: Any, tmp_path: Path
) -> None:
    cluster = cluster_factory(3)
    primary = cluster.wait_ready()
    status, _, kept = http("POST", cluster.url(primary) + "/v1/leases/kept:acquire",
                           {"holder": "alice", "ttl": 600})  # fmt: skip
    assert status == 200, kept
    backups = tmp_path / "backups"
    backups.mkdir()
    wait_for(lambda: all((cluster.metric(n, "paxlock_chosen_index") or 0) >= kept["revision"]
                         for n in cluster.members), 10, "every member has chosen the grant")  # fmt: skip
    for node_id, member in cluster.members.items():
        online_backup(member.data_dir / DB_NAME, backups / f"{node_id}.db")
        with sqlite3.connect(backups / f"{node_id}.db") as check:
            assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    # A backup belongs to its member: started under another id, it is refused.
    foreign = tmp_path / "n1-as-n2"
    foreign.mkdir()
    online_backup(cluster.members["n1"].data_dir / DB_NAME, foreign / DB_NAME)
    refused = subprocess.run(
        [sys.executable, "-m", "paxlock.api.cli", "serve", "--id", "n2", "--listen",
         "127.0.0.1:1", "--data-dir", str(foreign), "--peer", f"n1={cluster.url('n1')}",
         "--peer", f"n3={cluster.url('n3')}"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert refused.returncode == 2 and "belongs to node 'n1'" in refused.stderr, refused.stderr

    status, _, later = http("POST", cluster.url(primary) + "/v1/leases/later:acquire",
                            {"holder": "bob", "ttl": 600})  # fmt: skip
    assert status == 200, later

    # Disaster: every store is lost. Each member gets its own backup back.
    cluster.stop_all()
    for node_id, member in cluster.members.items():
        for path in member.data_dir.iterdir():
            path.unlink()
        (backups / f"{node_id}.db").rename(member.data_dir / DB_NAME)
    primary = cluster.start_many()
    status, _, lease = http("GET", cluster.url(primary) + "/v1/leases/kept")
    assert status == 200 and lease["holder"] == "alice" and lease["token"] == kept["token"]
    status, _, _ = http("GET", cluster.url(primary) + "/v1/leases/later")
    assert status == 404, "the cluster is back at the time of the backup"
    status, _, fresh = http("POST", cluster.url(primary) + "/v1/leases/fresh:acquire",
                            {"holder": "carol", "ttl": 60})  # fmt: skip
    assert status == 200 and fresh["token"] > kept["token"]


def test_a_member_with_a_new_empty_disk_is_replaced_through_the_log(
        cluster_factory: Any, http: Any, wait_for: Any) -> None:  # fmt: skip
    """Restarted on an empty data dir, the member only waits (``/readyz`` says it is a
    learner); removed, added back and promoted as the Operations section says, it catches
    up and serves what the others hold."""
    cluster = cluster_factory(3)
    primary = cluster.wait_ready()
    for i in range(20):
        status, _, _ = http("POST", cluster.url(primary) + f"/v1/leases/l{i}:acquire",
                            {"holder": "alice", "ttl": 600})  # fmt: skip
        assert status == 200
    lost = cluster.followers(primary)[0]
    cluster.kill(lost, signal.SIGKILL)
    for path in cluster.members[lost].data_dir.iterdir():
        path.unlink()  # the disk is gone
    cluster.start(lost)
    def waits_as_a_learner() -> bool:
        answer = try_http("GET", cluster.url(lost) + "/readyz")
        return answer is not None and str(answer[2].get("reason", "")).startswith("learner")

    wait_for(waits_as_a_learner, 20, f"{lost} to wait as a learner")

    members = cluster.url(primary) + "/v1/members"
    status, _, body = http("DELETE", f"{members}/{lost}")
    assert status == 200, body
    url = cluster.url(lost)

    def done(method: str, path: str, body: Any = None) -> bool:
        status, _, answer = http(method, path, body)
        # 409: the last change is not in effect yet; 503: an election (a loaded machine)
        assert status in (200, 201, 409, 503), answer
        return status in (200, 201)

    wait_for(lambda: done("POST", members, {"id": lost, "url": url}), 20, f"{lost} added")
    wait_for(lambda: done("POST", f"{members}/{lost}:promote"), 30, f"{lost} promoted")
    target = cluster.metric(primary, "paxlock_chosen_index")
    assert target is not None and target >= 20
    wait_for(lambda: (cluster.metric(lost, "paxlock_chosen_index") or 0) >= target, 20,
             "the new member catching up with the primary")  # fmt: skip
    status, _, lease = http("GET", cluster.url(lost) + "/v1/leases/l19?consistent=false")
    assert status == 200 and lease["holder"] == "alice"
