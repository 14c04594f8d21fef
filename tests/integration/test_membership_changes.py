"""Membership changes on real processes under load and failures (issue 13): a cluster grown
3 -> 5 and shrunk back while clients acquire and release; a SIGKILLed member replaced by a
fresh store under its id while leases are renewed; a removed member that comes back refused;
a learner never counted in a quorum; a change made while another member is down.

Steps go through ``tests/membership_ops.py`` (the HTTP API, retried while the cluster says
"not now", ended by a condition on ``GET /v1/members``). Every wait is a condition under a
deadline; every process belongs to the harness's ``Cluster`` and is stopped when the test ends.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

harness = sys.modules["paxlock_test_harness"]  # registered by tests/conftest.py
wait_for, try_http = harness.wait_for, harness.try_http


ops = harness.load_module("paxlock_membership_ops",
                          Path(__file__).resolve().parent.parent / "membership_ops.py")
WATCH_S = 3.0
"""How long a test watches for something that must not happen: ten election timeouts
(0.3 s) and more."""


def test_grow_to_five_and_shrink_to_three_under_load(cluster: Any) -> None:
    """3 -> 5 by two adds and promotions, 5 -> 3 by removing a joined member and then the
    primary itself, while four clients contend for three names through every endpoint."""
    cluster.wait_ready()
    with ops.Ledger(lambda: ops.endpoints(cluster)) as ledger:
        wait_for(lambda: ledger.count() >= 5, 10, "the load to run")
        steps = [("grow", "n4"), ("grow", "n5"), ("remove", "n4"), ("remove", "primary")]
        for number, (kind, node) in enumerate(steps):
            before = ledger.count()
            if kind == "grow":
                ops.grow(cluster, node)
            else:
                node = ops.primary_id(cluster) if node == "primary" else node
                ops.remove(cluster, node)
                cluster.kill(node, signal.SIGTERM)
            ops.serves(cluster, f"grow/probe{number}")
            wait_for(lambda: ledger.count() > before + 2, 10, f"grants after {kind} {node}")
        voters = ops.roles(cluster)
        assert len(voters) == 3 and set(voters.values()) == {"voter"}, voters
        assert {"n4", node}.isdisjoint(voters), voters
    assert not ledger.errors, ledger.errors[:5]
    assert ledger.overlaps() == []
    assert ledger.count() > 20


class Renewals:
    """Holders renewing their leases every ``every_s`` through the running members in turn,
    until stopped. A renewal without an answer (or a 503) is tried again; any other answer
    than 200 with the same token means the lease was lost, and is kept in ``lost``."""

    def __init__(self, cluster: Any, leases: list[dict[str, Any]], every_s: float = 0.2) -> None:
        self.cluster = cluster
        self.leases = leases
        self.every_s = every_s
        self.renewed_at = {lease["name"]: time.monotonic() for lease in leases}
        self.gap_s_max = 0.0
        self.count = 0
        self.lost: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Renewals:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)

    def _run(self) -> None:
        turn = 0
        while not self.stop.wait(self.every_s):  # pacing the renewals, not synchronisation
            for lease in self.leases:
                turn += 1
                urls = ops.endpoints(self.cluster)
                url = urls[turn % len(urls)]
                body = {"holder": lease["holder"], "token": lease["token"]}
                answer = try_http("POST", f"{url}/v1/leases/{lease['name']}:renew", body, 1.0)
                if answer is None or answer[0] in (502, 503, 504):
                    continue
                if answer[0] != 200 or answer[2]["token"] != lease["token"]:
                    self.lost.append(f"{lease['name']} via {url}: {answer[0]} {answer[2]}")
                    continue
                now = time.monotonic()
                self.gap_s_max = max(self.gap_s_max, now - self.renewed_at[lease["name"]])
                self.renewed_at[lease["name"]] = now
                self.count += 1


def incarnation(cluster: Any, asked: str, node: str) -> str | None:
    view = ops.members_view(cluster.url(asked)) or {"members": []}
    return {m["id"]: m["incarnation"] for m in view["members"]}.get(node)


def test_a_killed_member_is_replaced_under_its_id_while_leases_are_renewed(cluster: Any) -> None:
    """etcd's member replacement: a follower dies (SIGKILL), is removed, and comes back under
    its id on an empty data dir and its old URL (a new incarnation), is added, caught up and
    promoted. Holders renew throughout and never lose a lease; the new incarnation votes."""
    primary = cluster.wait_ready()
    ttl_s = 3.0
    leases = [harness.http("POST", f"{cluster.url(primary)}/v1/leases/held/{i}:acquire",
                           {"holder": f"h{i}", "ttl": ttl_s})[2] for i in range(2)]  # fmt: skip
    assert all("token" in lease for lease in leases), leases
    victim, other = cluster.followers(primary)
    old = incarnation(cluster, primary, victim)
    with Renewals(cluster, leases) as renewals:
        cluster.kill(victim)
        ops.remove(cluster, victim)
        port = cluster.members[victim].port
        ops.grow(cluster, victim, port=port)
        assert incarnation(cluster, primary, victim) not in (None, old)
        count = renewals.count
        cluster.kill(other)  # the primary and the new incarnation are the only quorum now
        ops.serves(cluster, "replaced/probe")
        wait_for(lambda: renewals.count > count + 4, 10, "renewals with the new quorum")
    assert renewals.lost == []
    assert renewals.gap_s_max < ttl_s, renewals.gap_s_max
    for lease in leases:
        _, _, now = harness.http("GET", f"{cluster.url(primary)}/v1/leases/{lease['name']}")
        assert (now["holder"], now["token"]) == (lease["holder"], lease["token"])


def refused(cluster: Any, nodes: list[str]) -> float:
    """Peer handshakes these members refused as from no member incarnation they know."""
    return sum(cluster.metric(node, "paxlock_peer_refused_total", f'{{reason="{reason}"}}') or 0
               for node in nodes for reason in ("unknown_incarnation", "not_member"))  # fmt: skip


def test_a_removed_member_that_comes_back_is_refused(cluster: Any) -> None:
    """A follower is stopped and removed, then started again on its old data dir (which
    still lists it as a voter): the others refuse its peer connections, it never becomes
    primary nor ready, no configuration lists it again, and the others keep serving."""
    primary = cluster.wait_ready()
    victim, survivor = cluster.followers(primary)
    cluster.kill(victim, signal.SIGTERM)
    ops.remove(cluster, victim)
    survivors = [primary, survivor]
    before = refused(cluster, survivors)
    cluster.start(victim)
    wait_for(lambda: refused(cluster, survivors) > before, 20, f"{victim}'s handshakes refused")

    deadline = time.monotonic() + WATCH_S
    while time.monotonic() < deadline:
        for node in (victim, *survivors):
            view = cluster.cluster_view(node)
            assert view is None or view["primary"] != victim, (node, view)
        ready = try_http("GET", cluster.url(victim) + "/readyz")
        assert ready is None or ready[0] == 503, ready
        roles = ops.roles(cluster)
        assert roles == {node: "voter" for node in survivors}, roles
        time.sleep(0.1)  # pacing the checks, not synchronisation
    assert cluster.alive(victim), "it is refused, it does not crash"
    status, _, lease = harness.http("POST", cluster.url(survivor) + "/v1/leases/back:acquire",
                                    {"holder": "a", "ttl": 10})  # fmt: skip
    assert status == 200, lease


@pytest.mark.parametrize("primary_survives", [True, False], ids=["followers-die", "primary-dies"])
def test_a_learner_is_never_counted_in_a_quorum(cluster: Any, primary_survives: bool) -> None:
    """3 voters and a caught-up learner; two voters stop answering. One voter and one learner
    are two members of four, but one vote of three: nothing may be granted (neither accepted
    by the voter left with the learner, nor by a primary they elect) until a voter is back.

    The voters are paused (SIGSTOP): to the others it is the silence of a dead member, and
    resuming one is quicker than a restart."""
    primary = cluster.wait_ready()
    cluster.start_joiner("n4", cluster.url(primary))
    ops.joined(cluster, "n4")
    ops.add(cluster, "n4")
    wait_for(lambda: ops.caught_up(cluster, "n4"), 20, "n4 to catch up as a learner")
    down = [f for f in cluster.followers(primary) if f != "n4"]
    if not primary_survives:
        down = [primary, down[0]]
    for node in down:
        cluster.pause(node)
    up = [n for n in ("n1", "n2", "n3", "n4") if n not in down]

    deadline = time.monotonic() + WATCH_S
    attempt = 0
    while time.monotonic() < deadline:
        for node in up:
            attempt += 1
            answer = try_http("POST", cluster.url(node) + f"/v1/leases/q/{attempt}:acquire",
                              {"holder": "a", "ttl": 10}, timeout_s=0.5)  # fmt: skip
            assert answer is None or answer[0] in (503, 504), (node, answer)
    cluster.resume(down[0])
    voter = next(n for n in up if n != "n4")
    wait_for(lambda: (try_http("POST", cluster.url(voter) + "/v1/leases/q/back:acquire",
                               {"holder": "a", "ttl": 10, "request_id": "back"}) or [0])[0] == 200,
             20, "a voter back: the cluster serves again")  # fmt: skip


def test_a_member_restarts_after_a_membership_change(cluster: Any) -> None:
    """A follower stopped cleanly after a learner was added comes back and serves."""
    primary = cluster.wait_ready()
    cluster.start_joiner("n4", cluster.url(primary))
    ops.joined(cluster, "n4")
    ops.add(cluster, "n4")
    wait_for(lambda: ops.roles(cluster).get("n4") == "learner", 20, "the add in effect")
    follower = next(f for f in cluster.followers(primary) if f != "n4")
    cluster.kill(follower, signal.SIGTERM)
    cluster.start(follower)
    wait_for(lambda: not cluster.alive(follower) or (try_http(
        "GET", cluster.url(follower) + "/readyz") or [0])[0] == 200, 20, f"{follower} ready")
    assert cluster.alive(follower), cluster.members[follower].log_path.read_text()[-1500:]


def test_five_voters_serve_through_changes_while_one_is_down(cluster: Any) -> None:
    """5 voters; a follower dies (SIGKILL) and stays down. Another follower is removed, then a
    new member added and promoted: each change needs a majority of both configurations with
    one member of them silent, and the clients' acquires never stop being granted for long."""
    cluster.wait_ready()
    ops.grow(cluster, "n4")
    ops.grow(cluster, "n5")
    with ops.Ledger(lambda: ops.endpoints(cluster)) as ledger:
        wait_for(lambda: ledger.count() >= 5, 10, "the load to run")
        primary = ops.primary_id(cluster)
        dead, removed = [n for n in ("n1", "n2", "n3", "n4", "n5") if n != primary][:2]
        cluster.kill(dead)
        ops.remove(cluster, removed)
        cluster.kill(removed, signal.SIGTERM)
        count = ledger.count()
        wait_for(lambda: ledger.count() > count + 2, 10, f"grants after removing {removed}")
        ops.grow(cluster, "n6")
        count = ledger.count()
        wait_for(lambda: ledger.count() > count + 2, 10, "grants after adding n6")
    roles = ops.roles(cluster)
    assert removed not in roles and roles.get(dead) == "voter" and len(roles) == 5, roles
    assert set(roles.values()) == {"voter"}, roles
    assert not ledger.errors, ledger.errors[:5]
    assert ledger.overlaps() == []
    granted = sorted(grant.granted_at for grant in ledger.grants)
    gap_s = max(b - a for a, b in zip(granted, granted[1:]))
    assert gap_s < 5.0, f"no grant for {gap_s:.1f}s"


def test_a_promotion_sent_to_any_member_right_after_the_add_is_the_primarys_answer(
        cluster: Any) -> None:  # fmt: skip
    """The add was answered 201 by the primary; a promotion sent next to a follower or to
    the learner itself must be judged where the add is known (forwarded to the primary): it
    may be not caught up yet, or in progress, but the member exists."""
    primary = cluster.wait_ready()
    cluster.start_joiner("n4", cluster.url(primary))
    ops.joined(cluster, "n4")
    status, _, body = harness.http("POST", cluster.url(primary) + "/v1/members",
                                   {"id": "n4", "url": cluster.url("n4")})  # fmt: skip
    assert status == 201, body
    promoted = False
    for node in [n for n in cluster.members if n != primary]:
        answer = try_http("POST", cluster.url(node) + "/v1/members/n4:promote", timeout_s=5.0)
        assert answer is not None, node
        status, _, body = answer
        again = promoted and status == 409 and "a voter already" in body["message"]
        assert status in (200, 503) or body["error"] in ops.RETRY_CODES or again, (
            node, status, body)
        promoted = promoted or status == 200


def test_an_add_while_the_new_member_still_joins_is_retried_not_refused(cluster: Any) -> None:
    """n4 is started with --join toward a follower that is paused (SIGSTOP): for the 2 s that
    it waits for that member's identity, it already answers, without a cluster id. An add
    made meanwhile is "not yet" (what an operator meets who adds right after starting it)."""
    primary = cluster.wait_ready()
    follower = cluster.followers(primary)[0]
    cluster.pause(follower)
    cluster.start_joiner("n4", cluster.url(follower))
    status, _, body = harness.http("POST", cluster.url(primary) + "/v1/members",
                                   {"id": "n4", "url": cluster.url("n4")})  # fmt: skip
    assert cluster.alive("n4"), "n4 was still joining"
    assert (status, body["error"]) == (503, "unavailable"), body
