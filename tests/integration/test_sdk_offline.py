"""SDK pieces that need no cluster: error mapping, endpoints, typed results, and a fake node
for the transport's failover rules. (The import boundary, the SDK talks HTTP only, is
``tests/unit/test_layers.py``.)"""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from paxlock.api.client.aio import AsyncClient, default_identity
from paxlock.api.client.errors import (
    BadRequest,
    LeaseHeld,
    NotFound,
    NotHolder,
    PaxlockError,
    Unavailable,
    error_from_response,
)
from paxlock.api.client.transport import normalize_endpoints
from paxlock.api.client.types import Leader, Lease


@pytest.mark.parametrize(("status", "body", "kind"), [
    (409, {"error": "held", "message": "x is held", "holder": "bob", "expires_in": 3.5,
           "token": 7}, LeaseHeld),
    (409, {"error": "not_holder", "message": "nope", "holder": None, "token": None}, NotHolder),
    (400, {"error": "bad_request", "message": "bad ttl"}, BadRequest),
    (413, {"error": "payload_too_large", "message": "too big"}, BadRequest),
    (404, {"error": "not_found", "message": "no route"}, NotFound),
    (503, {"error": "unavailable", "message": "no quorum", "retry_after_s": 0.2}, Unavailable),
    (500, {"error": "internal", "message": "boom"}, PaxlockError),
    (502, "<html>bad gateway</html>", PaxlockError),
    (503, None, Unavailable),
])  # fmt: skip
def test_error_mapping_keeps_the_message_and_details(status: int, body: Any,
                                                     kind: type[PaxlockError]) -> None:  # fmt: skip
    error = error_from_response(status, body, body if isinstance(body, str) else "")
    assert type(error) is kind and error.status == status
    if isinstance(body, dict):
        assert error.message == body["message"] and error.code == body["error"]
    if isinstance(error, LeaseHeld):
        assert (error.holder, error.expires_in, error.token) == ("bob", 3.5, 7)
    if isinstance(body, str):
        assert "bad gateway" in error.message


def test_endpoints_and_identity() -> None:
    assert normalize_endpoints("127.0.0.1:1, http://h:2/ ,") == ["http://127.0.0.1:1", "http://h:2"]
    with pytest.raises(ValueError):
        normalize_endpoints([])
    one, two = default_identity(), default_identity()
    assert one != two and one.rsplit("-", 2)[1].isdigit()
    with pytest.raises(ValueError):
        AsyncClient("h:1", margin=1.0)
    with pytest.raises(ValueError):
        AsyncClient("h:1", ttl=0)


def test_typed_results_ignore_unknown_fields_and_reject_bad_ones() -> None:
    raw = {"name": "a", "holder": "h", "token": 3, "revision": 4, "ttl": 5, "expires_in": 4.5,
           "value": None, "lock_delay": 0, "new_field": 1}  # fmt: skip
    assert Lease.from_json(raw).token == 3
    with pytest.raises(PaxlockError):
        Lease.from_json({**raw, "token": "3"})
    assert Leader.maybe_from_json({"name": "e", "leader": None, "revision": 9}) == (None, 9)


async def test_follows_the_primary_and_retries_503_with_the_same_request_id() -> None:
    """Two fake nodes: ``b`` answers 503 once (outcome unknown), then names ``a`` as the
    primary; ``a`` sees the retry with the very same body."""
    seen: list[tuple[str, Any]] = []
    runners: list[web.AppRunner] = []
    urls: dict[str, str] = {}

    def node(name: str) -> web.Application:
        async def acquire(request: web.Request) -> web.Response:
            body = await request.json()
            seen.append((name, body))
            if name == "b" and len(seen) == 1:
                return web.json_response({"error": "unavailable", "message": "unknown"},
                                         status=503, headers={"X-Paxlock-Node": "b"})  # fmt: skip
            if name == "b":
                headers = {"X-Paxlock-Node": "b", "X-Paxlock-Primary": "a"}
                return web.json_response({"error": "held", "message": "wrong node"}, status=409,
                                         headers=headers)  # fmt: skip
            lease = {"name": "x", "holder": body["holder"], "token": 1, "revision": 1,
                     "ttl": 5, "expires_in": 5, "value": None, "lock_delay": 0}  # fmt: skip
            return web.json_response(lease, headers={"X-Paxlock-Node": "a",
                                                     "X-Paxlock-Primary": "a"})  # fmt: skip

        async def cluster(request: web.Request) -> web.Response:
            members = [{"id": n, "url": u, "reachable": True, "chosen_index": 0}
                       for n, u in urls.items()]  # fmt: skip
            return web.json_response({"node": name, "primary": "a", "members": members},
                                     headers={"X-Paxlock-Node": name})  # fmt: skip

        app = web.Application()
        app.router.add_post("/v1/leases/x:acquire", acquire)
        app.router.add_get("/v1/cluster", cluster)
        return app

    try:
        for name in ("a", "b"):
            runner = web.AppRunner(node(name))
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            runners.append(runner)
            port = runner.addresses[0][1]
            urls[name] = f"http://127.0.0.1:{port}"
        async with AsyncClient([urls["b"]], identity="me", backoff_base=0.01) as client:
            with pytest.raises(LeaseHeld):  # b said 503, then 409 naming a
                await client.acquire("x", ttl=5, request_id="r1")
            assert client._transport.primary_url == urls["a"]
            lease = await client.acquire("x", ttl=5, request_id="r2")
            assert lease.holder == "me"
        assert [n for n, _ in seen] == ["b", "b", "a"]
        assert seen[0][1] == seen[1][1] and seen[0][1]["request_id"] == "r1"
    finally:
        for runner in runners:
            await runner.cleanup()
