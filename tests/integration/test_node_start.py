"""``Node.start()`` unwinds what it started when a later step fails (STYLE.md, "Start-up
unwinds on failure"): a member whose HTTP listener cannot bind closes its store (releasing the
data dir lock), stops its replica, service and peer transport, and raises. Real aiosqlite, a
port taken by a socket of the test's own (the port from the OS)."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import socket
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from paxlock import Node, NodeConfig


async def test_a_node_whose_listener_cannot_bind_unwinds_and_frees_its_data_dir(
    tmp_path: Path,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = NodeConfig("n1", {"n1": f"http://127.0.0.1:{port}"}, tmp_path / "n1")
        tasks_before = asyncio.all_tasks()
        node = Node(config, registry=CollectorRegistry())
        with pytest.raises(OSError) as raised:
            await node.start()
        assert raised.value.errno == errno.EADDRINUSE
        # the replica's loop, the peer pumps and the store's committer are gone
        assert asyncio.all_tasks() == tasks_before
        await node.stop()  # harmless after a failed start
    # the store's lock on the data dir is released: a new node opens it and serves
    async with Node(dataclasses.replace(config, serve_http=False),
                    registry=CollectorRegistry()) as again:  # fmt: skip
        await again.wait_ready()
        lease = await again.leases.acquire("after/failed-start", holder="h", ttl=5)
        assert lease.token >= 1
    assert asyncio.all_tasks() == tasks_before


async def test_stop_undoes_start_in_reverse(tmp_path: Path) -> None:
    """``stop()`` goes through the same stack: the data dir is free again afterwards."""
    config = NodeConfig("n1", {"n1": "http://127.0.0.1:1"}, tmp_path / "n1", serve_http=False)
    tasks_before = asyncio.all_tasks()
    for _ in range(2):
        node = Node(config, registry=CollectorRegistry())
        await node.start()
        await node.wait_ready()
        await node.stop()
        assert node.store is None and asyncio.all_tasks() == tasks_before
