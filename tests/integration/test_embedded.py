"""Embedded mode: the README's examples run as written (with free ports), and a node
embedded in a 3-member cluster offers the lease operations whichever member is primary."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

from paxlock import Node, NodeConfig

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def examples() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Embedded mode", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_readme_has_the_embedded_examples() -> None:
    assert len(examples()) == 2


def test_readme_embedded_examples_run(tmp_path: Path) -> None:
    for number, code in enumerate(examples()):
        for port in re.findall(r"127\.0\.0\.1:(71\d\d)", code):
            code = code.replace(port, str(free_port()))
        script = tmp_path / f"example{number}.py"
        script.write_text(code)
        done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                              timeout=60, cwd=tmp_path)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        if number == 0:
            assert "holding nightly-job with fencing token 1" in done.stdout


async def test_embedded_members_serve_leases_whichever_is_primary(tmp_path: Path) -> None:
    peers = {f"n{i}": f"http://127.0.0.1:{free_port()}" for i in (1, 2, 3)}
    nodes = [Node(NodeConfig(n, peers, tmp_path / n)) for n in peers]
    for node in nodes:
        await node.start()
    try:
        for node in nodes:
            await node.wait_ready()
        tokens = []
        for node in nodes:  # the primary serves locally, the others forward
            lease = await node.leases.acquire(f"job/{node.config.node_id}", holder="w", ttl=5)
            tokens.append(lease.token)
            assert (await node.leases.verify(lease.name, token=lease.token)) == (True, lease.token)
            await node.leases.release(lease.name, holder="w", token=lease.token)
        assert tokens == sorted(tokens) and len(set(tokens)) == 3
    finally:
        for node in nodes:
            await node.stop()


async def test_mounted_app_serves_the_api_under_a_prefix(tmp_path: Path) -> None:
    from aiohttp import web

    port = free_port()
    config = NodeConfig("n1", {"n1": f"http://127.0.0.1:{port}/paxlock"}, tmp_path / "n1",
                        serve_http=False)  # fmt: skip
    async with Node(config) as node:
        host = web.Application()
        host.add_subapp("/paxlock", node.app)
        runner = web.AppRunner(host)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            await node.wait_ready()
            async with aiohttp.ClientSession() as session:
                url = f"http://127.0.0.1:{port}/paxlock/v1/leases/mounted:acquire"
                async with session.post(url, json={"holder": "h", "ttl": 5}) as response:
                    body: Any = await response.json()
                    assert response.status == 200, body
                    assert body["holder"] == "h"
        finally:
            await runner.cleanup()
