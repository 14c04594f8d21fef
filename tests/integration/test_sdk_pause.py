"""A holder process frozen with SIGSTOP past its TTL.

While it is frozen the cluster expires its lease and another process (this one) takes the
lock. When it resumes, the client's conservative clock must mark its lease lost at once —
before it could act on the resource — and, with ``cancel_on_loss``, cancel its body (async)
or make its ``with`` raise ``LeaseLost`` (sync: a thread cannot be cancelled). Its release
on exit then fails (the grant is gone) and is swallowed, and the new holder is untouched.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from paxlock.api.client.sync import Client

CHILD = Path(__file__).with_name("sdk_holder_child.py")
TTL_S = 1.5


def read_events(path: Path) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    return {e["event"]: e for e in map(json.loads, path.read_text().splitlines())}


@pytest.mark.parametrize("mode", ["lock-async", "lock-sync"])
def test_a_paused_holder_finds_its_lease_lost_and_another_took_it(
    cluster: Any, tmp_path: Path, wait_for: Any, mode: str
) -> None:
    events_path, name = tmp_path / "events", f"pause/{mode}"
    log = open(tmp_path / "child.log", "wb")
    child = subprocess.Popen(
        [sys.executable, str(CHILD), "--endpoints", ",".join(cluster.urls()), "--events",
         str(events_path), "--mode", mode, "--name", name, "--identity", "frozen",
         "--ttl", str(TTL_S)],
        stdout=log, stderr=log, env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )  # fmt: skip
    log.close()
    try:
        acquired = wait_for(lambda: read_events(events_path).get("acquired"), 20, "acquired")
        child.send_signal(signal.SIGSTOP)
        paused_at = time.monotonic()
        with Client(cluster.urls(), identity="successor") as client:
            with client.lock(name, ttl=10, wait=15) as lease:
                waited_s = time.monotonic() - paused_at
                assert lease.token > acquired["token"]
                assert waited_s >= TTL_S * 0.8, "the cluster expired the lease early"
                resumed_at = time.monotonic()
                child.send_signal(signal.SIGCONT)
                events = wait_for(lambda: (e := read_events(events_path)).get("lease_lost") and e,
                                  10, "the resumed holder to report its lease lost")  # fmt: skip
                assert child.wait(timeout=10) == 0
                # our lease survived the old holder's (failed, swallowed) release
                assert client.verify(name, lease.token).current
                lease.check()
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGCONT)
            child.kill()
            child.wait()
    first = "body_cancelled" if mode == "lock-async" else "body_saw_lost"
    assert first in events, (events, (tmp_path / "child.log").read_text())
    assert "body_finished" not in events
    reacted_s = events[first]["t"] - resumed_at
    assert 0 <= reacted_s < 1.0, f"lost noticed {reacted_s:.3f}s after resuming"
    # the client's own clock gave up, without waiting to hear from the cluster
    assert "not renewed within" in events["lease_lost"]["lost_reason"]
