"""A tooz coordinator on paxlock survives the loss of the node it talks to: kill -9 the
primary while it holds a lock and a group membership, and its next calls — heartbeat, the
lock's heartbeat, reading the group, a new lock, releasing, leaving — all succeed (the SDK
retries on the other nodes; the new primary restarts the session's timer in full)."""

from __future__ import annotations

import signal
import sys
from typing import Any

import pytest

pytest.importorskip("tooz", reason="the tooz extra is not installed (pip install -e '.[test]')")

from tooz import coordination  # noqa: E402

HARNESS = sys.modules["paxlock_test_harness"]  # loaded by tests/conftest.py


def test_a_coordinator_keeps_its_lock_and_membership_when_its_node_dies(cluster: Any) -> None:
    primary = cluster.wait_ready()
    url = "paxlock://" + ",".join(u.removeprefix("http://") for u in cluster.urls())
    coord = coordination.get_coordinator(url + "?timeout=10&retry_deadline=20", b"survivor")
    coord.start()
    try:
        coord.create_group(b"fleet").get()
        coord.join_group(b"fleet", {"role": "worker"}).get()
        lock = coord.get_lock(b"jobs/nightly")
        assert lock.acquire(blocking=False)
        assert coord._transport.primary_url == cluster.url(primary)  # it talks to the primary

        cluster.kill(primary, signal.SIGKILL)

        assert coord.heartbeat() > 0
        assert lock.heartbeat(), "the lock was lost with the node"
        assert coord.get_members(b"fleet").get() == {b"survivor"}
        assert coord.get_member_capabilities(b"fleet", b"survivor").get() == {"role": "worker"}
        other = coordination.get_coordinator(url, b"rival")
        other.start()
        try:
            assert not other.get_lock(b"jobs/nightly").acquire(blocking=False)
        finally:
            other.stop()
        second = coord.get_lock(b"jobs/weekly")
        assert second.acquire(blocking=1.0)
        assert second.release() and lock.release()
        coord.leave_group(b"fleet").get()
        assert coord.get_members(b"fleet").get() == set()
        assert cluster.primary() not in (None, primary)
    finally:
        coord.stop()
