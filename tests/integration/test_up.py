"""``paxlock up``, the README's main job: a local 3-node cluster from a fresh install, on
which any node takes a lease, and which Ctrl-C stops cleanly."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any


def three_free_ports() -> int:
    """A base port whose next two ports are free too."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base > 65000:
            continue
        sockets = []
        try:
            for port in (base, base + 1, base + 2):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise AssertionError("no three consecutive free ports")


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
