"""The OpenAPI document (``api/server/openapi.py``): valid OpenAPI 3.1, the committed
``api/openapi.json`` is the generator's output, it lists exactly the routes the app serves
(read from the router and the dispatch tables, both ways), and the response Structs it is
built from match the JSON the views really produce (strict decoding: no field missing, none
unknown)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp import web
from openapi_spec_validator import validate

from paxlock.api.server import openapi, responses as r, wire
from paxlock.api.server.coord_wire import SessionHolderBody
from paxlock.api.server.auth import RULES
from paxlock.api.server.errors import error_response, lease_error_response
from paxlock.api.server.group_routes import TEMPLATES as GROUP_TEMPLATES
from paxlock.api.server.members import configuration_json
from paxlock.api.server.openapi_examples import EXAMPLES
from paxlock.api.server.openapi_paths import OPERATIONS
from paxlock.api.server.routes import COLLECTIONS, add_routes
from paxlock.coordinator.cluster_view import PrimaryChanges
from paxlock.coordinator.core.messages import Configuration, Member
from paxlock.coordinator.errors import (
    BadRequest, Held, NotHolder, NotPrimary, TooMany, Unavailable,
)  # fmt: skip
from paxlock.coordinator.views import (
    GroupChanges, GroupEvent, GroupView, HoldView, LeaseView, MemberView, PermitView,
    SessionView, SharedHolderView, SharedView,
)  # fmt: skip

COMMITTED = Path(openapi.__file__).resolve().parents[1] / "openapi.json"
EXCLUDED = ("/internal/", "/ui")
"""The members' own routes and the status page's static files: not the API."""


def _shape(route: str) -> str:
    """Parameter names aside: ``GET /v1/sessions/{id}`` and ``{name}`` are one route."""
    return re.sub(r"{[^}]*}", "{}", route)


def served_routes() -> set[str]:
    """``METHOD template`` of every public route: the router's plain routes, and what the
    dispatchers of ``/v1/{collection}/{tail}`` and ``/v1/groups/{tail}`` take."""
    app = web.Application()
    add_routes(app.router)
    routes: set[str] = set()
    for route in app.router.routes():
        canonical = route.resource.canonical if route.resource is not None else ""
        if route.method in ("HEAD", "*") or canonical.startswith(EXCLUDED):
            continue
        assert not canonical.endswith("{tail}"), canonical
        routes.add(f"{route.method} {canonical}")
    tails = {r.resource.canonical for r in app.router.routes()
             if r.resource is not None and r.resource.canonical.endswith("/{tail}")}  # fmt: skip
    assert tails == {f"/v1/{c}/{{tail}}" for c in (*COLLECTIONS, "groups")}
    for collection, actions in COLLECTIONS.items():
        for method, verb in actions:
            routes.add(f"{method} /v1/{collection}/{{name}}" + (f":{verb}" if verb else ""))
    return {_shape(route) for route in routes | set(GROUP_TEMPLATES)}


def documented_routes() -> set[str]:
    paths = openapi.document()["paths"]
    return {_shape(f"{method.upper()} {path}") for path, item in paths.items()
            for method in item if method != "parameters"}  # fmt: skip


def test_the_document_is_valid_openapi_3_1() -> None:
    document = openapi.document()
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_the_committed_document_is_the_generators_output() -> None:
    assert COMMITTED.read_text() == openapi.render(), (
        "api/openapi.json is stale: python -m paxlock.api.server.openapi > api/openapi.json")


def test_every_served_route_is_documented_and_every_documented_route_served() -> None:
    served, documented = served_routes(), documented_routes()
    assert served - documented == set(), "routes missing from the document"
    assert documented - served == set(), "documented routes the server does not have"
    assert {_shape(key) for key in OPERATIONS} == served
    assert {_shape(rule) for rule in RULES if not rule.split(" ", 1)[1].startswith(EXCLUDED)
            } == served  # fmt: skip


def test_every_operation_answers_errors_in_the_json_error_shape() -> None:
    error = {"$ref": "#/components/schemas/Error"}
    document = openapi.document()
    for status, answer in document["components"]["responses"].items():
        assert answer["content"]["application/json"]["schema"] == error, status
        if status in ("429", "503"):
            assert "Retry-After" in answer["headers"]
    for path, item in document["paths"].items():
        for method, op in item.items():
            if method == "parameters":
                continue
            codes = [int(code) for code in op["responses"]]
            assert any(200 <= code < 300 for code in codes), (method, path)
            if path.startswith("/v1/") and path != "/v1/openapi.json":
                assert {400, 401, 403, 429} <= set(codes) or path in (
                    "/v1/cluster", "/v1/members", "/v1/changes"), (method, path)
            if "{" in path:
                assert 404 in codes, (method, path)
            if "requestBody" in op:
                assert 413 in codes, (method, path)


def test_every_example_decodes_strictly_into_its_struct() -> None:
    """Examples are data the server accepts (bodies, with their own checks) or sends."""
    kinds = {kind.__name__: kind for kind in (*r.RESPONSES, r.GroupMember)}
    kinds |= {op.body.__name__: op.body for op in OPERATIONS.values() if op.body is not None}
    assert set(EXAMPLES) <= set(kinds)
    for name, example in EXAMPLES.items():
        msgspec.json.decode(msgspec.json.encode(example), type=kinds[name], strict=True)


def _strict(payload: Any, kind: type[msgspec.Struct]) -> None:
    """Decode the JSON the server would send into ``kind``: every field known, none missing."""
    msgspec.json.decode(msgspec.json.encode(payload), type=kind)


LEASE = LeaseView("a/b", "alice", 7, 9, 10.0, 9.5, "v", 0.0)
FREE = LeaseView("a/b", None, None, 9, None, None, None, 0.0)
BOUND = LeaseView("a/b", "alice", 7, 9, 30.0, 29.0, None, 0.0, session="s3")
HOLD = HoldView("lease", "a/b", "alice", 7)
MEMBER = MemberView("g", "m", b"\x00caps", "s3", 11, 12)


@pytest.mark.parametrize("view", [LEASE, FREE, BOUND], ids=["held", "free", "session"])
def test_lease_and_leader_views_match_their_structs(view: LeaseView) -> None:
    _strict(view.as_lease(), r.Lease)
    _strict(view.as_leader(), r.Leader)
    _strict({"leases": [view.as_lease()]}, r.LeaseList)
    _strict({"elections": [view.as_leader()]}, r.LeaderList)


def test_session_views_match_their_structs() -> None:
    plain = SessionView("s3", "alice", 30.0, 3, 4, 29.0)
    with_holds = SessionView("s3", "alice", 30.0, 3, 4, None, holds=(HOLD,))
    _strict(plain.as_json(), r.Session)
    _strict(with_holds.as_json(), r.Session)
    _strict({"sessions": [plain.as_json()]}, r.SessionList)
    _strict({"closed": True, "freed": [HOLD.as_json()]}, r.SessionClosed)


def test_semaphore_and_rwlock_views_match_their_structs() -> None:
    permit = PermitView("semaphore", "s", "alice", "permit", 5, 5, 3, 10.0, 9.0, None, 0.0,
                        ("alice", "bob"))  # fmt: skip
    rw = PermitView("rwlock", "l", "alice", "read", 5, 5, 0, None, 9.0, "s3", 1.0, ("alice",))
    _strict(permit.as_json(), r.Permit)
    _strict(rw.as_json(), r.RwHold)
    holder = SharedHolderView("alice", "write", 5, 9.0, None)
    semaphore = SharedView("semaphore", "s", 3, 5, (holder,), blocked=1)
    rwlock = SharedView("rwlock", "l", 0, 5, (holder,))
    _strict(semaphore.as_json(), r.Semaphore)
    _strict(rwlock.as_json(), r.Rwlock)
    _strict({"semaphores": [semaphore.as_json()]}, r.SemaphoreList)
    _strict({"rwlocks": [rwlock.as_json()]}, r.RwlockList)
    _strict({"current": False, "token": None}, r.Verified)
    _strict({"released": True}, r.Released)


def test_group_views_match_their_structs() -> None:
    group = GroupView("g", 12, (MEMBER,))
    _strict(group.as_json(), r.Group)
    _strict(MEMBER.as_json(), r.GroupMember)
    assert msgspec.json.decode(msgspec.json.encode(MEMBER.as_json()),
                               type=r.GroupMember).capabilities == b"\x00caps"  # fmt: skip
    _strict({"members": [MEMBER.as_json()], "revision": 12}, r.GroupMembers)
    changes = GroupChanges("g", 13, (GroupEvent("left", "m2", 13), GroupEvent("created", None, 1)),
                           (MEMBER,), complete=False)  # fmt: skip
    _strict(changes.as_json(), r.GroupChanges)
    _strict({"deleted": True}, r.Deleted)
    _strict({"left": True}, r.Left)


def test_a_configuration_matches_its_struct() -> None:
    config = Configuration(3, (Member("n1", "i1", "http://n1:1"),),
                           (Member("n4", "i4", "http://n4:1"),))  # fmt: skip
    _strict(configuration_json(config), r.Configuration)


@pytest.mark.parametrize("error", [
    Held("a/b is held", holder="alice", expires_in=3.5), NotHolder("no", holder=None, token=None),
    TooMany("slow down", retry_after_s=1.5, limit="rate"), Unavailable("no quorum"),
    NotPrimary(None), NotPrimary("n2"),
], ids=lambda error: type(error).__name__)  # fmt: skip
def test_error_bodies_match_the_error_struct(error: Exception) -> None:
    assert isinstance(error, Held | NotHolder | TooMany | Unavailable | NotPrimary)
    body = json.loads(lease_error_response(error).body)  # type: ignore[arg-type]
    _strict(body, r.Error)
    body = json.loads(error_response(503, "unavailable", "not ready",  # type: ignore[arg-type]
                                     details={"ready": False, "reason": "x"}).body)
    _strict(body, r.Error)


def test_primary_changes_match_their_struct() -> None:
    changes = PrimaryChanges(None, None, 1000.0)
    changes.saw("n1", "3.n1", 1001.25)
    for change in changes.as_json():
        _strict(change, r.PrimaryChange)


@pytest.mark.parametrize("raw, token", [(b'{"holder": "a", "token": 2.0}', 2),
                                        (b'{"holder": "a", "token": 2}', 2)])
def test_an_integral_float_is_an_integer_as_json_schema_says(raw: bytes, token: int) -> None:
    """Regression (schemathesis): the document's ``"type": "integer"`` admits ``2.0`` (JSON
    Schema counts it an integer), which the server refused 400 ``Expected int, got float``."""
    assert wire.decode_body(raw, wire.RenewBody).token == token
    assert coord_wire_body(raw).token == token


def coord_wire_body(raw: bytes) -> Any:
    return wire.decode_body(raw, SessionHolderBody)  # token: int | None


@pytest.mark.parametrize("raw", [b'{"holder": "a", "token": 2.5}', b'{"holder": "a", "token": 1e300}',
                                 b'{"holder": "a", "token": 2.0, "x": 1}', b'{"holder": 2.0, "token": 2}'])
def test_other_floats_are_still_refused(raw: bytes) -> None:
    with pytest.raises(BadRequest):
        wire.decode_body(raw, wire.RenewBody)
