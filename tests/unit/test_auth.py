"""The auth file, token matching and the access rules of every route (DESIGN.md §8)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path
import pytest
from aiohttp import web

from paxlock.api.cli.serve import ConfigError, node_config
from paxlock.api.server import auth
from paxlock.api.server.auth import RULES, AuthFileError, Authenticator, load_auth
from paxlock.api.server.group_routes import TEMPLATES as GROUP_TEMPLATES
from paxlock.api.server.routes import COLLECTIONS, PLAIN_PATHS, add_routes

ALICE, BOB = "alice-token", "bob-token"


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


GOOD = f"""
[principals.alice]
token_sha256 = "{sha(ALICE)}"
roles = [{{ prefix = "a/", role = "lock" }}, {{ prefix = "", role = "read" }}]

[principals.bob]
token_sha256 = "{sha(BOB).upper()}"
roles = [{{ role = "admin" }}]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "auth.toml"
    path.write_text(text)
    return path


@pytest.fixture
def authenticator(tmp_path: Path) -> Authenticator:
    return load_auth(write(tmp_path, GOOD))


# --- the file ---------------------------------------------------------------------------------


def test_the_documented_shape_loads(authenticator: Authenticator) -> None:
    alice = authenticator.authenticate(f"Bearer {ALICE}")
    assert alice is not None and alice.name == "alice"
    assert alice.may("lock", "a/x") and alice.may("read", "b/x")
    assert not alice.may("lock", "b/x") and not alice.may("admin", "a/x")
    bob = authenticator.authenticate(f"bearer {BOB}")  # the scheme is case-insensitive
    assert bob is not None and bob.admin and bob.may("lock", "anything")


@pytest.mark.parametrize(("text", "says"), [
    ("[principals.x]\ntoken_sha256 = 'abc'\nroles = [{prefix='', role='read'}]", "64 hex"),
    (f"[principals.x]\ntoken_sha256 = '{sha('t')}'\nroles = []", "non-empty list"),
    (f"[principals.x]\ntoken_sha256 = '{sha('t')}'\nroles = [{{prefix='', role='write'}}]",
     "read, lock or admin"),
    (f"[principals.x]\ntoken_sha256 = '{sha('t')}'\nroles = [{{prefix='a b', role='read'}}]",
     "prefix"),
    (f"[principals.x]\ntoken_sha256 = '{sha('t')}'\nroles = [{{prefix='a/', role='admin'}}]",
     "admin covers every name"),
    (f"[principals.x]\ntoken = '{sha('t')}'\nroles = [{{prefix='', role='read'}}]",
     "unknown key 'token'"),
    ("[principals]", "no principals"),
    ("principals = 1\nother = 2", "unknown top-level key 'other'"),
    ("[principals.x\n", "cannot read auth file"),
    (f"[principals.x]\ntoken_sha256 = '{sha('t')}'\nroles = [{{prefix='', role='read'}}]\n"
     f"[principals.y]\ntoken_sha256 = '{sha('t')}'\nroles = [{{prefix='', role='read'}}]",
     "same token_sha256"),
])  # fmt: skip
def test_a_malformed_file_is_one_line_naming_the_problem(tmp_path: Path, text: str,
                                                         says: str) -> None:  # fmt: skip
    with pytest.raises(AuthFileError) as caught:
        load_auth(write(tmp_path, text))
    message = str(caught.value)
    assert says in message and "\n" not in message and str(tmp_path) in message


def test_serve_refuses_a_malformed_file_with_exit_2_and_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "[principals.x]\ntoken_sha256 = 'nope'\nroles = []")
    settings = {"id": "n1", "listen": "127.0.0.1:7001", "data_dir": str(tmp_path),
                "auth": str(path)}  # fmt: skip
    with pytest.raises(ConfigError, match="token_sha256 must be 64 hex digits"):
        node_config(settings)
    done = subprocess.run(
        [sys.executable, "-m", "paxlock.api.cli", "serve", "--id", "n1", "--listen",
         "127.0.0.1:1", "--data-dir", str(tmp_path / "d"), "--auth", str(path)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "token_sha256" in done.stderr, done.stderr


def test_serve_passes_the_file_and_the_limits_to_the_node(tmp_path: Path) -> None:
    settings = {"id": "n1", "listen": "127.0.0.1:7001", "data_dir": str(tmp_path),
                "auth": str(write(tmp_path, GOOD)), "auth_metrics": True,
                "max_holds_per_principal": 7, "max_holds": 70, "max_value_bytes": 700}  # fmt: skip
    config = node_config(settings)
    assert config.auth_file == str(tmp_path / "auth.toml") and config.auth_metrics
    assert (config.holds_per_principal_max, config.holds_max, config.value_bytes_max) == (
        7, 70, 700)  # fmt: skip
    with pytest.raises(ConfigError, match="--max-holds must be at least 1"):
        node_config({**settings, "max_holds": 0})
    with pytest.raises(ConfigError, match="--auth-metrics needs --auth"):
        node_config({**settings, "auth": None})


# --- tokens -----------------------------------------------------------------------------------


@pytest.mark.parametrize("header", [
    None, "", "Bearer", "Bearer ", f"Basic {ALICE}", f"Bearer {ALICE}x", f"Bearer {sha(ALICE)}",
])  # fmt: skip
def test_no_valid_bearer_token_is_no_principal(authenticator: Authenticator,
                                               header: str | None) -> None:  # fmt: skip
    assert authenticator.authenticate(header) is None


def test_tokens_compare_in_constant_time_against_every_principal(
    authenticator: Authenticator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """hmac.compare_digest on the SHA-256, once per principal, whether the first matched,
    the last matched or none did: no early exit tells which principal (or how much) matched."""
    calls: list[tuple[bytes, bytes]] = []
    real = auth.hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    for header in (f"Bearer {ALICE}", f"Bearer {BOB}", "Bearer nobody"):
        calls.clear()
        authenticator.authenticate(header)
        assert len(calls) == len(authenticator.principals) == 2
        token = header.removeprefix("Bearer ")
        assert all(a == hashlib.sha256(token.encode()).digest() for a, _ in calls)


# --- the rules of every route ----------------------------------------------------------------


def every_route() -> set[str]:
    """``METHOD template`` of every route the API registers, read from the router itself
    and the dispatch tables: a route added without a rule makes the next test fail."""
    app = web.Application()
    add_routes(app.router)
    routes: set[str] = set()
    for route in app.router.routes():
        canonical = route.resource.canonical if route.resource is not None else ""
        if route.method in ("HEAD", "*"):
            continue
        routes.add(f"{route.method} {canonical}")
    for collection, actions in COLLECTIONS.items():
        assert any(r.resource is not None
                   and r.resource.canonical == f"/v1/{collection}/{{tail}}"
                   for r in app.router.routes())  # fmt: skip
        for method, verb in actions:
            routes.add(f"{method} /v1/{collection}/{{name}}" + (f":{verb}" if verb else ""))
    assert any(r.resource is not None and r.resource.canonical == "/v1/groups/{tail}"
               for r in app.router.routes())  # fmt: skip
    routes |= set(GROUP_TEMPLATES)
    assert {path for path in PLAIN_PATHS} <= {r.split(" ", 1)[1] for r in routes}
    return routes


def test_every_route_has_an_access_rule_and_every_rule_a_route() -> None:
    assert every_route() == set(RULES)


def test_only_health_metrics_and_the_status_page_files_are_open() -> None:
    open_routes = {route for route, need in RULES.items() if need in ("open", "metrics")}
    assert open_routes == {"GET /healthz", "GET /readyz", "GET /metrics", "GET /v1/openapi.json",
                           "GET /ui", "GET /ui/", "GET /ui/{file}"}  # they hold no data
    assert all(route.split(" ", 1)[1].startswith("/v1/") for route in set(RULES) - open_routes)


def test_writes_need_lock_and_reads_need_read() -> None:
    for route, need in RULES.items():
        method, path = route.split(" ", 1)
        verb = path.rpartition(":")[2] if ":" in path else ""
        if path.startswith("/v1/members") and method != "GET":
            assert need == "admin", route  # membership changes (issue 13)
        elif path.startswith("/v1/sessions") and method != "GET":
            assert need == "locker", route  # owned by their principal, named by no lease
        elif verb in ("acquire", "renew", "release", "campaign", "proclaim", "resign"):
            assert need == "lock", route
        elif path.startswith("/v1/groups/") and method != "GET":
            assert need == "lock", route  # create, delete, join, leave, capabilities
        elif path in ("/v1/cluster", "/v1/changes"):
            assert need == "token", route  # any valid token: they name no lease
        elif path == "/v1/openapi.json":
            assert need == "open", route  # the document holds no data
        elif path.startswith("/v1/"):
            assert need == "read", route
        assert method in ("GET", "POST") or route in (
            "DELETE /v1/members/{name}", "PUT /v1/groups/{group}", "DELETE /v1/groups/{group}",
            "PATCH /v1/groups/{group}/members/{member}")


@pytest.mark.parametrize("route", sorted(RULES))
def test_a_principal_without_the_role_is_refused_on_every_named_route(route: str) -> None:
    """For each rule that needs a role: a principal whose roles cover other names only is
    refused; one whose role covers the name is allowed."""
    need = RULES[route]
    if need not in ("read", "lock"):
        pytest.skip(f"{route} needs no role on a name")
    elsewhere = auth.Principal("p", b"", (auth.Grant("b/", "lock"),))
    reader = auth.Principal("r", b"", (auth.Grant("a/", "read"),))
    locker = auth.Principal("l", b"", (auth.Grant("a/", "lock"),))
    assert not elsewhere.may(need, "a/x")
    assert locker.may(need, "a/x")
    assert reader.may(need, "a/x") is (need == "read")
