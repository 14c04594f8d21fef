"""The SDK's sessions, semaphores, read/write locks and groups against a real cluster: a
session lost marks every grant bound to it lost; the typed errors of each refusal; the
sync ``Client`` shared by many threads at once."""

from __future__ import annotations

import asyncio
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from paxlock.api.client import errors
from paxlock.api.client.aio import AsyncClient
from paxlock.api.client.sync import Client

harness = sys.modules["paxlock_test_harness"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    root: Path = tmp_path_factory.mktemp("coord-sdk")
    with harness.running_cluster(root, 3) as running:
        yield running


def unique(prefix: str) -> str:
    return f"{prefix}/{uuid.uuid4().hex[:8]}"


async def test_a_session_the_cluster_ended_marks_its_bound_grants_lost(cluster: Any) -> None:
    async with AsyncClient(cluster.urls()) as client:
        async with client.session(ttl=1.5) as session:
            async with client.lock(unique("l"), session=session) as lease, \
                    client.rwlock(unique("rw")).write(session=session) as hold:  # fmt: skip
                assert lease.lease.session == session.id and hold.permit.session == session.id
                assert lease.remaining_s() > 0
                status, _, _ = harness.http(  # closed behind the client's back
                    "POST", f"{cluster.urls()[0]}/v1/sessions/{session.id}:close",
                    {"holder": client.identity})  # fmt: skip
                assert status == 200
                await asyncio.wait_for(session.lost.wait(), 5.0)  # its next renewal fails
                await asyncio.wait_for(lease.lost.wait(), 1.0)
                await asyncio.wait_for(hold.lost.wait(), 1.0)
                with pytest.raises(errors.LeaseLost):
                    lease.check()
        assert await client.list_sessions(client.identity) == []


async def test_each_refusal_is_its_typed_error(cluster: Any) -> None:
    async with AsyncClient(cluster.urls()) as client:
        sem, group = unique("sem"), unique("grp")
        async with client.semaphore(sem, 2, ttl=10):
            with pytest.raises(errors.LimitMismatch):
                await client.acquire_shared("semaphore", sem, limit=3, ttl=10, holder="b")
            with pytest.raises(errors.LeaseHeld):
                await client.acquire_shared("semaphore", sem, limit=2, ttl=10)  # not reentrant
        with pytest.raises(errors.NotFound):
            await client.group(group)
        await client.create_group(group)
        with pytest.raises(errors.Exists):
            await client.create_group(group)
        with pytest.raises(errors.NotMember):
            await client.member(group, "nobody")
        async with client.session(ttl=10) as session:
            await client.join_group(group, "m", b"\x00\xff", session=session)
            with pytest.raises(errors.Exists):
                await client.join_group(group, "m", session=session)
            with pytest.raises(errors.NotEmpty):
                await client.delete_group(group)
            updated = await client.update_capabilities(group, b"v2", "m")
            assert (await client.member(group, "m")).capabilities == updated.capabilities == b"v2"
        assert await client.group_members(group) == []  # left with its session
        await client.delete_group(group)
        with pytest.raises(errors.NotFound):
            await client.join_group(group, session="s1")  # the group is gone


def test_one_sync_client_serves_many_threads_at_once(cluster: Any) -> None:
    name, group = unique("pool"), unique("grp")
    results: list[Any] = []
    failures: list[BaseException] = []
    with Client(cluster.urls()) as client, client.session(ttl=10) as session:
        client.create_group(group)

        def worker(n: int) -> None:
            try:
                with client.semaphore(name, 3, session=session, holder=f"w{n}") as permit:
                    assert len(permit.holders) <= 3
                    client.join_group(group, f"w{n}", session=session)
                    results.append(permit.token)
                    client.leave_group(group, f"w{n}")
            except BaseException as error:  # noqa: BLE001 (reported below)
                failures.append(error)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not failures, failures
        assert len(set(results)) == 12
        assert client.group_members(group) == []
        assert client.get_shared("semaphore", name) is None
