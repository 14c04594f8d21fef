"""The synchronous ``Client`` from plain threads: one client shared by many threads (it is
thread-safe), a client per thread, and elections observed from a thread."""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from paxlock.api.client.errors import LeaseLost
from paxlock.api.client.types import Leader
from paxlock.api.client.sync import Client

THREADS = 6
ITERATIONS = 5
JOIN_TIMEOUT_S = 60.0
HARNESS = sys.modules["paxlock_test_harness"]  # loaded by tests/conftest.py


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One cluster for the module: nothing here kills a node, and each test has its names."""
    shared = HARNESS.Cluster(tmp_path_factory.mktemp("sdk-sync"), 3, [])
    try:
        shared.start_all()
        yield shared
    finally:
        shared.stop_all()


def parked_waiters(cluster: Any) -> int:
    """Acquires parked at the primary (``paxlock_lease_waiters``, summed over the nodes)."""
    total = 0.0
    for url in cluster.urls():
        status, _, text = HARNESS.http("GET", url + "/metrics", timeout_s=1.0)
        for line in text.splitlines() if status == 200 else []:
            if line.startswith("paxlock_lease_waiters "):
                total += float(line.split()[1])
    return int(total)


def run_threads(target: Any, count: int) -> list[BaseException]:
    errors: list[BaseException] = []

    def guarded(index: int) -> None:
        try:
            target(index)
        except BaseException as error:  # reported by the test, not lost in the thread
            errors.append(error)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT_S)
        assert not thread.is_alive(), "a thread hung"
    return errors


def test_one_client_shared_by_threads_excludes_them(cluster: Any) -> None:
    """Unsynchronised read-modify-write of a counter under the lock: no update is lost, at
    most one thread is ever inside, and tokens grow in the order of the holds."""
    state = {"counter": 0, "inside": 0, "max_inside": 0}
    tokens: list[int] = []
    guard = threading.Lock()
    with Client(cluster.urls()) as client:

        def work(_: int) -> None:
            for _ in range(ITERATIONS):
                with client.lock("sync/shared", ttl=5, wait=30) as lease:
                    with guard:
                        state["inside"] += 1
                        state["max_inside"] = max(state["max_inside"], state["inside"])
                    tokens.append(lease.token)
                    value = state["counter"]
                    time.sleep(0.002)  # widen the race window the lock must close
                    state["counter"] = value + 1
                    assert not lease.lost.is_set()
                    with guard:
                        state["inside"] -= 1

        assert run_threads(work, THREADS) == []
        assert client.get("sync/shared") is None
    assert state["counter"] == THREADS * ITERATIONS
    assert state["max_inside"] == 1
    assert tokens == sorted(set(tokens))


def test_a_client_per_thread_with_plain_calls(cluster: Any) -> None:
    """Plain calls from many threads at once, each with its own client (own loop thread)."""
    names = [f"sync/own/{i}" for i in range(THREADS)]

    def work(index: int) -> None:
        with Client(cluster.urls(), identity=f"thread{index}") as client:
            for _ in range(ITERATIONS):
                lease = client.acquire(names[index], ttl=5)
                assert lease.holder == f"thread{index}"
                assert client.verify(names[index], lease.token).current
                client.renew(names[index], lease.token)
                client.release(names[index], lease.token)

    assert run_threads(work, THREADS) == []
    with Client(cluster.urls()) as client:
        assert client.list("sync/own/") == []


def test_sync_lock_with_cancel_on_loss_raises_lease_lost_at_exit(cluster: Any, http: Any) -> None:
    """A thread cannot be cancelled: the body runs on, sees ``lost``, and the ``with``
    raises ``LeaseLost`` on exit."""
    with Client(cluster.urls(), identity="sync-holder") as client:
        with pytest.raises(LeaseLost):
            with client.lock("sync/lost", ttl=1.5, cancel_on_loss=True) as lease:
                status, _, _ = http("POST", cluster.url("n2") + "/v1/leases/sync/lost:release",
                                    {"holder": "sync-holder", "token": lease.token})  # fmt: skip
                assert status == 200
                assert lease.lost.wait(5), "lost was not set"
                with pytest.raises(LeaseLost):
                    lease.check()


def test_sync_election_observed_from_a_thread(cluster: Any) -> None:
    seen: queue.Queue[Leader | None] = queue.Queue()
    with Client(cluster.urls(), identity="leader") as leading, \
            Client(cluster.urls(), identity="watcher") as watching:  # fmt: skip

        def watch() -> None:
            for leader in watching.election("sync/elect").observe(poll_s=2):
                seen.put(leader)
                if leader is None:
                    break  # closes the generator: its async side is closed on the loop

        watcher = threading.Thread(target=watch)
        watcher.start()
        election = leading.election("sync/elect")
        with election.campaign("v1", ttl=5) as term:
            first = seen.get(timeout=10)
            assert first is not None and (first.leader, first.value) == ("leader", "v1")
            assert first.token == term.token
            assert term.proclaim("v2").value == "v2"
            second = seen.get(timeout=10)
            assert second is not None and second.value == "v2"
            assert election.leader() == second or election.leader() is not None
        assert seen.get(timeout=10) is None
        watcher.join(10)
        assert not watcher.is_alive()
        assert election.leader() is None


def test_closing_the_client_wakes_blocked_threads(cluster: Any) -> None:
    outcome: list[BaseException] = []
    with Client(cluster.urls(), identity="holder") as holder:
        lease = holder.acquire("sync/closing", ttl=30)
        client = Client(cluster.urls(), identity="blocked")

        def blocked() -> None:
            try:
                with client.lock("sync/closing", ttl=5, wait=None):
                    raise AssertionError("never granted")
            except BaseException as error:
                outcome.append(error)

        thread = threading.Thread(target=blocked)
        thread.start()
        HARNESS.wait_for(lambda: parked_waiters(cluster) == 1, 10, "the waiter to queue")
        client.close()
        thread.join(10)
        assert not thread.is_alive() and outcome and not isinstance(outcome[0], AssertionError)
        assert parked_waiters(cluster) == 0, "the closed client left its waiter queued"
        with pytest.raises(RuntimeError):
            client.get("sync/closing")
        holder.release("sync/closing", lease.token)
