"""Membership steps and a client load for real-process clusters (``tests/harness.py``), shared
by ``tests/integration/test_membership_changes.py`` and ``tests/bench/membership_bench.py``.

A step is what an operator does over HTTP: ``POST /v1/members`` to add a learner, ``:promote``
once it caught up, ``DELETE`` to remove, each retried while the cluster answers "not now"
(409 ``change_in_progress`` / ``not_caught_up``, 503, no answer) and ended by a condition
on the primary's ``GET /v1/members``, never by a sleep. ``Ledger`` runs acquire/release
cycles in threads and keeps every grant with the client's own clock readings, so that a test
can check that no two grants of one name overlapped.

Loaded by file path (tests are not a package) with ``harness.load_module``, after
``tests/harness.py`` registered itself as ``paxlock_test_harness``.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paxlock_test_harness as harness  # type: ignore[import-not-found]  # registered first

RETRY_CODES = {"change_in_progress", "not_caught_up", "unavailable", "not_primary"}
"""Answers to a membership change that mean "try again"."""
STEP_DEADLINE_S = 20.0


def endpoints(cluster: Any) -> list[str]:
    """The URLs of the running processes; cheap, and safe from another thread."""
    return [m.url for m in list(cluster.members.values())
            if m.process is not None and m.process.poll() is None]  # fmt: skip


def live_urls(cluster: Any) -> list[str]:
    """The URLs of the cluster's running processes, the agreed primary (if any) first."""
    urls = endpoints(cluster)
    primary = primary_url(cluster)
    return sorted(urls, key=lambda url: url != primary)


def primary_id(cluster: Any) -> str | None:
    """The primary as the running members' ``GET /v1/members`` name it (the first that does)."""
    for url in endpoints(cluster):
        for row in (members_view(url) or {}).get("members", []):
            if row["primary"] and row["id"] in cluster.members and cluster.alive(row["id"]):
                return str(row["id"])
    return None


def primary_url(cluster: Any) -> str | None:
    primary = primary_id(cluster)
    return None if primary is None else str(cluster.url(primary))


def members_view(url: str) -> dict[str, Any] | None:
    answer = harness.try_http("GET", url + "/v1/members", timeout_s=2.0)
    return answer[2] if answer is not None and answer[0] == 200 else None


def roles(cluster: Any) -> dict[str, str]:
    """Member id -> role in the primary's view, once it has no change pending ({} otherwise)."""
    url = primary_url(cluster)
    view = members_view(url) if url is not None else None
    if view is None or view["pending"] is not None:
        return {}
    return {row["id"]: row["role"] for row in view["members"]}


def change(cluster: Any, method: str, path: str, body: Any = None,
           done: Callable[[int, dict[str, Any]], bool] = lambda status, _: False,
           deadline_s: float = STEP_DEADLINE_S) -> dict[str, Any]:  # fmt: skip
    """Send one membership change to the live members until one accepts it (2xx) or ``done``
    says a refusal means it was made already (an earlier try that timed out); returns the
    answer's body. Fails on any other refusal: that is a bug, not a transient."""
    seen: list[Any] = []

    def attempt() -> dict[str, Any] | None:
        for url in live_urls(cluster):  # the primary first; a follower only if it is silent
            answer = harness.try_http(method, url + path, body, timeout_s=5.0)
            if answer is None:
                continue
            status, _, reply = answer
            if 200 <= status < 300 or done(status, reply):
                return dict(reply)
            seen.append((status, reply))
            code = reply.get("error") if isinstance(reply, dict) else None
            assert code in RETRY_CODES, f"{method} {path} refused: {status} {reply}"
            return None
        return None

    try:
        return harness.wait_for(attempt, deadline_s, f"{method} {path}", interval_s=0.05)  # type: ignore[no-any-return]
    except AssertionError:
        raise AssertionError(f"{method} {path}: last answers {seen[-3:]}") from None


def add(cluster: Any, node: str) -> None:
    """Add the running (joined) member ``node`` as a learner."""
    body = {"id": node, "url": cluster.url(node)}
    change(cluster, "POST", "/v1/members", body,
           done=lambda status, reply: status == 409 and "already a member" in reply["message"])


def promote(cluster: Any, node: str) -> None:
    """Promote the learner ``node`` (retried until caught up) and wait until it votes."""
    change(cluster, "POST", f"/v1/members/{node}:promote",
           done=lambda status, reply: status == 409 and "voter" in reply["message"])
    harness.wait_for(lambda: roles(cluster).get(node) == "voter", STEP_DEADLINE_S,
                     f"{node} a voter")  # fmt: skip


def remove(cluster: Any, node: str) -> None:
    """Remove ``node`` and wait until no configuration in effect or pending lists it."""
    change(cluster, "DELETE", f"/v1/members/{node}",
           done=lambda status, reply: status == 404 and reply["error"] == "not_found")
    harness.wait_for(lambda: (r := roles(cluster)) and node not in r, STEP_DEADLINE_S,
                     f"{node} gone from the configuration")  # fmt: skip


def caught_up(cluster: Any, node: str, lag_max: int = 2) -> bool:
    url = primary_url(cluster)
    view = members_view(url) if url is not None else None
    row = {r["id"]: r for r in (view or {}).get("members", [])}.get(node)
    return row is not None and row["reachable"] and row["lag"] is not None \
        and row["lag"] <= lag_max  # fmt: skip


def joined(cluster: Any, node: str) -> None:
    """Wait until the joiner ``node`` adopted the cluster (its identity names a cluster id):
    an add before that is refused as a member of another cluster."""

    def cluster_id() -> str | None:
        answer = harness.try_http("GET", cluster.url(node) + "/internal/identity")
        return answer[2]["cluster_id"] if answer is not None and answer[0] == 200 else None

    harness.wait_for(cluster_id, STEP_DEADLINE_S, f"{node} to adopt the cluster")


def grow(cluster: Any, node: str, port: int | None = None) -> None:
    """A new member ``node`` joined, added, caught up and promoted: it votes on return."""
    join = primary_url(cluster) or live_urls(cluster)[0]
    cluster.start_joiner(node, join, port=port)
    joined(cluster, node)
    add(cluster, node)
    promote(cluster, node)


def serves(cluster: Any, name: str, deadline_s: float = STEP_DEADLINE_S) -> dict[str, Any]:
    """An acquire of the fresh ``name`` granted through some live member (retried)."""
    body = {"holder": "probe", "ttl": 30, "request_id": f"probe-{name}"}

    def attempt() -> dict[str, Any] | None:
        for url in live_urls(cluster):
            answer = harness.try_http("POST", f"{url}/v1/leases/{name}:acquire", body, 3.0)
            if answer is not None and answer[0] == 200:
                return dict(answer[2])
        return None

    return harness.wait_for(attempt, deadline_s, f"an acquire of {name}", interval_s=0.05)  # type: ignore[no-any-return]


@dataclass
class Grant:
    name: str
    holder: str
    token: int
    granted_at: float
    """When the grant's reply arrived: the server granted it before."""
    release_sent_at: float | None = None
    """When its release was first sent: the server released it after (None: still held)."""


@dataclass
class Ledger:
    """Acquire/release cycles on a few ``names`` from ``clients`` threads, each a holder of
    its own, over the endpoints ``urls()`` gives (rotating). An acquire or release without an
    answer is sent again with the same ``request_id`` (so it is one request, answered once);
    a 409 on an acquire means another holder has the name."""

    urls: Callable[[], list[str]]
    names: tuple[str, ...] = ("m/a", "m/b", "m/c")
    clients: int = 4
    ttl_s: float = 30.0
    grants: list[Grant] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Ledger:
        for index in range(self.clients):
            thread = threading.Thread(target=self._client, args=(index,), daemon=True)
            self._threads.append(thread)
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def count(self) -> int:
        return len(self.grants)

    def _send(self, verb: str, name: str, body: dict[str, Any], endpoint: itertools.cycle[int],
              final: bool = False) -> tuple[int, Any] | None:  # fmt: skip
        """One request, again (same body) until answered other than 503; None if stopped
        first (a release is finished even then: ``final``)."""
        deadline = time.monotonic() + 30
        while (final or not self.stop.is_set()) and time.monotonic() < deadline:
            urls = self.urls()
            if urls:
                url = urls[next(endpoint) % len(urls)]
                answer = harness.try_http("POST", f"{url}/v1/leases/{name}:{verb}", body, 3.0)
                if answer is not None and answer[0] not in (502, 503, 504):
                    return answer[0], answer[2]
            self.stop.wait(0.01)  # pacing retries, not synchronisation
        return None

    def _client(self, index: int) -> None:
        holder = f"client{index}"
        endpoint = itertools.cycle(range(index, index + 1000))
        for cycle in itertools.count():
            if self.stop.is_set():
                return
            name = self.names[(index + cycle) % len(self.names)]
            body = {"holder": holder, "ttl": self.ttl_s, "request_id": f"{holder}-a{cycle}"}
            answer = self._send("acquire", name, body, endpoint)
            if answer is None:
                return
            status, reply = answer
            if status == 409:
                continue
            if status != 200:
                self.errors.append(f"acquire {name}: {status} {reply}")
                continue
            grant = Grant(name, holder, reply["token"], time.monotonic())
            self.grants.append(grant)
            grant.release_sent_at = time.monotonic()
            release = {"holder": holder, "token": grant.token, "request_id": f"{holder}-r{cycle}"}
            answer = self._send("release", name, release, endpoint, final=True)
            if answer is None or answer != (200, {"released": True}):
                self.errors.append(f"release {name} {grant.token}: {answer}")

    def overlaps(self) -> list[str]:
        """Pairs of grants of one name held at once per the replies, and tokens that did not
        increase. A grant is surely held from its reply to its release's sending."""
        found = []
        for name in self.names:
            grants = sorted((g for g in self.grants if g.name == name), key=lambda g: g.granted_at)
            for before, after in zip(grants, grants[1:]):
                end = before.release_sent_at
                if end is None or end > after.granted_at:
                    found.append(f"{name}: {before} overlaps {after}")
                if after.token <= before.token:
                    found.append(f"{name}: token {after.token} after {before.token}")
        return found
