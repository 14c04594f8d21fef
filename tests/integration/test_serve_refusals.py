"""``paxlock serve`` refuses a store it must not use — one line on stderr, exit status 2, the
file untouched — and refuses bad configuration the same way."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any


def serve(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "paxlock.api.cli", "serve", *args],
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def free_port() -> int:
    return int(sys.modules["paxlock_test_harness"].free_port())  # outside the ephemeral range


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_data_dir_in_use_by_a_live_node_is_refused(cluster: Any) -> None:
    member = cluster.members["n1"]
    done = serve("--id", "n1", "--listen", "127.0.0.1:1", "--data-dir", str(member.data_dir))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "paxlock serve:" in lines[0] and "lock" in lines[0].lower()


def test_a_store_of_another_node_is_refused_untouched(cluster: Any, tmp_path: Path) -> None:
    member = cluster.members["n2"]
    cluster.kill("n2")
    db = member.data_dir / "paxlock.db"
    before = digest(db)
    done = serve("--id", "n9", "--listen", "127.0.0.1:1", "--data-dir", str(member.data_dir))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "n2" in done.stderr and digest(db) == before


def test_bad_configuration_is_one_line_and_exit_2(tmp_path: Path) -> None:
    for args in (["--listen", "127.0.0.1:7001", "--data-dir", str(tmp_path)],  # no --id
                 ["--id", "n1", "--listen", "nowhere", "--data-dir", str(tmp_path)],
                 ["--id", "n1", "--listen", "127.0.0.1:7001", "--data-dir", str(tmp_path),
                  "--peer", "n2"]):  # fmt: skip
        done = serve(*args)
        assert done.returncode == 2, args
        assert len(done.stderr.strip().splitlines()) == 1 and "paxlock serve:" in done.stderr


def test_a_port_in_use_is_one_line_and_exit_2_promptly(tmp_path: Path) -> None:
    """Issue 11, item 1: the listener fails after the store, the replica and the peer
    transport started; all of it unwinds, so the process ends by itself (no lingering store
    thread or session) with one line and no traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        peers = [f"--peer=n{i}=http://127.0.0.1:{free_port()}" for i in (2, 3)]
        done = serve("--id", "n1", "--listen", f"127.0.0.1:{port}",
                     "--data-dir", str(tmp_path / "n1"), *peers, timeout=20)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        f"paxlock serve: cannot listen on 127.0.0.1:{port}: address already in use"
    ]
