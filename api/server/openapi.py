"""The OpenAPI 3.1 document of the HTTP API, built from the msgspec types the server decodes
requests with and the ``responses`` Structs (``msgspec.json.schema_components``): no second,
hand-kept schema. The operations are listed in ``openapi_paths``; examples in
``openapi_examples``. The committed ``api/openapi.json`` is this module's output (a test
checks), served at ``GET /v1/openapi.json``. Regenerate it with
``python -m paxlock.api.server.openapi > api/openapi.json``.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import re
from typing import Any

import msgspec
from aiohttp import web

from paxlock import __version__
from paxlock.api.server import responses, wire
from paxlock.api.server.openapi_examples import EXAMPLES, LINKS
from paxlock.api.server.openapi_paths import OPERATIONS, Op

REF = "#/components/schemas/{name}"
NAME_PATTERN = f"^{wire.NAME_PATTERN.pattern}$"
GROUP_PATTERN = r"^(?!(?:.*/)?(?:members|leader)(?:/|$))[A-Za-z0-9._/-]{1,256}$"

DESCRIPTION = """\
paxlock's HTTP API: leases, elections, sessions, semaphores, \
read/write locks and groups on a Multi-Paxos cluster. Any member answers: one that is not \
the primary passes the request on (`X-Paxlock-Primary` names the primary that answered).

Names match `[A-Za-z0-9._/-]{1,256}` and may contain `/`: send a `/` inside a name as is \
or percent-encoded (`%2F`); the server decodes the path before splitting off the `:verb` \
(names cannot contain `:`), so both reach the same name. Send `.` and `..` segments \
encoded (`%2E`), or HTTP clients and the server normalize them away. A group name may not \
have a path segment `members` or `leader` (the server refuses to create one; its routes \
split the path there).

Every error is `{"error": CODE, "message": TEXT}`, with details for some codes \
(`holder` and `expires_in` of a `held`; `retry_after_s` of a 429 or 503). 429 and 503 carry \
`Retry-After`. With `--auth`, every `/v1` request needs `Authorization: Bearer TOKEN` \
(401 without a valid one, 403 outside its roles), but for this document; `/healthz` and \
`/readyz` are open; `/metrics` needs a token only with `--auth-metrics`.

What this document cannot say: a grant takes `ttl` or `session`, exactly one (written as \
a `oneOf`); `value` is at most 4096 bytes of UTF-8, not characters; a body's `request_id` \
and the `Idempotency-Key` header, both given, must be equal (else 400), and a request id \
names one request: sent again with another request, it is a 400; the server takes \
any 1..256 characters of UTF-8 in `Idempotency-Key`, the document asks for ASCII (tabs, \
spaces and at least one visible character)."""


@functools.cache
def document() -> dict[str, Any]:
    """The whole document (cached: it depends on code only)."""
    bodies = sorted({op.body for op in OPERATIONS.values() if op.body is not None},
                    key=lambda kind: kind.__name__)  # fmt: skip
    _, schemas = msgspec.json.schema_components([*bodies, *responses.RESPONSES], ref_template=REF)
    for name, example in EXAMPLES.items():
        schemas[name]["examples"] = [example]
    for body in bodies:
        _ttl_or_session(schemas[body.__name__])
    _value_in_bytes(schemas)
    _base64_pattern(schemas)
    paths: dict[str, dict[str, Any]] = {}
    for key, op in OPERATIONS.items():
        method, path = key.split(" ", 1)
        item = paths.setdefault(path, {})
        if "{" in path:
            item["parameters"] = [{"$ref": f"#/components/parameters/{p}"}
                                  for p in re.findall(r"{(\w+)}", path)]  # fmt: skip
        item[method.lower()] = _operation(method, path, op)
    return {
        "openapi": "3.1.0",
        "info": {"title": "paxlock", "version": __version__, "description": DESCRIPTION,
                 "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"}},  # fmt: skip
        "tags": [{"name": tag} for tag in dict.fromkeys(op.tag for op in OPERATIONS.values())],
        "security": [{"bearerAuth": []}, {}],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "parameters": _parameters(),
            "headers": _headers(),
            "responses": {str(status): _error(status) for status in sorted(ERRORS)},
            "securitySchemes": {"bearerAuth": {
                "type": "http", "scheme": "bearer",
                "description": "A token of the `--auth` file (only when the server has one)"}},
        },
    }  # fmt: skip


def _operation(method: str, path: str, op: Op) -> dict[str, Any]:
    key = f"{method} {path}"
    out: dict[str, Any] = {"operationId": operation_id(key), "summary": op.summary,
                           "tags": [op.tag]}  # fmt: skip
    if op.description:
        out["description"] = op.description
    if not path.startswith("/v1/") or path == "/v1/openapi.json":
        out["security"] = [] if path != "/metrics" else [{"bearerAuth": []}, {}]
    params = [{"$ref": f"#/components/parameters/{q}"} for q in op.query]
    if op.idempotent:
        params.append({"$ref": "#/components/parameters/Idempotency-Key"})
    if op.stream:
        params.append({"$ref": "#/components/parameters/Last-Event-ID"})
    if params:
        out["parameters"] = params
    if op.body is not None:
        out["requestBody"] = {
            "required": not op.body_optional,
            "content": {"application/json": {"schema": _ref(op.body)}},
        }  # fmt: skip
    out["responses"] = {str(op.status): _success(op, key),
                        **({"204": _no_change()} if op.long_poll else {}),
                        **{str(s): {"$ref": f"#/components/responses/{s}"}
                           for s in op.errors}}  # fmt: skip
    return out


def _success(op: Op, key: str) -> dict[str, Any]:
    content: dict[str, Any]
    if key == "GET /metrics":
        content = {"text/plain": {"schema": {"type": "string"}}}
    elif key == "GET /v1/openapi.json":
        content = {"application/json": {"schema": {"type": "object"}}}
    else:
        assert op.ok is not None, key
        content = {"application/json": {"schema": _ref(op.ok)}}
    if op.stream:
        content["text/event-stream"] = {
            "schema": {"type": "string", "description": f"With `Accept: text/event-stream`: "
                       f"{op.stream}; keepalive comments between."}}  # fmt: skip
    out: dict[str, Any] = {"description": op.summary, "headers": _stamps(key),
                           "content": content}  # fmt: skip
    if key in LINKS:
        out["links"] = LINKS[key]
    return out


def _no_change() -> dict[str, Any]:
    return {"description": "`timeout` passed with no change", "headers": _stamps("GET /v1/")}


def _stamps(key: str) -> dict[str, Any]:
    """The headers every answer has: the node, and on ``/v1`` the primary when known."""
    out = {"X-Paxlock-Node": {"$ref": "#/components/headers/X-Paxlock-Node"}}
    if " /v1/" in key:
        out["X-Paxlock-Primary"] = {"$ref": "#/components/headers/X-Paxlock-Primary"}
    return out


ERRORS: dict[int, str] = {
    400: "`bad_request`: a malformed body, name or query parameter",
    401: "`unauthenticated`: no valid bearer token (`--auth`)",
    403: "`forbidden`: the token's roles do not cover this name or route",
    404: "`not_found`: no such name, or no such route or action",
    409: "a refusal by the state: `held`, `not_holder`, `request_expired`, `exists`, "
         "`not_empty`, `limit_mismatch`, `conflict`, `change_in_progress`, ...",
    413: "`payload_too_large`: a body over 1 MiB",
    429: "`too_many`: a limit (request rate, open streams, waiters for one name)",
    503: "`unavailable`: no primary known, no quorum, or an unknown outcome (retry with "
         "the same request_id)",
}


def _error(status: int) -> dict[str, Any]:
    headers = _stamps("GET /v1/")
    if status in (429, 503):
        headers["Retry-After"] = {"$ref": "#/components/headers/Retry-After"}
    return {"description": ERRORS[status], "headers": headers,
            "content": {"application/json": {"schema": _ref(responses.Error)}}}  # fmt: skip


def _parameters() -> dict[str, Any]:
    def path(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
        return {"name": name, "in": "path", "required": True, "schema": schema,
                "description": description}  # fmt: skip

    def query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
        return {"name": name, "in": "query", "required": False, "schema": schema,
                "description": description}  # fmt: skip

    name = {"type": "string", "pattern": NAME_PATTERN}
    return {
        "name": path("name", name, "The name; may contain `/`"),
        "id": path("id", {"type": "string", "pattern": NAME_PATTERN},
                   "A session id (`s` and its token) or a member id"),
        "group": path("group", {"type": "string", "pattern": GROUP_PATTERN},
                      "The group's name: no path segment `members` or `leader`"),
        "member": path("member", name, "The member's name in its group"),
        "prefix": query("prefix", {"type": "string", "pattern": f"^{wire.PREFIX_PATTERN.pattern}$"},
                        "Only names starting with this"),
        "consistent": query("consistent", {"type": "boolean", "default": True},
                            "false: this node's own, possibly stale, state (no round trip "
                            "to the primary); also 1/0, yes/no, any case"),
        "holder": query("holder", {"type": "string", "maxLength": wire.ID_CHARS_MAX},
                        "Only this holder's sessions"),
        "after": query("after", {"type": "integer", "minimum": 0, "default": 0},
                       "The revision already seen"),
        "timeout": query("timeout", {"type": "number", "minimum": 0,
                                     "maximum": wire.WAIT_S_MAX,
                                     "default": wire.OBSERVE_TIMEOUT_S_DEFAULT},
                         "Seconds to wait for a change (long poll)"),
        "Idempotency-Key": {
            "name": wire.IDEMPOTENCY_HEADER, "in": "header", "required": False,
            "schema": {"type": "string", "minLength": 1, "maxLength": wire.ID_CHARS_MAX,
                       "pattern": r"^[\t -~]*[!-~][\t -~]*$"},
            "description": "The request id, instead of the body's `request_id` (equal to it "
            "when both are given): a retry with the same id is applied at most once"},
        "Last-Event-ID": {
            "name": "Last-Event-ID", "in": "header", "required": False,
            "schema": {"type": "string"},
            "description": "Event streams: resume after this revision (an EventSource sends "
            "it when it reconnects); ignored unless it is an integer above `after`"},
    }  # fmt: skip


def _headers() -> dict[str, Any]:
    return {
        "X-Paxlock-Node": {"required": True, "schema": {"type": "string"},
                           "description": "The member that answered"},
        "X-Paxlock-Primary": {"required": False, "schema": {"type": "string"},
                              "description": "The primary, when one is known"},
        "Retry-After": {"required": True, "schema": {"type": "integer", "minimum": 1},
                        "description": "Seconds to wait before retrying"},
    }  # fmt: skip


def _ref(kind: type[msgspec.Struct]) -> dict[str, str]:
    return {"$ref": REF.format(name=kind.__name__)}


def _ttl_or_session(schema: dict[str, Any]) -> None:
    """``wire.check_ttl_or_session`` as JSON Schema: exactly one of the two, non-null."""
    properties = schema["properties"]
    if "ttl" not in properties or "session" not in properties:
        return
    ttl, session = (_non_null(properties[key]) for key in ("ttl", "session"))
    schema["oneOf"] = [
        {"required": ["ttl"], "properties": {"ttl": ttl, "session": {"type": "null"}}},
        {"required": ["session"], "properties": {"session": session, "ttl": {"type": "null"}}},
    ]  # fmt: skip


def _non_null(schema: dict[str, Any]) -> dict[str, Any]:
    (kept,) = (s for s in schema["anyOf"] if s.get("type") != "null")
    return dict(kept)


def _value_in_bytes(schemas: dict[str, Any]) -> None:
    """``value`` is bounded in UTF-8 bytes (``wire._check_value``): say so."""
    for schema in schemas.values():
        value = schema.get("properties", {}).get("value")
        if value is not None and "anyOf" in value:
            for option in value["anyOf"]:
                if option.get("type") == "string":
                    option["maxLength"] = wire.VALUE_BYTES_MAX
                    option["description"] = (f"at most {wire.VALUE_BYTES_MAX} bytes of "
                                             "UTF-8 (fewer characters when they take more)")


BASE64_PATTERN = "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"


def _base64_pattern(schemas: dict[str, Any]) -> None:
    """``bytes`` fields are padded base64 (msgspec refuses anything else, a 400), which
    ``contentEncoding`` only annotates: say it with a pattern that validators check."""
    for schema in schemas.values():
        for field in schema.get("properties", {}).values():
            if field.get("contentEncoding") == "base64":
                field["pattern"] = BASE64_PATTERN


def operation_id(key: str) -> str:
    """``POST /v1/leases/{name}:acquire`` -> ``postLeaseAcquire``: the words of the path,
    a collection before its parameter in the singular, then the verb."""
    method, path = key.split(" ", 1)
    path, _, verb = path.partition(":")
    segments = path.removeprefix("/v1").strip("/").split("/")
    words = []
    for i, segment in enumerate(segments):
        if segment.startswith("{"):
            continue
        named = i + 1 < len(segments) and segments[i + 1].startswith("{")
        words.append(segment[:-1] if named and segment.endswith("s") else segment)
    words.append(verb)
    return method.lower() + "".join(w.capitalize() for w in re.findall(r"[a-z]+", " ".join(words)))


def render() -> str:
    """The committed file's text."""
    return json.dumps(document(), indent=1, ensure_ascii=False) + "\n"


@functools.cache
def _committed() -> bytes:
    return importlib.resources.files("paxlock.api").joinpath("openapi.json").read_bytes()


async def serve(request: web.Request) -> web.StreamResponse:
    """``GET /v1/openapi.json``: the committed document (package data)."""
    return web.Response(body=_committed(), content_type="application/json")


if __name__ == "__main__":
    print(render(), end="")
