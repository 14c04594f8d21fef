"""``paxlock lock`` at its edges (issue 11 item 6), as a user meets them from a shell: a
command that cannot be run exits 127 (126) with one line, as shells do, and leaves no lease
behind; a bad number or an invalid lease name is a usage error (exit 2, one line); the usage
line shows ``-- CMD [ARGS...]``; an unreachable cluster is given up on after a time the user
can read in ``--help`` and set with ``--retry-deadline``. Real ``paxlock`` processes, a real
cluster where one is needed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

harness = sys.modules["paxlock_test_harness"]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with harness.running_cluster(tmp_path_factory.mktemp("lock-usage")) as cluster:
        yield cluster


def paxlock(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "paxlock.api.cli", *args], timeout=timeout_s,
                          capture_output=True, text=True)  # fmt: skip


def endpoints(cluster: Any) -> list[str]:
    return [arg for url in cluster.urls() for arg in ("--endpoint", url)]


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    """The one line a failed ``paxlock`` wrote: no traceback, no usage block."""
    lines = done.stderr.strip().splitlines()
    assert "Traceback" not in done.stderr and len(lines) == 1, done.stderr
    return lines[0]


def closed_url() -> str:
    """A loopback URL nothing listens on (the port was free a moment ago)."""
    return f"http://127.0.0.1:{harness.free_port()}"


@pytest.mark.parametrize(("kind", "status", "says"), [
    ("missing", 127, "command not found"),
    ("missing path", 127, "no such file"),
    ("not executable", 126, "permission denied"),
    ("directory", 126, "is a directory"),
    ("bad interpreter", 127, "cannot execute"),
])  # fmt: skip
def test_a_command_that_cannot_run_exits_like_a_shell_and_leaves_no_lease(
    shared: Any, http: Any, tmp_path: Path, kind: str, status: int, says: str,
) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("not a program\n")
    script = tmp_path / "script"
    script.write_text("#!/nonexistent/interpreter\n")
    script.chmod(0o755)  # found and executable: only exec() itself fails, lease in hand
    command = {"missing": "paxlock-no-such-command", "missing path": str(tmp_path / "nope"),
               "not executable": str(plain), "directory": str(tmp_path),
               "bad interpreter": str(script)}[kind]  # fmt: skip
    name = f"usage/cannot-run-{status}-{kind.replace(' ', '-')}"
    done = paxlock("lock", name, "--wait", "0", *endpoints(shared), "--", command, "arg")
    assert done.returncode == status, done.stderr
    line = one_line(done)
    assert command in line and says in line.lower(), line
    got, _, _ = http("GET", shared.url("n1") + f"/v1/leases/{name}")
    assert got == 404, "no lease is left held for a command that never ran"


@pytest.mark.parametrize("bad", [
    ["--wait", "-1"], ["--wait", "nan"], ["--wait", "inf"], ["--wait", "soon"],
    ["--ttl", "0"], ["--ttl", "inf"], ["--ttl", "3601"], ["--margin", "1"],
    ["--retry-deadline", "-1"],
])  # fmt: skip
def test_a_bad_number_is_a_usage_error_on_one_line(bad: list[str]) -> None:
    done = paxlock("lock", "usage/numbers", *bad, "--endpoint", closed_url(), "--", "true")
    assert done.returncode == 2, done.stderr
    line = one_line(done)
    assert bad[0] in line and bad[1] in line, line


@pytest.mark.parametrize("name", ["has space", "x" * 257, "ünïcode", "a:b"])
def test_an_invalid_lease_name_is_a_usage_error_not_unavailable(shared: Any, name: str) -> None:
    done = paxlock("lock", name, "--wait", "0", *endpoints(shared), "--", "true")
    assert done.returncode == 2, done.stderr
    assert "A-Za-z0-9._/-" in one_line(done)


def test_the_usage_line_shows_the_command_after_double_dash() -> None:
    done = paxlock("lock", "--help")
    assert done.returncode == 0, done.stderr
    usage = " ".join(done.stdout.split("\n\n", 1)[0].split())
    assert usage.startswith("usage: paxlock lock ") and usage.endswith(" NAME -- CMD [ARGS...]")
    forgotten = paxlock("lock", "job", "--endpoint", closed_url())
    assert forgotten.returncode == 2 and "-- CMD" in one_line(forgotten)


def test_the_give_up_time_is_documented_and_set_by_retry_deadline() -> None:
    """Nothing listens: exit 4 once the wait and then the retry deadline have passed, never
    earlier, with one line that is a sentence (no Python repr of the connection error)."""
    helped = paxlock("lock", "--help")
    assert "--retry-deadline" in helped.stdout and "40 s" in " ".join(helped.stdout.split())
    started = time.monotonic()
    done = paxlock("lock", "usage/unreachable", "--wait", "0.5", "--retry-deadline", "1",
                   "--endpoint", closed_url(), "--", "true")  # fmt: skip
    elapsed = time.monotonic() - started
    assert done.returncode == 4, done.stderr
    line = one_line(done)
    assert elapsed >= 1.5, f"gave up after {elapsed:.2f} s, before --wait + --retry-deadline"
    assert elapsed < 15, f"gave up only after {elapsed:.2f} s"
    assert "connection refused" in line.lower() and "Error(" not in line, line


def test_the_locked_command_runs_from_path_as_in_a_shell(shared: Any, tmp_path: Path) -> None:
    """The look-up that finds missing commands finds the others on $PATH as exec would."""
    tool = tmp_path / "bin" / "paxlock-test-tool"
    tool.parent.mkdir()
    tool.write_text(f"#!/bin/sh\necho ran > {tmp_path / 'out'}\nexit 9\n")
    tool.chmod(0o755)
    env = dict(os.environ, PATH=f"{tool.parent}{os.pathsep}{os.environ['PATH']}")
    done = subprocess.run([sys.executable, "-m", "paxlock.api.cli", "lock", "usage/path",
                           "--wait", "0", *endpoints(shared), "--", tool.name],
                          env=env, timeout=60, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 9, done.stderr
    assert (tmp_path / "out").read_text() == "ran\n"
