"""``paxlock member`` on real processes (issue 13, item 4): the list of a running 3-member
cluster, and a fourth member started with ``paxlock serve --join``, added as a learner,
promoted once caught up, and removed — with the refusals an operator meets on the way (a URL
that answers as another member, a URL where nobody answers, a promotion of a voter, the
removal of a member that is not there).

Every wait is a condition under a deadline; every process belongs to the harness's
``Cluster`` and is stopped when the test ends.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any



harness = sys.modules["paxlock_test_harness"]  # registered by tests/conftest.py
wait_for = harness.wait_for

DEADLINE_S = 20.0


def member_command(cluster: Any, *args: str, retry_deadline_s: float = 5.0
                   ) -> subprocess.CompletedProcess[str]:  # fmt: skip
    env = dict(os.environ)
    env["PAXLOCK_ENDPOINTS"] = ",".join(cluster.url(n) for n in ("n1", "n2", "n3"))
    return subprocess.run([sys.executable, "-m", "paxlock.api.cli", "member", *args,
                           "--retry-deadline", str(retry_deadline_s)],
                          capture_output=True, text=True, timeout=60, env=env)  # fmt: skip


def members(cluster: Any) -> dict[str, Any]:
    done = member_command(cluster, "list", "--json")
    assert done.returncode == 0, done.stderr
    listing: dict[str, Any] = json.loads(done.stdout)
    return listing


def by_id(listing: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["id"]: m for m in listing["members"]}


def test_member_list_shows_the_three_voters_and_the_primary(cluster: Any) -> None:
    primary = cluster.wait_ready()
    listing = members(cluster)
    assert isinstance(listing["cluster_id"], str) and listing["cluster_id"]
    assert listing["pending"] is None
    rows = by_id(listing)
    assert sorted(rows) == ["n1", "n2", "n3"]
    for node, row in rows.items():
        assert (row["role"], row["url"]) == ("voter", cluster.url(node))
        assert row["primary"] is (node == primary)
        assert isinstance(row["incarnation"], str) and row["incarnation"]
    assert len({row["incarnation"] for row in rows.values()}) == 3, "one incarnation each"
    wait_for(lambda: all(r["reachable"] and r["lag"] == 0 for r in by_id(members(cluster))
                         .values()), DEADLINE_S, "every member reachable and caught up")

    table = member_command(cluster, "list")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].startswith(f"cluster {listing['cluster_id']}")
    assert lines[1].split() == ["ID", "ROLE", "URL", "PRIMARY", "REACHABLE", "LAG"]
    assert {line.split()[0]: line.split()[3] for line in lines[2:5]} == {
        n: "yes" if n == primary else "no" for n in ("n1", "n2", "n3")}  # fmt: skip


def start_joiner(cluster: Any, node: str, join: str) -> Any:
    """A new member on an empty data dir, started with ``--join``; the harness stops it."""
    me = harness.Member(node, harness.free_port(), cluster.root / node,
                        cluster.root / f"{node}.log")  # fmt: skip
    cluster.members[node] = me
    command = [sys.executable, "-m", "paxlock.api.cli", "serve", "--id", node, "--listen",
               f"127.0.0.1:{me.port}", "--data-dir", str(me.data_dir), "--join", join,
               *cluster.extra_args]  # fmt: skip
    with open(me.log_path, "ab") as log:
        me.process = subprocess.Popen(command, stdout=log, stderr=log,
                                      env=dict(os.environ, PYTHONUNBUFFERED="1"))  # fmt: skip
    wait_for(lambda: harness.try_http("GET", me.url + "/healthz") is not None, DEADLINE_S,
             f"{node} to answer")  # fmt: skip
    return me


def test_a_joined_member_is_added_caught_up_promoted_and_removed(cluster: Any) -> None:
    primary = cluster.wait_ready()
    n4 = start_joiner(cluster, "n4", cluster.url(primary))

    wrong = member_command(cluster, "add", "n5", n4.url)
    assert wrong.returncode == 1 and "answers as member 'n4'" in wrong.stderr, wrong.stderr
    nobody = member_command(cluster, "add", "n4", f"http://127.0.0.1:{harness.free_port()}",
                            retry_deadline_s=1.0)  # fmt: skip
    assert nobody.returncode == 4 and "cannot learn who answers" in nobody.stderr, nobody.stderr
    assert "n4" not in by_id(members(cluster)), "a refused add changes nothing"

    added = member_command(cluster, "add", "n4", n4.url, "--json")
    assert added.returncode == 0, added.stderr
    assert [m["id"] for m in json.loads(added.stdout)["learners"]] == ["n4"]
    again = member_command(cluster, "add", "n4", n4.url)
    assert again.returncode == 1 and "already a member" in again.stderr, again.stderr

    def caught_up() -> bool:
        row = by_id(members(cluster)).get("n4")
        return row is not None and row["role"] == "learner" and row["lag"] is not None \
            and row["lag"] <= 2  # fmt: skip

    wait_for(caught_up, DEADLINE_S, "n4 to catch up as a learner")
    voter = member_command(cluster, "promote", "n1")
    assert voter.returncode == 1 and "voter already" in voter.stderr, voter.stderr

    def promoted() -> bool:
        done = member_command(cluster, "promote", "n4")
        assert done.returncode in (0, 1), done.stderr
        return done.returncode == 0

    wait_for(promoted, DEADLINE_S, "the promotion of n4", interval_s=0.5)
    wait_for(lambda: by_id(members(cluster)).get("n4", {}).get("role") == "voter", DEADLINE_S,
             "n4 a voter")  # fmt: skip
    status, _, _ = harness.http("POST", cluster.url(primary) + "/v1/leases/m:acquire",
                                {"holder": "a", "ttl": 30})  # fmt: skip
    assert status == 200, "the cluster of 4 voters serves"

    def removed() -> bool:
        done = member_command(cluster, "remove", "n4")
        assert done.returncode in (0, 1), done.stderr
        return done.returncode == 0

    wait_for(removed, DEADLINE_S, "the removal of n4", interval_s=0.5)
    wait_for(lambda: "n4" not in by_id(members(cluster)), DEADLINE_S, "n4 gone from the list")
    gone = member_command(cluster, "remove", "n4")
    assert gone.returncode == 1 and "not a member" in gone.stderr, gone.stderr
