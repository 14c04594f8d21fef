"""Every bad input of DESIGN.md §4 / issue 4 item 3 over real HTTP on a real cluster: malformed
JSON, wrong types, unknown and missing fields, out-of-range durations, invalid names, oversized
values -> 400 ``bad_request``; bodies over 1 MiB -> 413 ``payload_too_large``; unknown routes
-> JSON 404; wrong methods -> JSON 405. Each case is sent to the primary and to a follower
(which must answer it the same, itself or by forwarding), and none changes any state.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

harness = sys.modules["paxlock_test_harness"]  # registered by tests/conftest.py
http = harness.http
raw_request = harness.raw_request

MIB = 1024 * 1024
NAME = "bad/x"
JSON_HEADERS = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with harness.running_cluster(Path(tmp_path_factory.mktemp("bad_input"))) as running:
        yield running


@pytest.fixture(scope="module")
def held(cluster: Any) -> dict[str, Any]:
    """A lease and an election held on ``bad/held`` (so that renew/release/proclaim with bad
    bodies are refused for the body, not for the state)."""
    primary = cluster.wait_ready()
    status, _, lease = http("POST", f"{cluster.url(primary)}/v1/leases/bad/held:acquire",
                            {"holder": "alice", "ttl": 600})  # fmt: skip
    assert status == 200, lease
    status, _, leader = http("POST", f"{cluster.url(primary)}/v1/elections/bad/elected:campaign",
                             {"candidate": "c1", "ttl": 600, "value": "v"})  # fmt: skip
    assert status == 200, leader
    return {"lease": lease, "leader": leader}


@pytest.fixture
def nodes(cluster: Any) -> list[str]:
    primary = cluster.wait_ready()
    return [primary, cluster.followers(primary)[0]]


def assert_json_error(answer: tuple[int, dict[str, str], Any], status: int, code: str,
                      what: str) -> None:  # fmt: skip
    got_status, headers, body = answer
    assert got_status == status, f"{what}: {got_status} {body}"
    assert headers.get("Content-Type", "").startswith("application/json"), (what, headers)
    assert isinstance(body, dict) and body.get("error") == code, (what, body)
    assert isinstance(body.get("message"), str) and body["message"], (what, body)


# -- bodies --------------------------------------------------------------------------------

ACQUIRE_BAD_BODIES: dict[str, bytes | dict[str, Any] | list[Any] | str | int | None] = {
    # malformed JSON
    "empty body": b"",
    "whitespace only": b"  \n ",
    "truncated": b'{"holder": "a", "ttl": 5',
    "single quotes": b"{'holder': 'a', 'ttl': 5}",
    "trailing comma": b'{"holder": "a", "ttl": 5,}',
    "not json": b"holder=a&ttl=5",
    "NaN literal": b'{"holder": "a", "ttl": NaN}',
    "two documents": b'{"holder": "a", "ttl": 5} {}',
    "utf-8 BOM": b'\xef\xbb\xbf{"holder": "a", "ttl": 5}',
    # not an object
    "array": [],
    "null": None,
    "string": "acquire",
    "number": 5,
    # wrong types
    "holder number": {"holder": 5, "ttl": 5},
    "holder null": {"holder": None, "ttl": 5},
    "holder object": {"holder": {"id": "a"}, "ttl": 5},
    "ttl string": {"holder": "a", "ttl": "5"},
    "ttl bool": {"holder": "a", "ttl": True},
    "ttl null": {"holder": "a", "ttl": None},
    "ttl list": {"holder": "a", "ttl": [5]},
    "wait string": {"holder": "a", "ttl": 5, "wait": "1"},
    "wait null": {"holder": "a", "ttl": 5, "wait": None},
    "lock_delay string": {"holder": "a", "ttl": 5, "lock_delay": "0"},
    "value number": {"holder": "a", "ttl": 5, "value": 5},
    "value object": {"holder": "a", "ttl": 5, "value": {"k": "v"}},
    "request_id number": {"holder": "a", "ttl": 5, "request_id": 7},
    # unknown fields
    "misspelt ttl": {"holder": "a", "ttl": 5, "tll": 5},
    "token on acquire": {"holder": "a", "ttl": 5, "token": 1},
    "candidate on acquire": {"holder": "a", "ttl": 5, "candidate": "a"},
    # missing fields
    "empty object": {},
    "no ttl": {"holder": "a"},
    "no holder": {"ttl": 5},
    # out of range
    "ttl zero": {"holder": "a", "ttl": 0},
    "ttl negative": {"holder": "a", "ttl": -1},
    "ttl above 3600": {"holder": "a", "ttl": 3600.5},
    "ttl huge": {"holder": "a", "ttl": 1e300},
    "ttl overflow": b'{"holder": "a", "ttl": 1e999}',
    "wait negative": {"holder": "a", "ttl": 5, "wait": -0.5},
    "wait above 3600": {"holder": "a", "ttl": 5, "wait": 3601},
    "lock_delay negative": {"holder": "a", "ttl": 5, "lock_delay": -1},
    "lock_delay above 3600": {"holder": "a", "ttl": 5, "lock_delay": 3601},
    "holder empty": {"holder": "", "ttl": 5},
    "holder too long": {"holder": "h" * 257, "ttl": 5},
    "request_id empty": {"holder": "a", "ttl": 5, "request_id": ""},
    "request_id too long": {"holder": "a", "ttl": 5, "request_id": "r" * 257},
    # oversized values (the limit is 4 KiB of UTF-8, not 4096 characters)
    "value 4097 bytes": {"holder": "a", "ttl": 5, "value": "v" * 4097},
    "value 2049 two-byte chars": {"holder": "a", "ttl": 5, "value": "é" * 2049},
    "value 64 KiB": {"holder": "a", "ttl": 5, "value": "v" * 65536},
}


NON_UTF8_BODIES = {
    "invalid byte in holder": b'{"holder": "\xff\xfe", "ttl": 5}',
    "truncated two-byte char in value": b'{"holder": "a", "ttl": 5, "value": "\xc3"}',
    "utf-16 surrogate encoded as utf-8": b'{"holder": "a\xed\xa0\x80", "ttl": 5}',
}


@pytest.mark.parametrize("case", list(NON_UTF8_BODIES))
def test_bodies_that_are_not_utf_8_are_400(cluster: Any, nodes: list[str], case: str) -> None:
    """Regression: msgspec raises ``UnicodeDecodeError`` (not a ``DecodeError``) for invalid
    UTF-8 inside a JSON string, which ``api/server/wire.py`` once let through to a 500."""
    for node in nodes:
        answer = raw_request(f"{cluster.url(node)}/v1/leases/{NAME}:acquire", "POST",
                             NON_UTF8_BODIES[case], JSON_HEADERS)  # fmt: skip
        assert_json_error(answer, 400, "bad_request", f"{case} on {node}")


def encode(body: bytes | dict[str, Any] | list[Any] | str | int | None) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()


@pytest.mark.parametrize("case", list(ACQUIRE_BAD_BODIES))
def test_bad_acquire_bodies_are_400(cluster: Any, nodes: list[str], case: str) -> None:
    body = encode(ACQUIRE_BAD_BODIES[case])
    for node in nodes:
        answer = raw_request(f"{cluster.url(node)}/v1/leases/{NAME}:acquire", "POST", body,
                             JSON_HEADERS)  # fmt: skip
        assert_json_error(answer, 400, "bad_request", f"{case} on {node}")


def _other_bodies(held: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """(path after /v1/, case, body) for every other route with a body."""
    token = held["lease"]["token"]
    etoken = held["leader"]["token"]
    lease, election = "leases/bad/held", "elections/bad/elected"
    return [
        (f"{lease}:renew", "missing token", {"holder": "alice"}),
        (f"{lease}:renew", "missing holder", {"token": token}),
        (f"{lease}:renew", "token string", {"holder": "alice", "token": str(token)}),
        (f"{lease}:renew", "token float", {"holder": "alice", "token": token + 0.5}),
        (f"{lease}:renew", "token negative", {"holder": "alice", "token": -1}),
        (f"{lease}:renew", "unknown field ttl", {"holder": "alice", "token": token, "ttl": 9}),
        (f"{lease}:renew", "malformed", b'{"holder": "alice", "token": }'),
        (f"{lease}:release", "missing token", {"holder": "alice"}),
        (f"{lease}:release", "token null", {"holder": "alice", "token": None}),
        (f"{lease}:release", "holder empty", {"holder": "", "token": token}),
        (f"{lease}:release", "unknown field", {"holder": "alice", "token": token, "force": True}),
        (f"{lease}:release", "array", [token]),
        (f"{lease}:verify", "missing token", {}),
        (f"{lease}:verify", "token string", {"token": "x"}),
        (f"{lease}:verify", "token negative", {"token": -5}),
        (f"{lease}:verify", "token beyond 64 bits", {"token": 2**64}),
        (f"{lease}:renew", "token beyond 64 bits", {"holder": "alice", "token": 2**64}),
        (f"{lease}:release", "token beyond 64 bits", {"holder": "alice", "token": 2**64}),
        (f"{election}:proclaim", "token beyond 64 bits",
         {"candidate": "bob", "token": 2**64, "value": "v"}),
        (f"{election}:resign", "token beyond 64 bits", {"candidate": "bob", "token": 2**64}),
        (f"{lease}:verify", "unknown field", {"token": token, "holder": "alice"}),
        (f"{lease}:verify", "empty body", b""),
        (f"{election}:campaign", "holder instead of candidate", {"holder": "c2", "ttl": 5}),
        (f"{election}:campaign", "missing ttl", {"candidate": "c2"}),
        (f"{election}:campaign", "ttl zero", {"candidate": "c2", "ttl": 0}),
        (f"{election}:campaign", "wait negative", {"candidate": "c2", "ttl": 5, "wait": -1}),
        (f"{election}:campaign", "wait above 3600", {"candidate": "c2", "ttl": 5, "wait": 1e4}),
        (f"{election}:campaign", "lock_delay is a lease field",
         {"candidate": "c2", "ttl": 5, "lock_delay": 1}),
        (f"{election}:campaign", "value 4097 bytes",
         {"candidate": "c2", "ttl": 5, "value": "v" * 4097}),
        (f"{election}:campaign", "value number", {"candidate": "c2", "ttl": 5, "value": 1}),
        (f"{election}:campaign", "malformed", b"{candidate: c2}"),
        (f"{election}:proclaim", "missing value", {"candidate": "c1", "token": etoken}),
        (f"{election}:proclaim", "value too large",
         {"candidate": "c1", "token": etoken, "value": "é" * 2049}),
        (f"{election}:proclaim", "value number",
         {"candidate": "c1", "token": etoken, "value": 3}),
        (f"{election}:proclaim", "missing token", {"candidate": "c1", "value": "v"}),
        (f"{election}:proclaim", "unknown field",
         {"candidate": "c1", "token": etoken, "value": "v", "ttl": 5}),
        (f"{election}:renew", "missing candidate", {"token": etoken}),
        (f"{election}:renew", "token string", {"candidate": "c1", "token": "1"}),
        (f"{election}:renew", "holder instead of candidate", {"holder": "c1", "token": etoken}),
        (f"{election}:resign", "token bool", {"candidate": "c1", "token": True}),
        (f"{election}:resign", "unknown field", {"candidate": "c1", "token": etoken, "x": 1}),
        (f"{election}:resign", "null", None),
    ]


def test_bad_bodies_of_every_other_route_are_400(cluster: Any, nodes: list[str],
                                                 held: dict[str, Any]) -> None:  # fmt: skip
    for path, case, body in _other_bodies(held):
        for node in nodes:
            answer = raw_request(f"{cluster.url(node)}/v1/{path}", "POST", encode(body),
                                 JSON_HEADERS)  # fmt: skip
            assert_json_error(answer, 400, "bad_request", f"{path} {case} on {node}")
    # The lease and the election are untouched by all of that.
    status, _, lease = http("GET", f"{cluster.url(nodes[0])}/v1/leases/bad/held")
    assert status == 200 and {k: lease[k] for k in ("holder", "token", "revision")} == {
        k: held["lease"][k] for k in ("holder", "token", "revision")}
    status, _, leader = http("GET", f"{cluster.url(nodes[0])}/v1/elections/bad/elected")
    assert status == 200 and {k: leader[k] for k in ("leader", "token", "revision", "value")} == {
        k: held["leader"][k] for k in ("leader", "token", "revision", "value")}


def test_values_up_to_4_kib_of_utf_8_are_accepted(cluster: Any, nodes: list[str]) -> None:
    for i, value in enumerate(["v" * 4096, "é" * 2048, "€" * 1365 + "v"]):
        assert len(value.encode()) == 4096
        node = nodes[i % 2]
        status, _, lease = http("POST", f"{cluster.url(node)}/v1/leases/bad/value{i}:acquire",
                                {"holder": "a", "ttl": 5, "value": value})  # fmt: skip
        assert status == 200 and lease["value"] == value, lease
        status, _, _ = http("POST", f"{cluster.url(node)}/v1/leases/bad/value{i}:release",
                            {"holder": "a", "token": lease["token"]})  # fmt: skip
        assert status == 200


def test_idempotency_key_header_must_be_sane_and_agree_with_the_body(
    cluster: Any, nodes: list[str]
) -> None:
    body = {"holder": "a", "ttl": 5, "request_id": "r1"}
    for node in nodes:
        url = f"{cluster.url(node)}/v1/leases/{NAME}:acquire"
        answer = http("POST", url, body, headers={"Idempotency-Key": "r2"})
        assert_json_error(answer, 400, "bad_request", f"differing ids on {node}")
        answer = http("POST", url, {"holder": "a", "ttl": 5},
                      headers={"Idempotency-Key": "k" * 257})  # fmt: skip
        assert_json_error(answer, 400, "bad_request", f"long Idempotency-Key on {node}")


def _acquire_with_raw_key(cluster: Any, node: str, name: str) -> tuple[int, dict[str, str], Any]:
    body = json.dumps({"holder": "a", "ttl": 5}).encode()
    result: tuple[int, dict[str, str], Any] = raw_request(
        f"{cluster.url(node)}/v1/leases/{name}:acquire", "POST", body,
        {**JSON_HEADERS, "Idempotency-Key": b"\xff\xfe"},
    )  # fmt: skip
    return result


def test_an_idempotency_key_that_is_not_utf_8_is_400(cluster: Any, nodes: list[str]) -> None:
    """Regression: aiohttp keeps undecodable header bytes as lone surrogates, which once
    reached the log encoder (``LeaseService._run``) and answered 500."""
    for node in nodes:
        status, headers, body = _acquire_with_raw_key(cluster, node, "bad/rawkey")
        assert_json_error((status, headers, body), 400, "bad_request", f"raw key on {node}")


def test_an_idempotency_key_that_is_not_utf_8_does_not_wedge_the_name(
    cluster: Any, nodes: list[str]
) -> None:
    """Regression: the failed submit once left the name in ``LeaseKeeper._reserved`` for
    good, so waiting acquires of the free name timed out with 409 and waiters were never
    granted on release, until the primary lost office."""
    primary = nodes[0]
    _acquire_with_raw_key(cluster, primary, "bad/wedge")  # whatever it answers
    url = f"{cluster.url(primary)}/v1/leases/bad/wedge"
    if http("GET", url)[0] == 200:  # accepted after all: free the name first
        lease = http("GET", url)[2]
        http("POST", url + ":release", {"holder": lease["holder"], "token": lease["token"]})
    status, _, lease = http("POST", url + ":acquire", {"holder": "b", "ttl": 5, "wait": 1.0})
    assert status == 200, f"a free name was not granted to a waiting acquire: {lease}"
    http("POST", url + ":release", {"holder": "b", "token": lease["token"]})


# -- names -----------------------------------------------------------------------------------

BAD_NAMES = {
    "space": "bad%20name",
    "non-ascii": "caf%C3%A9",
    "star": "a*b",
    "plus": "a+b",
    "semicolon": "a;b",
    "backslash": "a%5Cb",
    "nul": "a%00b",
    "percent": "a%25b",
    "tilde": "a~b",
    "257 chars": "n" * 257,
}

ROUTES_WITH_NAMES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "leases/{}:acquire", {"holder": "a", "ttl": 5}),
    ("POST", "leases/{}:renew", {"holder": "a", "token": 1}),
    ("POST", "leases/{}:release", {"holder": "a", "token": 1}),
    ("POST", "leases/{}:verify", {"token": 1}),
    ("GET", "leases/{}", None),
    ("POST", "elections/{}:campaign", {"candidate": "a", "ttl": 5}),
    ("POST", "elections/{}:proclaim", {"candidate": "a", "token": 1, "value": "v"}),
    ("POST", "elections/{}:renew", {"candidate": "a", "token": 1}),
    ("POST", "elections/{}:resign", {"candidate": "a", "token": 1}),
    ("GET", "elections/{}", None),
    ("GET", "elections/{}:observe?timeout=0", None),
]


@pytest.mark.parametrize("case", list(BAD_NAMES))
def test_invalid_names_are_400_on_every_route(cluster: Any, nodes: list[str], case: str) -> None:
    for method, template, body in ROUTES_WITH_NAMES:
        path = "/v1/" + template.format(BAD_NAMES[case])
        for node in nodes:
            answer = raw_request(cluster.url(node) + path, method,
                                 None if body is None else encode(body), JSON_HEADERS)  # fmt: skip
            assert_json_error(answer, 400, "bad_request", f"{method} {path} on {node}")


def test_a_colon_in_a_name_and_an_empty_name_are_400(cluster: Any, nodes: list[str]) -> None:
    """``:`` separates the verb, so ``a:b:acquire`` names ``a:b``, which is invalid."""
    for node in nodes:
        for path in ["/v1/leases/a:b:acquire", "/v1/leases/:acquire",
                     "/v1/elections/a:b:campaign"]:  # fmt: skip
            body = {"holder": "a", "ttl": 5} if "leases" in path else {"candidate": "a", "ttl": 5}
            answer = http("POST", cluster.url(node) + path, body)
            assert_json_error(answer, 400, "bad_request", f"{path} on {node}")


def test_the_longest_valid_name_is_accepted(cluster: Any, nodes: list[str]) -> None:
    name = "bad/" + "n" * 252
    assert len(name) == 256
    status, _, lease = http("POST", f"{cluster.url(nodes[1])}/v1/leases/{name}:acquire",
                            {"holder": "a", "ttl": 5})  # fmt: skip
    assert status == 200 and lease["name"] == name, lease
    status, _, _ = http("POST", f"{cluster.url(nodes[1])}/v1/leases/{name}:release",
                        {"holder": "a", "token": lease["token"]})  # fmt: skip
    assert status == 200


# -- query parameters ----------------------------------------------------------------------

BAD_QUERIES = [
    "leases?prefix=a%20b",
    "leases?prefix=" + "p" * 257,
    "leases?prefix=caf%C3%A9",
    "leases?consistent=maybe",
    "leases/bad/held?consistent=2",
    "elections/bad/elected?consistent=",
    "elections/bad/elected:observe?after=-1",
    "elections/bad/elected:observe?after=x",
    "elections/bad/elected:observe?after=1.5",
    "elections/bad/elected:observe?timeout=-1",
    "elections/bad/elected:observe?timeout=x",
    "elections/bad/elected:observe?timeout=nan",
    "elections/bad/elected:observe?timeout=inf",
    "elections/bad/elected:observe?timeout=3601",
]


def test_bad_query_parameters_are_400(cluster: Any, nodes: list[str], held: dict[str, Any]
                                      ) -> None:  # fmt: skip
    for query in BAD_QUERIES:
        for node in nodes:
            answer = raw_request(f"{cluster.url(node)}/v1/{query}", "GET", None)
            assert_json_error(answer, 400, "bad_request", f"{query} on {node}")


# -- sizes -----------------------------------------------------------------------------------


def padded(size: int) -> bytes:
    """A valid acquire body of exactly ``size`` bytes (JSON allows the whitespace)."""
    base = json.dumps({"holder": "a", "ttl": 5}).encode()
    return base[:-1] + b" " * (size - len(base)) + b"}"


def test_a_body_of_exactly_1_mib_is_accepted(cluster: Any, nodes: list[str]) -> None:
    for i, node in enumerate(nodes):
        status, _, lease = raw_request(f"{cluster.url(node)}/v1/leases/bad/mib{i}:acquire",
                                       "POST", padded(MIB), JSON_HEADERS)  # fmt: skip
        assert status == 200, lease
        status, _, _ = http("POST", f"{cluster.url(node)}/v1/leases/bad/mib{i}:release",
                            {"holder": "a", "token": lease["token"]})  # fmt: skip
        assert status == 200


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("path", ["leases/bad/big:acquire", "leases/bad/held:renew",
                                  "leases/bad/held:verify",
                                  "elections/bad/big:campaign"])  # fmt: skip
def test_a_body_over_1_mib_is_413(cluster: Any, nodes: list[str], path: str,
                                  chunked: bool) -> None:  # fmt: skip
    for size in (MIB + 1, 3 * MIB):
        for node in nodes:
            answer = raw_request(f"{cluster.url(node)}/v1/{path}", "POST", padded(size),
                                 JSON_HEADERS, chunked=chunked)  # fmt: skip
            assert_json_error(answer, 413, "payload_too_large", f"{size} bytes on {node}")
    assert http("GET", f"{cluster.url(nodes[0])}/v1/leases/bad/big")[0] == 404


# -- routes and methods ----------------------------------------------------------------------

UNKNOWN_ROUTES = [
    ("GET", "/"),
    ("GET", "/v1"),
    ("GET", "/v2/leases/x"),
    ("GET", "/v1/locks/x"),
    ("GET", "/v1/leases/"),
    ("GET", "/v1/election"),
    ("POST", "/v1/leases/x:lock"),
    ("POST", "/v1/leases/x:frobnicate"),
    ("POST", "/v1/elections/x:acquire"),
    ("GET", "/v1/elections/x:verify"),
    ("GET", "/metricz"),
    ("GET", "/internal/nothing"),
]


def test_unknown_routes_are_a_json_404(cluster: Any, nodes: list[str]) -> None:
    for method, path in UNKNOWN_ROUTES:
        for node in nodes:
            answer = raw_request(cluster.url(node) + path, method,
                                 b"{}" if method == "POST" else None, JSON_HEADERS)  # fmt: skip
            assert_json_error(answer, 404, "not_found", f"{method} {path} on {node}")


WRONG_METHODS = [
    ("GET", "/v1/leases/x:acquire", "POST"),
    ("PUT", "/v1/leases/x:acquire", "POST"),
    ("GET", "/v1/leases/x:release", "POST"),
    ("GET", "/v1/leases/x:verify", "POST"),
    ("DELETE", "/v1/leases/x", "GET"),
    ("POST", "/v1/leases/x", "GET"),
    ("PUT", "/v1/leases/x", "GET"),
    ("POST", "/v1/leases", "GET"),
    ("DELETE", "/v1/leases", "GET"),
    ("GET", "/v1/elections/x:campaign", "POST"),
    ("GET", "/v1/elections/x:resign", "POST"),
    ("POST", "/v1/elections/x:observe", "GET"),
    ("PATCH", "/v1/elections/x", "GET"),
    ("POST", "/v1/cluster", "GET"),
    ("POST", "/healthz", "GET"),
    ("DELETE", "/readyz", "GET"),
    ("POST", "/metrics", "GET"),
]


def test_wrong_methods_are_a_json_405_with_allow(cluster: Any, nodes: list[str]) -> None:
    for method, path, allowed in WRONG_METHODS:
        for node in nodes:
            answer = raw_request(cluster.url(node) + path, method,
                                 b"{}" if method in ("POST", "PUT", "PATCH") else None,
                                 JSON_HEADERS)  # fmt: skip
            assert_json_error(answer, 405, "method_not_allowed", f"{method} {path} on {node}")
            assert allowed in answer[1]["Allow"].replace(" ", "").split(","), answer[1]


# -- nothing changed -------------------------------------------------------------------------


def test_no_bad_request_changed_anything(cluster: Any, nodes: list[str], held: dict[str, Any]
                                         ) -> None:  # fmt: skip
    status, _, body = http("GET", f"{cluster.url(nodes[0])}/v1/leases?prefix=bad/")
    assert status == 200
    assert {(lease["name"], lease["holder"], lease["token"]) for lease in body["leases"]} == {
        ("bad/held", "alice", held["lease"]["token"]),
        ("bad/elected", "c1", held["leader"]["token"]),
    }
    for name in (NAME, "bad/big", "x"):
        assert http("GET", f"{cluster.url(nodes[0])}/v1/leases/{name}")[0] == 404
