"""Bearer tokens, roles, ownership and the hold limits over real HTTP on a real 3-node
cluster started with ``--auth`` (DESIGN.md §8; issue 12 items 2, 3 and 5).

One cluster serves the module; tests use names and principals of their own. The 401 and
403 cases are driven by ``auth.RULES``, which a unit test keeps equal to the router's
routes: a new route without a rule fails there, and is then exercised here.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from paxlock.api.client.aio import AsyncClient
from paxlock.api.client.errors import Forbidden as ClientForbidden
from paxlock.api.client.errors import Unauthenticated as ClientUnauthenticated
from paxlock.api.server.auth import LISTS, RULES

harness = sys.modules["paxlock_test_harness"]  # registered by tests/conftest.py
http = harness.http

TOKENS = {"alice": "tok-alice", "bob": "tok-bob", "reader": "tok-reader", "hog": "tok-hog",
          "admin": "tok-admin"}  # fmt: skip
ROLES = {
    "alice": '[{ prefix = "a/", role = "lock" }, { prefix = "e/", role = "lock" }]',
    "bob": '[{ prefix = "", role = "lock" }]',
    "reader": '[{ prefix = "a/", role = "read" }, { prefix = "e/", role = "read" }]',
    "hog": '[{ prefix = "hog/", role = "lock" }]',
    "admin": '[{ role = "admin" }]',
}
HOLDS_PER_PRINCIPAL_MAX = 4
VALUE_BYTES_MAX = 10_000


def bearer(principal: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[principal]}"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    root = Path(tmp_path_factory.mktemp("auth"))
    auth_file = root / "auth.toml"
    auth_file.write_text("".join(
        f'[principals.{name}]\ntoken_sha256 = "{hashlib.sha256(token.encode()).hexdigest()}"\n'
        f"roles = {ROLES[name]}\n\n" for name, token in TOKENS.items()
    ))  # fmt: skip
    extra = ["--auth", str(auth_file), "--max-holds-per-principal", str(HOLDS_PER_PRINCIPAL_MAX),
             "--max-value-bytes", str(VALUE_BYTES_MAX)]  # fmt: skip
    running = harness.Cluster(root, 3, extra, headers=bearer("admin"))
    try:
        try:
            running.start_all()
        except AssertionError:
            print(running.logs())
            raise
        yield running
    finally:
        running.stop_all()


@pytest.fixture
def primary(cluster: Any) -> str:
    return str(cluster.wait_ready())


def call(cluster: Any, node: str, route: str, name: str = "", body: Any = None,
         principal: str | None = None, query: str = "") -> tuple[int, dict[str, str], Any]:  # fmt: skip
    method, template = route.split(" ", 1)
    path = named(template, name) + (f"?{query}" if query else "")
    headers = bearer(principal) if principal else {}
    result: tuple[int, dict[str, str], Any] = http(method, cluster.url(node) + path, body,
                                                   headers=headers)  # fmt: skip
    return result


def named(template: str, name: str) -> str:
    """A route's path: its name (a group's too) and member filled in."""
    return template.replace("{name}", name).replace("{group}", name).replace("{member}", "m")


EVERY_NAME = ("GET /v1/members", "GET /v1/sessions", "GET /v1/sessions/{name}")
"""Read routes whose rule names every name: only a role over the prefix "" covers them."""

BODIES: dict[str, Any] = {
    "acquire": {"holder": "h", "ttl": 10}, "renew": {"holder": "h", "token": 1},
    "release": {"holder": "h", "token": 1}, "verify": {"token": 1},
    "campaign": {"candidate": "h", "ttl": 10}, "proclaim": {"candidate": "h", "token": 1,
                                                            "value": "v"},
    "resign": {"candidate": "h", "token": 1},
}  # fmt: skip


def body_of(route: str) -> Any:
    verb = route.rpartition(":")[2] if ":" in route else ""
    return BODIES.get(verb) if route.startswith("POST") else None


def query_of(route: str) -> str:
    return "timeout=0" if route.endswith((":observe", "/v1/changes")) else ""


PROTECTED = sorted(route for route, need in RULES.items() if need not in ("open", "metrics"))


@pytest.mark.parametrize("route", PROTECTED)
def test_every_v1_route_is_401_without_a_valid_token(cluster: Any, primary: str,
                                                     route: str) -> None:  # fmt: skip
    for headers in ({}, {"Authorization": "Bearer not-a-token"},
                    {"Authorization": f"Basic {TOKENS['admin']}"}):  # fmt: skip
        method, template = route.split(" ", 1)
        url = cluster.url(primary) + named(template, "a/x")
        status, got, body = http(method, url, body_of(route), headers=headers)
        assert status == 401, (route, body)
        assert body["error"] == "unauthenticated" and got["Content-Type"].startswith(
            "application/json")  # fmt: skip


@pytest.mark.parametrize("route", PROTECTED)
def test_every_v1_route_is_403_outside_the_roles(cluster: Any, primary: str,
                                                 route: str) -> None:  # fmt: skip
    """``reader`` (read on a/ and e/) on a name outside them for reads, inside them for
    writes; ``GET /v1/cluster`` and ``GET /v1/changes`` need only a valid token."""
    need = RULES[route]
    if need == "token":
        status, _, body = call(cluster, primary, route, principal="reader",
                               query=query_of(route))  # fmt: skip
        assert status in (200, 204), body  # 204: a changes poll that met no change
        return
    name = "b/x" if need == "read" else "a/x"
    status, _, body = call(cluster, primary, route, name, body_of(route), "reader",
                           query="prefix=b/" if route in LISTS else query_of(route))
    assert status == 403, (route, body)
    assert body["error"] == "forbidden"
    if need == "read":  # the same route on a name the role covers passes the check
        # (the member list has no name: it needs read on every name, which bob's role covers)
        covering = "bob" if route in EVERY_NAME else "reader"
        status, _, body = call(cluster, primary, route, "a/x", body_of(route), covering,
                               query="prefix=a/" if route in LISTS
                               else query_of(route))  # fmt: skip
        assert status in (200, 204, 404), (route, body)


def test_a_list_must_stay_within_a_read_prefix(cluster: Any, primary: str) -> None:
    for prefix, expected in (("a/", 200), ("a/sub", 200), ("", 403), ("b", 403)):
        status, _, _ = call(cluster, primary, "GET /v1/leases", principal="reader",
                            query=f"prefix={prefix}")  # fmt: skip
        assert status == expected, prefix


def test_health_metrics_and_the_api_description_stay_open(cluster: Any, primary: str) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/v1/openapi.json"):
        status, _, _ = http("GET", cluster.url(primary) + path)
        assert status == 200, path
    status, _, _ = http("GET", cluster.url(primary) + "/v1/openapi.jsonx")
    assert status == 401  # only the document itself is open


# -- ownership -------------------------------------------------------------------------------


def test_another_principal_cannot_renew_release_or_proclaim_a_hold(cluster: Any,
                                                                   primary: str) -> None:  # fmt: skip
    """bob may lock every name, and knows alice's holder name and token: still 403."""
    status, _, lease = call(cluster, primary, "POST /v1/leases/{name}:acquire", "a/own",
                            {"holder": "alice-1", "ttl": 30}, "alice")  # fmt: skip
    assert status == 200, lease
    stolen = {"holder": "alice-1", "token": lease["token"]}
    for verb in ("renew", "release"):
        status, _, body = call(cluster, primary, f"POST /v1/leases/{{name}}:{verb}", "a/own",
                               stolen, "bob")  # fmt: skip
        assert (status, body["error"]) == (403, "forbidden"), (verb, body)
    for verb in ("verify",):
        status, _, body = call(cluster, primary, f"POST /v1/leases/{{name}}:{verb}", "a/own",
                               {"token": lease["token"]}, "reader")  # fmt: skip
        assert (status, body["current"]) == (200, True)
    status, _, body = call(cluster, primary, "GET /v1/leases/{name}", "a/own", None, "reader")
    assert (status, body["holder"]) == (200, "alice-1")
    status, _, body = call(cluster, primary, "POST /v1/leases/{name}:release", "a/own", stolen,
                           "alice")  # fmt: skip
    assert (status, body) == (200, {"released": True})


def test_another_principal_cannot_proclaim_renew_or_resign_a_leader(cluster: Any,
                                                                    primary: str) -> None:  # fmt: skip
    status, _, leader = call(cluster, primary, "POST /v1/elections/{name}:campaign", "e/own",
                             {"candidate": "alice-1", "ttl": 30, "value": "v1"}, "alice")
    assert status == 200, leader
    stolen = {"candidate": "alice-1", "token": leader["token"]}
    for verb, extra in (("proclaim", {"value": "evil"}), ("renew", {}), ("resign", {})):
        status, _, body = call(cluster, primary, f"POST /v1/elections/{{name}}:{verb}",
                               "e/own", {**stolen, **extra}, "bob")  # fmt: skip
        assert (status, body["error"]) == (403, "forbidden"), (verb, body)
    status, _, body = call(cluster, primary, "GET /v1/elections/{name}", "e/own", None, "reader")
    assert (status, body["leader"], body["value"]) == (200, "alice-1", "v1")
    status, _, _ = call(cluster, primary, "POST /v1/elections/{name}:resign", "e/own", stolen,
                        "alice")  # fmt: skip
    assert status == 200


def test_forwarding_from_a_follower_keeps_the_principal(cluster: Any, primary: str) -> None:
    follower = cluster.followers(primary)[0]
    status, headers, lease = call(cluster, follower, "POST /v1/leases/{name}:acquire",
                                  "a/fwd", {"holder": "h", "ttl": 30}, "alice")  # fmt: skip
    assert status == 200, lease
    assert headers["X-Paxlock-Node"] == follower and headers["X-Paxlock-Primary"] == primary
    mine = {"holder": "h", "token": lease["token"]}
    status, _, body = call(cluster, follower, "POST /v1/leases/{name}:release", "a/fwd", mine,
                           "bob")  # fmt: skip
    assert (status, body["error"]) == (403, "forbidden"), "bob, forwarded, is still bob"
    status, _, body = call(cluster, primary, "POST /v1/leases/{name}:release", "a/fwd", mine,
                           "alice")  # fmt: skip
    assert status == 200, "the grant made through the follower is alice's"


def test_the_sdk_sends_its_token(cluster: Any, primary: str) -> None:
    async def run() -> None:
        async with AsyncClient(cluster.urls(), token=TOKENS["alice"]) as client:
            async with client.lock("a/sdk", ttl=10) as lease:
                assert lease.token > 0
            with pytest.raises(ClientForbidden):
                async with client.lock("b/sdk", ttl=10):
                    pass
        async with AsyncClient(cluster.urls(), retry_deadline=1.0) as anonymous:
            with pytest.raises(ClientUnauthenticated):
                await anonymous.get("a/sdk")

    asyncio.run(run())


# -- limits ----------------------------------------------------------------------------------


def test_holds_per_principal_answer_429_with_retry_after(cluster: Any, primary: str) -> None:
    names = [f"hog/{i}" for i in range(HOLDS_PER_PRINCIPAL_MAX)]
    leases = []
    for name in names:
        status, _, lease = call(cluster, primary, "POST /v1/leases/{name}:acquire", name,
                                {"holder": "h", "ttl": 30}, "hog")  # fmt: skip
        assert status == 200, lease
        leases.append(lease)
    before = cluster.metric(primary, "paxlock_limit_refusals_total",
                            '{limit="holds_per_principal"}') or 0.0  # fmt: skip
    status, headers, body = call(cluster, primary, "POST /v1/leases/{name}:acquire", "hog/more",
                                 {"holder": "h", "ttl": 30}, "hog")  # fmt: skip
    assert (status, body["error"], body["limit"]) == (429, "too_many", "holds_per_principal")
    assert int(headers["Retry-After"]) >= 1
    assert cluster.metric(primary, "paxlock_limit_refusals_total",
                          '{limit="holds_per_principal"}') == before + 1  # fmt: skip
    status, _, other = call(cluster, primary, "POST /v1/leases/{name}:acquire", "a/not-hog",
                            {"holder": "h", "ttl": 30}, "alice")  # fmt: skip
    assert status == 200, "another principal is not limited by hog's holds"
    for lease, who in [*((lease, "hog") for lease in leases), (other, "alice")]:
        status, _, _ = call(cluster, primary, "POST /v1/leases/{name}:release", lease["name"],
                            {"holder": "h", "token": lease["token"]}, who)  # fmt: skip
        assert status == 200


def test_value_bytes_in_total_answer_429(cluster: Any, primary: str) -> None:
    value = "v" * 4096
    granted = []
    for i in range(2):
        status, _, lease = call(cluster, primary, "POST /v1/leases/{name}:acquire", f"b/v{i}",
                                {"holder": "h", "ttl": 30, "value": value}, "bob")  # fmt: skip
        assert status == 200, lease
        granted.append(lease)
    status, headers, body = call(cluster, primary, "POST /v1/leases/{name}:acquire", "b/v2",
                                 {"holder": "h", "ttl": 30, "value": value}, "bob")  # fmt: skip
    assert (status, body["limit"]) == (429, "value_bytes"), body
    assert "Retry-After" in headers
    for lease in granted:
        status, _, _ = call(cluster, primary, "POST /v1/leases/{name}:release", lease["name"],
                            {"holder": "h", "token": lease["token"]}, "bob")  # fmt: skip
        assert status == 200
