"""An attacker on the peer channel of a real cluster, and what "unharmed" means afterwards.

Loaded by the peer-channel tests with ``runpy.run_path`` (tests are not a package under
importlib mode). ``send_frames`` opens a member's ``/internal/ws`` as anyone may: naming
whatever node id it likes, with or without the cluster token, and with the cluster id and
that member's incarnation, read from ``/internal/identity`` as anyone with the token (or
anyone at all, without one) may. ``assert_unharmed`` is the
verdict: every member alive, a primary agreed, an acquire and a release served, the fencing
token above every earlier one, and every replica at the same applied slot with the same
leases (read locally, ``consistent=false``, so a replica that diverged shows it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp

from paxlock.api.server.bootstrap import IdentityError, fetch_identity
from paxlock.api.server.peer import (
    CLUSTER_HEADER, INCARNATION_HEADER, NODE_HEADER, TOKEN_HEADER, WS_PATH,
)  # fmt: skip

harness = sys.modules["paxlock_test_harness"]  # registered by tests/conftest.py
try_http = harness.try_http


async def _identity_headers(session: aiohttp.ClientSession, url: str, claimed: str | None,
                            token: str | None) -> dict[str, str]:  # fmt: skip
    """The cluster id and the claimed member's incarnation, as a real member would send them
    (none when the identity endpoint refuses: a wrong token is refused at the WS too)."""
    try:
        target = await fetch_identity(session, url, cluster_token=token)
        member_url = target.members.get(claimed or "")
        incarnation = ""
        if member_url:
            incarnation = (await fetch_identity(session, member_url,
                                                cluster_token=token)).incarnation  # fmt: skip
    except IdentityError:
        return {}
    return {CLUSTER_HEADER: target.cluster_id or "", INCARNATION_HEADER: incarnation}


async def _send(url: str, frames: list[bytes], headers: dict[str, str]) -> int | None:
    async with aiohttp.ClientSession() as session:
        headers = {**headers, **await _identity_headers(session, url, headers.get(NODE_HEADER),
                                                        headers.get(TOKEN_HEADER))}
        try:
            async with session.ws_connect(url + WS_PATH, headers=headers, max_msg_size=0) as ws:
                for frame in frames:
                    await ws.send_bytes(frame)
                await ws.close()  # the member reads every frame before it answers the close
        except aiohttp.WSServerHandshakeError as error:
            return error.status
    return None


def send_frames(url: str, frames: list[bytes], *, claimed: str | None,
                token: str | None = None) -> int | None:  # fmt: skip
    """Send ``frames`` to the member at ``url`` naming node ``claimed`` (None: no name), with
    ``token`` when given. The handshake's refusal status, or None when it was accepted."""
    headers = {} if claimed is None else {NODE_HEADER: claimed}
    if token is not None:
        headers[TOKEN_HEADER] = token
    return asyncio.run(_send(url, frames, headers))


@contextlib.contextmanager
def cluster_with_token(root: Path, token: str) -> Iterator[Any]:
    """A running 3-member cluster whose members read ``token`` from the environment
    (``PAXLOCK_CLUSTER_TOKEN``, set only while they start)."""
    os.environ["PAXLOCK_CLUSTER_TOKEN"] = token
    try:
        with harness.running_cluster(root) as cluster:
            os.environ.pop("PAXLOCK_CLUSTER_TOKEN", None)
            yield cluster
    finally:
        os.environ.pop("PAXLOCK_CLUSTER_TOKEN", None)


def _served(cluster: Any, path: str, body: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """A lease request answered 200 by some member (any one forwards to the primary)."""
    deadline = time.monotonic() + timeout_s
    while True:
        for node in cluster.members:
            answer = try_http("POST", cluster.url(node) + path, body, timeout_s=2.0)
            if answer is not None and answer[0] == 200:
                result: dict[str, Any] = answer[2]
                return result
        assert time.monotonic() < deadline, f"no member served {path}\n{cluster.logs()}"
        time.sleep(0.05)  # retry pacing while a primary takes office, not synchronisation


def replica_state(cluster: Any, node: str) -> tuple[Any, ...] | None:
    """What one member applied, read locally: its chosen and applied slots and its leases."""
    view = cluster.cluster_view(node)
    answer = try_http("GET", cluster.url(node) + "/v1/leases?consistent=false")
    if view is None or answer is None or answer[0] != 200:
        return None
    leases = tuple((lease["name"], lease["holder"], lease["token"], lease["value"])
                   for lease in answer[2]["leases"])  # fmt: skip
    return view["chosen_index"], view["applied_index"], leases


def same_state(cluster: Any) -> tuple[Any, ...] | None:
    states = {node: replica_state(cluster, node) for node in cluster.members}
    if len(set(states.values())) != 1 or None in states.values():
        return None
    (state,) = set(states.values())
    return state if state is not None and state[0] == state[1] else None


def assert_unharmed(cluster: Any, tag: str, token_before: int = 0) -> int:
    """Fail unless the cluster is whole: every member alive, a primary agreed, a lease
    ``probe/<tag>`` acquired and kept (its token above ``token_before``) and another acquired
    and released, and every replica the same. Returns the kept lease's fencing token."""
    for node in cluster.members:
        assert cluster.alive(node), f"{node} died\n{cluster.logs()}"
    cluster.wait_ready(10.0)
    kept = _served(cluster, f"/v1/leases/probe/{tag}:acquire",
                   {"holder": "probe", "ttl": 120, "request_id": f"kept-{tag}"}, 20.0)  # fmt: skip
    assert kept["token"] > token_before, (kept, token_before)
    once = _served(cluster, f"/v1/leases/probe/{tag}-once:acquire",
                   {"holder": "probe", "ttl": 30, "request_id": f"once-{tag}"}, 10.0)  # fmt: skip
    assert once["token"] > kept["token"], (once, kept)
    _served(cluster, f"/v1/leases/probe/{tag}-once:release",
            {"holder": "probe", "token": once["token"]}, 10.0)  # fmt: skip
    try:
        state = harness.wait_for(lambda: same_state(cluster), 10.0,
                                 "every replica at the same applied slot with the same leases")
    except AssertionError as error:
        states = {node: replica_state(cluster, node) for node in cluster.members}
        raise AssertionError(f"{error}: {states}\n{cluster.logs()}") from None
    held = {name: token for name, _, token, _ in state[2]}
    assert held.get(f"probe/{tag}") == kept["token"], (state, kept)
    assert f"probe/{tag}-once" not in held, state
    token: int = kept["token"]
    return token
