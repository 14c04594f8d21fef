"""Issue 10, fault 2, on real processes: a primary that catches up by snapshot takes office.

The keeper used to take office only from ``LeaseService.apply()``, once an entry at or above
the office slot (the top of the log its phase 1 found) was applied; ``install()`` never
checked. When the best promiser's snapshot slot equals its chosen index (an idle log right
after a compaction) and the new primary is behind it, the new primary installs that snapshot,
applies nothing, and answers every write, renewal and consistent read with 503 "still
recovering" for ever — its heartbeats keep the followers from electing anyone else.

The scenario, with ``--snapshot-every 5`` (every slot is one acquire or one release):

1. 3 nodes; ``behind`` (a follower) is killed at once, so it holds (almost) no log.
2. The primary ``old`` grants and releases leases until the chosen index ``C`` is a multiple
   of 5 with nothing after it, and ``other`` (the last follower) has compacted through ``C``.
3. ``old`` is killed; ``other`` is stopped cleanly and restarted with a 60 s election timeout,
   so that it never stands for election here and, knowing no primary after its restart, grants
   ``behind``'s pre-vote and promise at once: ``behind`` deterministically wins phase 1 with
   {behind, other}, finds nothing open above ``C`` and must catch up from ``other`` — whose
   log below ``C`` is gone, so by snapshot.
4. Within 10 s an acquire through ``behind`` succeeds, and consistent reads show the state of
   the snapshot; then ``old`` comes back and the whole cluster serves.

The setup checks its own preconditions on the members' stores (``other`` compacted through
``C`` and holds nothing after it, ``behind`` is below ``C``), so the test cannot pass by
missing the scenario; failures name ``C`` and each member's ``/v1/cluster`` view.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import sys
import time
from collections import Counter
from typing import Any

import pytest

harness = sys.modules["paxlock_test_harness"]  # registered by tests/conftest.py
http = harness.http
try_http = harness.try_http
wait_for = harness.wait_for

SNAPSHOT_EVERY = 5
OFFICE_DEADLINE_S = 10.0
"""From ``behind``'s start to its first granted acquire (election and catch-up take < 1 s)."""
NEVER_ELECTS_S = 60.0
"""``other``'s election timeout after its restart: longer than the whole test."""
TTL_S = 3600  # no lease expires (an Expire would write a slot) while the test runs


def lease_url(cluster: Any, node: str, name: str, verb: str = "") -> str:
    return f"{cluster.url(node)}/v1/leases/{name}" + (f":{verb}" if verb else "")


def chosen_index(cluster: Any, node: str) -> int:
    view = cluster.cluster_view(node)
    return -1 if view is None else int(view["chosen_index"])


def views(cluster: Any) -> str:
    """Each member's /v1/cluster (primary, ballot, chosen and applied index), for messages."""
    keys = ("primary", "ballot", "chosen_index", "applied_index")
    described: dict[str, Any] = {}
    for node in cluster.members:
        view = cluster.cluster_view(node) if cluster.alive(node) else None
        ready = try_http("GET", cluster.url(node) + "/readyz") if cluster.alive(node) else None
        described[node] = {
            "alive": cluster.alive(node),
            **({k: view.get(k) for k in keys} if view else {"view": None}),
            "readyz": None if ready is None else [ready[0], ready[2]],
        }
    return json.dumps(described, default=str)


def store(cluster: Any, node: str) -> dict[str, int | None]:
    """What a member's SQLite store holds: its snapshot slot and its highest chosen and
    accepted slots (read-only; the member may be running)."""
    path = cluster.members[node].data_dir / "paxlock.db"
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        snapshot = db.execute("SELECT slot FROM snapshot WHERE id = 1").fetchone()
        (chosen,) = db.execute("SELECT MAX(slot) FROM chosen").fetchone()
        (accepted,) = db.execute("SELECT MAX(slot) FROM accepted").fetchone()
    finally:
        db.close()
    return {"snapshot": snapshot[0] if snapshot else None, "chosen": chosen,
            "accepted": accepted}  # fmt: skip


@pytest.mark.slow
def test_a_new_primary_that_catches_up_by_snapshot_takes_office(cluster_factory: Any) -> None:
    cluster = cluster_factory(3, ["--snapshot-every", str(SNAPSHOT_EVERY)])
    old = cluster.wait_ready()
    behind, other = (n for n in cluster.members if n != old)
    cluster.kill(behind)

    # 2. Write (one slot per acquire or release) until the log is compacted at a slot with
    #    nothing after it: the chosen index is a multiple of SNAPSHOT_EVERY.
    first = chosen_index(cluster, old)
    kept: dict[str, int] = {}  # name -> token of the leases left held
    released: list[str] = []
    for i in range(60):
        top = chosen_index(cluster, old)
        if top >= first + 2 * SNAPSHOT_EVERY and top % SNAPSHOT_EVERY == 0:
            break
        name = f"office/{i}"
        status, _, lease = http("POST", lease_url(cluster, old, name, "acquire"),
                                {"holder": f"h{i}", "ttl": TTL_S})  # fmt: skip
        assert status == 200, lease
        if i % 3 == 2:
            status, _, body = http("POST", lease_url(cluster, old, name, "release"),
                                   {"holder": f"h{i}", "token": lease["token"]})  # fmt: skip
            assert status == 200, body
            released.append(name)
        else:
            kept[name] = lease["token"]
    compacted = chosen_index(cluster, old)
    assert compacted % SNAPSHOT_EVERY == 0 and kept and released, (compacted, views(cluster))
    wait_for(lambda: chosen_index(cluster, other) == compacted
             and store(cluster, other)["snapshot"] == compacted, 10.0,
             f"{other} to learn and compact through slot {compacted}")  # fmt: skip

    # 3. The old primary crashes; `other` restarts knowing no primary and unable to stand.
    cluster.kill(old)
    cluster.kill(other, signal.SIGTERM)
    held = store(cluster, other)
    assert held["snapshot"] == compacted and (held["chosen"] or 0) <= compacted and (
        held["accepted"] or 0) <= compacted, (
        f"precondition: {other} must hold its snapshot at {compacted} and nothing after it "
        f"(an idle log right after compaction), holds {held}")  # fmt: skip
    lagging = store(cluster, behind)
    assert max(lagging["snapshot"] or 0, lagging["chosen"] or 0) < compacted, (
        f"precondition: {behind} must be behind slot {compacted}, holds {lagging}")
    cluster.start(other, ["--election-timeout", str(NEVER_ELECTS_S), "--heartbeat", "0.05"])
    wait_for(lambda: try_http("GET", cluster.url(other) + "/healthz"), 10.0,
             f"{other} to listen")  # fmt: skip
    started = time.monotonic()
    cluster.start(behind)

    # 4. `behind` wins the election while behind, catches up by snapshot, and takes office.
    body = {"holder": "after", "ttl": TTL_S, "request_id": "office-after-snapshot"}
    answers: Counter[str] = Counter()

    def granted() -> Any:
        answer = try_http("POST", lease_url(cluster, behind, "office/after", "acquire"), body,
                          timeout_s=5.0)  # fmt: skip
        if answer is not None and answer[0] == 200:
            return answer[2]
        if answer is None:
            answers["no answer (not listening yet, or timed out)"] += 1
        else:
            error = answer[2] if isinstance(answer[2], dict) else {"message": answer[2]}
            answers[f"{answer[0]} {error.get('message')}"] += 1
        return None

    try:
        lease = wait_for(granted, OFFICE_DEADLINE_S, f"an acquire through {behind}",
                         interval_s=0.05)  # fmt: skip
    except AssertionError as timeout:
        raise AssertionError(
            f"{timeout}: {behind} never took office after catching up by snapshot "
            f"(issue 10 fault 2). Compacted slot C={compacted}; answers: {dict(answers)}; "
            f"members: {views(cluster)}\n{cluster.logs()}"
        ) from None
    took_s = time.monotonic() - started
    print(f"office_after_snapshot_s={took_s:.3f} compacted_slot={compacted}")
    view = cluster.cluster_view(behind)
    assert view is not None and view["primary"] == behind, (
        f"the scenario needs {behind} elected while behind: {views(cluster)}")
    assert chosen_index(cluster, behind) > compacted, views(cluster)

    # Consistent reads through the new primary show the snapshot's state and the new grant.
    for name, token in kept.items():
        status, _, got = http("GET", lease_url(cluster, behind, name))
        assert status == 200 and got["token"] == token, (name, status, got, views(cluster))
    for name in released:
        status, _, got = http("GET", lease_url(cluster, behind, name))
        assert status == 404, (name, status, got, views(cluster))
    status, _, got = http("GET", lease_url(cluster, behind, "office/after"))
    assert status == 200 and (got["holder"], got["token"]) == ("after", lease["token"]), got
    assert lease["token"] > max(kept.values())

    # The old primary comes back: it follows, catches up, and every member serves.
    cluster.start(old)
    primary = cluster.wait_ready()
    assert primary == behind, views(cluster)
    status, _, late = http("POST", lease_url(cluster, old, "office/late", "acquire"),
                           {"holder": "late", "ttl": TTL_S})  # fmt: skip
    assert status == 200 and late["token"] > lease["token"], (late, views(cluster))
    for node in cluster.members:
        status, _, got = http("GET", lease_url(cluster, node, "office/late"))
        assert status == 200 and got["token"] == late["token"], (node, got, views(cluster))
    wait_for(lambda: (lambda a: a is not None and a[0] == 200 and a[2]["token"] == late["token"])(
        try_http("GET", lease_url(cluster, old, "office/late") + "?consistent=false")),
        10.0, f"{old} to apply the log")  # fmt: skip
