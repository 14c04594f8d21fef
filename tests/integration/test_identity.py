"""Member identity and bootstrap on real processes (issue 13, items 1 and 2): a fresh cluster
makes one cluster id, kept across restarts; a member of another cluster, a forged cluster id
and an unknown incarnation are refused and counted; ``--initial-cluster-state new`` next to
a bootstrapped cluster refuses to start; an empty store next to one starts as a learner."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

from paxlock.api.server.peer import (
    CLUSTER_HEADER, INCARNATION_HEADER, NODE_HEADER, WS_PATH,
)  # fmt: skip

harness = sys.modules["paxlock_test_harness"]
wait_for, http = harness.wait_for, harness.http
DEADLINE_S = 20.0


def identity(cluster: Any, node: str) -> dict[str, Any]:
    status, _, body = http("GET", cluster.url(node) + "/internal/identity")
    assert status == 200, body
    result: dict[str, Any] = body
    return result


def refused(cluster: Any, node: str, reason: str) -> float:
    return cluster.metric(node, "paxlock_peer_refused_total", f'{{reason="{reason}"}}') or 0.0


async def _handshake(url: str, headers: dict[str, str]) -> int | None:
    async with aiohttp.ClientSession() as session:
        try:
            async with session.ws_connect(url + WS_PATH, headers=headers):
                return None
        except aiohttp.WSServerHandshakeError as error:
            return error.status


def handshake(url: str, member: str, cluster_id: str, incarnation: str) -> int | None:
    """A peer WebSocket handshake naming these; its refusal status, or None if accepted."""
    return asyncio.run(_handshake(url, {NODE_HEADER: member, CLUSTER_HEADER: cluster_id,
                                        INCARNATION_HEADER: incarnation}))  # fmt: skip


def test_a_fresh_cluster_makes_one_cluster_id_and_keeps_it(cluster: Any) -> None:
    ids = {node: identity(cluster, node) for node in cluster.members}
    (cluster_id,) = {i["cluster_id"] for i in ids.values()}
    assert re.fullmatch(r"[0-9a-f]{32}", cluster_id), "a digest, not a default name"
    assert len({i["incarnation"] for i in ids.values()}) == 3
    assert {i["member"]: i["members"] for i in ids.values()} == {
        node: {m: cluster.url(m) for m in cluster.members} for node in cluster.members
    }  # fmt: skip
    assert all(i["genesis"] == ids["n1"]["genesis"] for i in ids.values())
    assert cluster.cluster_view("n1")["role"] == "voter"

    cluster.restart_all()
    again = {node: identity(cluster, node) for node in cluster.members}
    assert {n: (i["cluster_id"], i["incarnation"]) for n, i in again.items()} == {
        n: (cluster_id, i["incarnation"]) for n, i in ids.items()
    }, "a restart keeps the cluster id and every incarnation"  # fmt: skip

    # A forged cluster id, and an incarnation no configuration lists: refused and counted.
    n2 = ids["n2"]["incarnation"]
    assert handshake(cluster.url("n1"), "n2", "0" * 32, n2) == 403
    assert refused(cluster, "n1", "unknown_cluster") >= 1
    assert handshake(cluster.url("n1"), "n2", cluster_id, "f" * 32) == 403
    assert refused(cluster, "n1", "unknown_incarnation") >= 1
    assert handshake(cluster.url("n1"), "n2", cluster_id, n2) is None, "the real one is not"


def test_a_member_of_another_cluster_is_refused_and_counted(
    cluster: Any, tmp_path: Path,
) -> None:
    """n3 restarts on the data dir of a one-member cluster of its own (the same member id,
    another cluster): it runs, since its store is bootstrapped, but every connection between
    it and n1, n2 is refused for the cluster id, and counted."""
    n3 = cluster.members["n3"]
    cluster.kill("n3")
    foreign_dir = tmp_path / "n3-foreign"
    alone = subprocess.Popen([sys.executable, "-m", "paxlock.api.cli", "serve", "--id", "n3",
                              "--listen", f"127.0.0.1:{n3.port}", "--data-dir", str(foreign_dir)],
                             stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_for(lambda: (harness.try_http("GET", n3.url + "/readyz") or [0])[0] == 200,
                 DEADLINE_S, "n3 ready as a cluster of its own")  # fmt: skip
    finally:
        alone.terminate()
        alone.wait(timeout=15)
    n3.data_dir = foreign_dir
    cluster.start("n3")
    wait_for(lambda: refused(cluster, "n3", "unknown_cluster") > 0, DEADLINE_S,
             "n3 to refuse n1 and n2, members of another cluster")  # fmt: skip
    assert identity(cluster, "n3")["cluster_id"] != identity(cluster, "n1")["cluster_id"]

    def n1_and_n2_serve() -> bool:
        views = [cluster.cluster_view(n) or {} for n in ("n1", "n2")]
        return views[0].get("primary") in ("n1", "n2") and (
            views[0]["primary"] == views[1].get("primary"))

    wait_for(n1_and_n2_serve, DEADLINE_S, "n1 and n2 to agree on a primary among them")


def test_new_next_to_a_bootstrapped_cluster_refuses_to_start(cluster: Any) -> None:
    cluster_id = identity(cluster, "n1")["cluster_id"]
    cluster.kill("n3")
    n3 = cluster.members["n3"]
    n3.data_dir = n3.data_dir.with_name("n3-empty")
    done = subprocess.run([*cluster.command("n3"), "--initial-cluster-state", "new"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert re.fullmatch(rf"paxlock serve: cluster already bootstrapped \(member n[12] reports "
                        rf"cluster id {cluster_id}\); start with --initial-cluster-state "
                        rf"existing or --join", last), last  # fmt: skip


def test_an_empty_store_next_to_a_bootstrapped_cluster_is_a_learner(cluster: Any) -> None:
    cluster_id = identity(cluster, "n1")["cluster_id"]
    cluster.kill("n3")
    n3 = cluster.members["n3"]
    n3.data_dir = n3.data_dir.with_name("n3-empty")
    cluster.start("n3")

    def learner_line() -> dict[str, Any] | None:
        for line in n3.log_path.read_text(errors="replace").splitlines():
            if '"event": "learner"' in line:
                found: dict[str, Any] = json.loads(line)
                return found
        return None

    line = wait_for(learner_line, DEADLINE_S, "n3 to say it is a learner")
    assert line["message"] == (
        f"n3 starts as a learner: its store is empty and cluster {cluster_id} exists; it "
        f"votes only after `paxlock member add` and `promote`")  # fmt: skip
    status, _, body = http("GET", cluster.url("n3") + "/readyz")
    assert (status, body["reason"]) == (
        503, "learner: not admitted by any configuration (paxlock member add)")
    assert cluster.cluster_view("n3")["role"] == "learner"
    assert identity(cluster, "n3")["cluster_id"] == cluster_id
