"""``paxlock lock``: the command runs holding the lease, sees its fencing token, and its exit
status comes back; when the lease is lost the command is stopped (SIGTERM, then SIGKILL)
before anyone else could be granted the name."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def lock(cluster: Any, name: str, *args: str, ttl: float = 5.0) -> list[str]:
    endpoints = [arg for url in cluster.urls() for arg in ("--endpoint", url)]
    return [sys.executable, "-m", "paxlock.api.cli", "lock", name, "--ttl", str(ttl),
            *endpoints, "--", *args]  # fmt: skip


def test_lock_runs_the_command_holding_the_lease_and_returns_its_status(
    cluster: Any, http: Any, tmp_path: Path,
) -> None:
    out = tmp_path / "token"
    script = (f"echo $PAXLOCK_TOKEN > {out}; "
              f"curl -s {cluster.url('n1')}/v1/leases/nightly >/dev/null; exit 7")  # fmt: skip
    done = subprocess.run(lock(cluster, "nightly", "sh", "-c", script), timeout=60,
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 7, done.stderr
    token = int(out.read_text())
    assert token >= 1
    status, _, _ = http("GET", cluster.url("n1") + "/v1/leases/nightly")
    assert status == 404  # released on exit


def test_lock_reports_a_held_name_with_exit_status_3(cluster: Any, http: Any) -> None:
    status, _, _ = http("POST", cluster.url("n1") + "/v1/leases/busy:acquire",
                        {"holder": "someone", "ttl": 30})  # fmt: skip
    assert status == 200
    command = lock(cluster, "busy", "true")
    command[-2:-2] = ["--wait", "0.2"]  # before the "--"
    done = subprocess.run(command,
                          timeout=60, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 3 and "held by someone" in done.stderr


def test_lost_lease_stops_the_command_before_anyone_else_can_get_it(
    cluster: Any, tmp_path: Path, wait_for: Any,
) -> None:
    """The whole cluster dies: renewals fail, the lease is lost by the client's clock, and
    the command (which ignores SIGTERM) is killed — strictly before sent + ttl."""
    ttl = 3.0
    pid_file = tmp_path / "pid"
    # One process that ignores SIGTERM (a shell's `sleep` child would linger as a zombie in
    # the group until init reaps it, which says nothing about when it was killed).
    script = ("import os, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
              f"open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)")
    proc = subprocess.Popen(lock(cluster, "doomed", sys.executable, "-c", script, ttl=ttl),
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 20,
                 "the locked command to start")  # fmt: skip
        pid = int(pid_file.read_text())
        # No renewal can succeed once the kills begin, so every server-side timer started
        # before this instant: nobody else can be granted the name before it + ttl.
        kills_began = time.monotonic()
        for node_id in cluster.members:
            cluster.kill(node_id)

        def gone() -> bool:
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                return True
            return False

        wait_for(gone, ttl + 5, "the command's process group to be killed")
        assert time.monotonic() < kills_began + ttl  # killed before anyone could get it
        proc.wait(timeout=30)
        assert proc.returncode == 5
        assert "lease was lost" in (proc.stderr.read() if proc.stderr else "")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
