"""``paxlock up``, the README's main job: a local 3-node cluster from a fresh install, on
which any node takes a lease, and which Ctrl-C stops cleanly."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

harness = sys.modules["paxlock_test_harness"]


def three_free_ports() -> int:
    return int(sys.modules["paxlock_test_harness"].free_ports_in_a_row(3))


def test_up_serves_leases_on_every_node_and_stops_on_ctrl_c(
    tmp_path: Path, http: Any, wait_for: Any,
) -> None:
    base = three_free_ports()
    up = subprocess.Popen(
        [sys.executable, "-m", "paxlock.api.cli", "up", "--base-port", str(base),
         "--data-dir", str(tmp_path / "data")],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    urls = [f"http://127.0.0.1:{base + i}" for i in range(3)]
    try:
        def ready() -> bool:
            try:
                return all(http("GET", url + "/readyz", timeout_s=1)[0] == 200 for url in urls)
            except OSError:
                return False

        wait_for(ready, 30, "the local cluster to be ready")
        for index, url in enumerate(urls):  # like curl, on any node
            status, _, lease = http("POST", f"{url}/v1/leases/demo{index}:acquire",
                                    {"holder": "me", "ttl": 10})  # fmt: skip
            assert status == 200 and lease["holder"] == "me"
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=30) == 0
        assert up.stdout is not None
        printed = up.stdout.read()
        assert all(url in printed for url in urls)  # it printed the endpoints
        for url in urls:  # and every node is gone
            try:
                http("GET", url + "/healthz", timeout_s=1)
                raise AssertionError(f"{url} still answers")
            except OSError:
                pass
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()


# -- issue 11: the lifecycle of `paxlock up` (items 1, 2, 3) --------------------------------


def processes_under(path: Path) -> dict[int, list[str]]:
    """Every live process whose command line names ``path`` (the test's own data dir): the
    nodes of this test's `paxlock up`, orphaned or not, and nothing of anyone else's."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue  # gone meanwhile
        if state != "Z" and any(str(path) in arg for arg in argv):
            found[int(entry.name)] = argv
    return found


def node_pids(path: Path) -> dict[str, int]:
    """node id -> pid of the `paxlock serve` processes under ``path``."""
    pids = {}
    for pid, argv in processes_under(path).items():
        if "serve" in argv and "--id" in argv:
            pids[argv[argv.index("--id") + 1]] = pid
    return pids


def kill_leftovers(path: Path) -> None:
    """SIGKILL whatever is left of the processes under ``path`` (the failure path only)."""
    for pid in processes_under(path):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


class Up:
    """One `paxlock up` child process with its output in files; ``close()`` kills it and
    anything left of its nodes (orphans included)."""

    def __init__(self, tmp_path: Path, base: int, *args: str) -> None:
        self.data = tmp_path / "data"
        self.urls = [f"http://127.0.0.1:{base + i}" for i in range(3)]
        self.out_path, self.err_path = tmp_path / "up.out", tmp_path / "up.err"
        with open(self.out_path, "ab") as out, open(self.err_path, "ab") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "paxlock.api.cli", "up", "--base-port", str(base),
                 "--data-dir", str(self.data), *args],
                stdin=subprocess.PIPE, stdout=out, stderr=err,
            )  # fmt: skip

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        assert self.process.stdin is not None
        self.process.stdin.close()
        kill_leftovers(self.data)


def answers(url: str, path: str = "/readyz") -> bool:
    try:
        return bool(harness.http("GET", url + path, timeout_s=1)[0] == 200)
    except OSError:
        return False


def up_to_its_end(tmp_path: Path, base: int) -> tuple[Any, dict[int, list[str]]]:
    """Run `paxlock up` until it exits by itself; its result, and the processes it left
    behind (killed here)."""
    data = tmp_path / "data"
    try:
        done = subprocess.run(
            [sys.executable, "-m", "paxlock.api.cli", "up", "--base-port", str(base),
             "--data-dir", str(data)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        left = processes_under(data)
        kill_leftovers(data)
    return done, left


def test_up_refuses_a_port_in_use_with_one_line_and_exit_2(tmp_path: Path) -> None:
    base = three_free_ports()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", base + 1))
        taken.listen()
        done, left = up_to_its_end(tmp_path, base)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        f"paxlock up: cannot listen on 127.0.0.1:{base + 1}: address already in use"
    ]
    assert left == {}


def test_up_stops_the_cluster_when_a_node_refuses_its_first_start(tmp_path: Path) -> None:
    """n2's data dir is locked by a live process (here, this test): n2 exits 2 at once, and
    up stops the two others and exits 2 too, rather than run a cluster short of a member."""
    base = three_free_ports()
    (tmp_path / "data" / "n2").mkdir(parents=True)
    with open(tmp_path / "data" / "n2" / "LOCK", "wb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        done, left = up_to_its_end(tmp_path, base)
    assert done.returncode == 2, done.stderr[-3000:]
    lines = done.stderr.splitlines()
    assert "paxlock up: n2 could not start; stopping the cluster" in lines
    assert any(line.startswith("paxlock serve:") and "in use" in line for line in lines)
    assert "Traceback" not in done.stderr
    assert left == {}


def data_dirs_unlocked(data: Path) -> bool:
    """Each member's store lock (a ``flock`` on ``LOCK``) can be taken: no live store holds it."""
    for lock in sorted(data.glob("n*/LOCK")):
        with open(lock, "rb") as file:
            try:
                fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            fcntl.flock(file, fcntl.LOCK_UN)
    return True


def test_up_stops_its_nodes_on_sigterm_and_sighup(tmp_path: Path) -> None:
    """As on Ctrl-C: every node stopped and waited for, no orphan, every data dir unlocked,
    so that the next `paxlock up` on the same data dir starts (the second one, here)."""
    base = three_free_ports()
    for signum in (signal.SIGTERM, signal.SIGHUP):
        up = Up(tmp_path, base)
        try:
            harness.wait_for(lambda: all(answers(u) for u in up.urls), 30, "the cluster ready")
            assert len(node_pids(up.data)) == 3
            up.process.send_signal(signum)
            assert up.process.wait(timeout=30) == 0, up.stderr()[-3000:]
            assert processes_under(up.data) == {}  # no orphans: up waited for its nodes
            assert not any(answers(url, "/healthz") for url in up.urls)
            assert len(list(up.data.glob("n*/LOCK"))) == 3 and data_dirs_unlocked(up.data)
        finally:
            up.close()


def test_up_keeps_the_others_when_a_node_dies_and_restarts_it(tmp_path: Path) -> None:
    base = three_free_ports()
    up = Up(tmp_path, base)
    try:
        harness.wait_for(lambda: all(answers(u) for u in up.urls), 30, "the cluster ready")
        primary = harness.http("GET", up.urls[0] + "/v1/cluster")[2]["primary"]
        victim = node_pids(up.data)[primary]
        victim_url = up.urls[int(primary[1:]) - 1]
        os.kill(victim, signal.SIGKILL)

        # One line reports the death; up and the other two keep running and elect anew.
        report = harness.wait_for(
            lambda: [line for line in up.stderr().splitlines()
                     if line.startswith(f"paxlock up: {primary} ")], 15, "the death report")
        assert len(report) == 1 and "SIGKILL" in report[0], report
        assert up.process.poll() is None
        survivor = next(u for u in up.urls if u != victim_url)
        harness.wait_for(
            lambda: harness.try_http("POST", survivor + "/v1/leases/after:acquire",
                                     {"holder": "me", "ttl": 5}, timeout_s=2)[0] == 200,
            15, "a lease from the two survivors")  # fmt: skip

        # The printed `paxlock serve` line brings the member back, as printed.
        line = next(line.strip().removeprefix("restart it:").strip()
                    for line in up.stderr().splitlines() if "restart it:" in line)
        assert "paxlock" in line and f"--id {primary}" in line, line
        by_hand = subprocess.Popen(shlex.split(line), stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            harness.wait_for(lambda: answers(victim_url), 20, "the member restarted by hand")
        finally:
            by_hand.terminate()
            assert by_hand.wait(timeout=20) == 0

        # Enter in up's terminal restarts the dead member under up again.
        assert up.process.stdin is not None
        up.process.stdin.write(b"\n")
        up.process.stdin.flush()
        harness.wait_for(lambda: answers(victim_url), 20, "the member restarted by up")
        assert node_pids(up.data)[primary] != victim
        up.process.send_signal(signal.SIGINT)
        assert up.process.wait(timeout=30) == 0
        assert processes_under(up.data) == {}
    finally:
        up.close()
