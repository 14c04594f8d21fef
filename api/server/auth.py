"""Client authentication and roles (DESIGN.md §8): ``--auth FILE`` lists principals, each
with the SHA-256 of its bearer token (never the token) and roles over name prefixes.

The file (TOML)::

    [principals.alice]
    token_sha256 = "<hex sha-256 of the token>"
    roles = [{ prefix = "a/", role = "lock" }, { prefix = "", role = "read" }]

Roles: ``read`` (GET a lease or leader, observe, verify, list) on names under its prefix;
``lock`` (acquire, renew, release, campaign, proclaim, resign) under its prefix, and read
there too. Semaphores and read/write locks go by their names as leases do, groups by the
group's name (creating, deleting, joining, leaving and campaigning need ``lock``); opening,
renewing and closing a session needs a lock role on any prefix, reading sessions a read role
over every name (prefix ``""``); ``admin`` every route and every name (its prefix must be ``""``): membership
changes (``POST``/``DELETE`` under ``/v1/members``) need it, while ``GET /v1/members`` needs
``read`` over every name (prefix ``""``, as a list of everything). ``GET /v1/cluster`` and
``GET /v1/changes`` need any valid token (the SDK reads the first to find members; the
second reveals only a number).

With a file, every ``/v1`` request needs ``Authorization: Bearer TOKEN``: 401 without a
valid one, 403 outside its roles. ``/healthz``, ``/readyz``, the API's description
(``/v1/openapi.json``) and the status page's static files (``/ui/``; its API calls need a
token) stay open, as they hold no data; ``/metrics`` needs
a valid token only with ``--auth-metrics``. A list (``GET /v1/leases?prefix=P``) is allowed
when one read role covers all of ``P`` (its prefix is a prefix of ``P``), else 403 — never
silently filtered, so an answer is always the whole truth of what was asked.

Tokens are matched by their SHA-256, compared with ``hmac.compare_digest`` against *every*
principal's hash (no early exit), so the time taken says nothing about which hash, or how
much of one, matched. The matched principal's name becomes ``request[PRINCIPAL]``; a
follower forwards the ``Authorization`` header and the primary authenticates it again.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from paxlock.api.server.group_routes import TEMPLATES as GROUP_TEMPLATES
from paxlock.api.server.routes import PRINCIPAL, route_of
from paxlock.api.server.wire import PREFIX_PATTERN, query_prefix
from paxlock.coordinator.errors import Forbidden, Unauthenticated

Role = Literal["read", "lock", "admin"]
Need = Literal["read", "lock", "admin", "locker", "token", "open", "metrics"]
"""What a route needs: a role on its name (or on the list's prefix), a lock role on some
prefix (``locker``: opening and ending sessions, which hold nothing by themselves and are
owned by their principal), any valid token, nothing, or — for ``/metrics`` — a valid token
only with ``--auth-metrics``."""
_RANK: dict[str, int] = {"read": 0, "lock": 1, "admin": 2}
PRINCIPAL_CHARS_MAX = 256
MEMBER_TOKEN_HEADER = "X-Paxlock-Cluster-Token"
"""``api.server.peer.TOKEN_HEADER`` (not imported: the peer module imports the metrics)."""
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")

_SHARED_RULES: tuple[tuple[str, str, Need], ...] = (
    ("POST", ":acquire", "lock"), ("POST", ":renew", "lock"), ("POST", ":release", "lock"),
    ("POST", ":verify", "read"), ("GET", "", "read"),
)  # fmt: skip
_READ: Need = "read"
_LOCK: Need = "lock"

RULES: dict[str, Need] = {
    "POST /v1/leases/{name}:acquire": "lock",
    "POST /v1/leases/{name}:renew": "lock",
    "POST /v1/leases/{name}:release": "lock",
    "POST /v1/leases/{name}:verify": "read",
    "GET /v1/leases/{name}": "read",
    "GET /v1/leases": "read",
    "POST /v1/elections/{name}:campaign": "lock",
    "POST /v1/elections/{name}:proclaim": "lock",
    "POST /v1/elections/{name}:renew": "lock",
    "POST /v1/elections/{name}:resign": "lock",
    "GET /v1/elections/{name}": "read",
    "GET /v1/elections/{name}:observe": "read",
    "GET /v1/elections": "read",
    "POST /v1/sessions": "locker",
    "POST /v1/sessions/{name}:renew": "locker",
    "POST /v1/sessions/{name}:close": "locker",
    "GET /v1/sessions/{name}": "read",
    "GET /v1/sessions": "read",
    **{f"{method} /v1/{collection}/{{name}}{verb}": need
       for collection in ("semaphores", "rwlocks")
       for method, verb, need in _SHARED_RULES},
    "GET /v1/semaphores": "read",
    "GET /v1/rwlocks": "read",
    "GET /v1/groups": "read",
    **{template: _READ if template.startswith("GET ") else _LOCK
       for template in GROUP_TEMPLATES},
    "GET /v1/cluster": "token",
    "GET /v1/changes": "token",
    "GET /v1/members": "read",
    "POST /v1/members": "admin",
    "POST /v1/members/{name}:promote": "admin",
    "DELETE /v1/members/{name}": "admin",
    "GET /healthz": "open",
    "GET /readyz": "open",
    "GET /metrics": "metrics",
    "GET /v1/openapi.json": "open",
    "GET /ui": "open",
    "GET /ui/": "open",
    "GET /ui/{file}": "open",
}
"""Every route of ``routes.add_routes`` (``METHOD template``) and what it needs. A route
missing here is refused 403 to every principal but admin (fail closed), and a test fails."""


OPEN_V1 = frozenset({"/v1/openapi.json"})
"""``/v1`` paths that need no token: the API's description holds no data (clients of other
languages read it before they have a token)."""


LISTS = frozenset({"GET /v1/leases", "GET /v1/elections", "GET /v1/semaphores", "GET /v1/rwlocks",
                   "GET /v1/groups"})
"""List routes: their name is the prefix asked for."""


class AuthFileError(ValueError):
    """The auth file is unreadable or malformed: one line naming the file and the field."""


@dataclass(frozen=True, slots=True)
class Grant:
    prefix: str
    role: Role


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    token_sha256: bytes
    grants: tuple[Grant, ...]

    def may(self, need: Role, name: str) -> bool:
        """Whether a role at least ``need`` covers ``name`` (a name, or a list's prefix)."""
        return any(
            grant.role == "admin"
            or (_RANK[grant.role] >= _RANK[need] and name.startswith(grant.prefix))
            for grant in self.grants
        )

    @property
    def admin(self) -> bool:
        return any(grant.role == "admin" for grant in self.grants)


def token_sha256(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class Authenticator:
    """The principals of one auth file, matched by token hash in constant time."""

    def __init__(self, principals: Mapping[str, Principal], *, metrics_need_token: bool = False
                 ) -> None:  # fmt: skip
        assert principals, "an auth file names at least one principal"
        self.principals = tuple(principals.values())
        self.metrics_need_token = metrics_need_token

    def authenticate(self, authorization: str | None) -> Principal | None:
        """The principal whose token is the bearer token of ``authorization``, or None."""
        if authorization is None:
            return None
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        digest = token_sha256(token)
        found: Principal | None = None
        for principal in self.principals:  # every one, whatever matched before
            if hmac.compare_digest(digest, principal.token_sha256):
                found = principal
        return found

    def authorize(self, request: web.Request, principal: Principal) -> None:
        """Raise ``Forbidden`` unless ``principal`` may use the request's route on its name."""
        route, name = route_of(request)
        if route is None:
            return  # no such route: the router answers 404 (after authentication)
        need = RULES.get(route)
        if need is None:
            if not principal.admin:
                raise Forbidden(f"{route} has no access rule: only admin may use it")
            return
        if need == "open" or need == "metrics" or need == "token":
            return
        if need == "locker":
            if not any(grant.role in ("lock", "admin") for grant in principal.grants):
                raise Forbidden(f"principal {principal.name!r} has no lock role: it may not "
                                "open or end sessions", principal=principal.name)  # fmt: skip
            return
        if name is None:  # a list: the prefix asked for must be covered whole
            name = query_prefix(request)
        if not principal.may(need, name):
            what = f"names under {name!r}" if route in LISTS else repr(name)
            raise Forbidden(f"principal {principal.name!r} may not {need} {what}",
                            principal=principal.name)  # fmt: skip


def auth_middleware(authenticator: Authenticator, local_path: Callable[[web.Request], str],
                    cluster_token: str | None = None) -> Middleware:  # fmt: skip
    """A middleware (inside the JSON error shape, outside forwarding) that sets
    ``request[PRINCIPAL]`` and answers 401/403; ``local_path(request)`` strips the mount.

    A request that shows the cluster token instead (``X-Paxlock-Cluster-Token``) comes from
    a member: an embedded program's ``node.leases`` call sent on to the primary. It acts as
    the anonymous principal ``""`` — the one in-process calls on the primary act as — with
    every role: whoever holds the cluster token can already speak for the whole cluster."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = local_path(request)
        is_metrics = path == "/metrics"
        outside = not path.startswith("/v1/") and path != "/v1" and not is_metrics
        if outside or path in OPEN_V1:
            return await handler(request)
        if is_metrics and not authenticator.metrics_need_token:
            return await handler(request)
        if cluster_token and hmac.compare_digest(
            request.headers.get(MEMBER_TOKEN_HEADER, "").encode(), cluster_token.encode()
        ):
            request[PRINCIPAL] = ""
            return await handler(request)
        principal = authenticator.authenticate(request.headers.get("Authorization"))
        if principal is None:
            raise Unauthenticated("this API needs Authorization: Bearer TOKEN with a valid "
                                  "token (--auth)")  # fmt: skip
        request[PRINCIPAL] = principal.name
        authenticator.authorize(request, principal)
        return await handler(request)

    return middleware


# -- the file ------------------------------------------------------------------------------


def load_auth(path: str | Path, *, metrics_need_token: bool = False) -> Authenticator:
    """Read and check an auth file; ``AuthFileError`` says what is wrong, in one line."""
    try:
        with open(path, "rb") as file:
            table = tomllib.load(file)
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise AuthFileError(f"cannot read auth file {path}: {error}") from None
    try:
        principals = parse_principals(table)
    except AuthFileError as error:
        raise AuthFileError(f"auth file {path}: {error}") from None
    return Authenticator(principals, metrics_need_token=metrics_need_token)


def parse_principals(table: Mapping[str, Any]) -> dict[str, Principal]:
    unknown = sorted(set(table) - {"principals"})
    if unknown:
        raise AuthFileError(f"unknown top-level key {unknown[0]!r} (only [principals.NAME])")
    entries = table.get("principals")
    if not isinstance(entries, dict) or not entries:
        raise AuthFileError("no principals: add a [principals.NAME] table")
    principals: dict[str, Principal] = {}
    seen: dict[bytes, str] = {}
    for name, entry in entries.items():
        principal = _principal(name, entry)
        if principal.token_sha256 in seen:
            raise AuthFileError(f"principals {seen[principal.token_sha256]!r} and {name!r} "
                                "have the same token_sha256")  # fmt: skip
        seen[principal.token_sha256] = name
        principals[name] = principal
    return principals


def _principal(name: str, entry: Any) -> Principal:
    where = f"principals.{name}"
    if not 1 <= len(name) <= PRINCIPAL_CHARS_MAX:
        raise AuthFileError(f"{where}: a principal name has 1 to 256 characters")
    if not isinstance(entry, dict):
        raise AuthFileError(f"{where} must be a table")
    unknown = sorted(set(entry) - {"token_sha256", "roles"})
    if unknown:
        raise AuthFileError(f"{where}: unknown key {unknown[0]!r} (token_sha256, roles)")
    digest = entry.get("token_sha256")
    if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
        raise AuthFileError(f"{where}.token_sha256 must be 64 hex digits (the SHA-256 of "
                            "the token, e.g. from sha256sum), not the token")  # fmt: skip
    roles = entry.get("roles")
    if not isinstance(roles, list) or not roles:
        raise AuthFileError(f"{where}.roles must be a non-empty list of "
                            '{ prefix = "...", role = "read|lock|admin" }')  # fmt: skip
    grants = tuple(_grant(f"{where}.roles[{i}]", role) for i, role in enumerate(roles))
    return Principal(name, bytes.fromhex(digest), grants)


def _grant(where: str, item: Any) -> Grant:
    if not isinstance(item, dict):
        raise AuthFileError(f'{where} must be {{ prefix = "...", role = "..." }}')
    unknown = sorted(set(item) - {"prefix", "role"})
    if unknown:
        raise AuthFileError(f"{where}: unknown key {unknown[0]!r} (prefix, role)")
    role = item.get("role")
    if role not in _RANK:
        raise AuthFileError(f"{where}.role must be read, lock or admin, not {role!r}")
    prefix = item.get("prefix", "" if role == "admin" else None)
    if not isinstance(prefix, str) or not PREFIX_PATTERN.fullmatch(prefix):
        raise AuthFileError(f"{where}.prefix must be a string of [A-Za-z0-9._/-], 0 to 256 "
                            '("" for every name)')  # fmt: skip
    if role == "admin" and prefix:
        raise AuthFileError(f"{where}: admin covers every name; give prefix \"\" or none")
    return Grant(prefix, role)
