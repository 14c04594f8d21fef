"""Embedded mode: the README's examples run as written (with free ports), and a node
embedded in a 3-member cluster offers the lease operations whichever member is primary."""

from __future__ import annotations

import asyncio

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from paxlock import Node, NodeConfig

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    return int(sys.modules["paxlock_test_harness"].free_port())  # outside the ephemeral range


def examples() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Embedded mode", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_readme_has_the_embedded_examples() -> None:
    assert len(examples()) == 2


def run_example(code: str, tmp_path: Path, name: str) -> subprocess.CompletedProcess[str]:
    """Run one README example as a host program of its own (free ports, its own TMPDIR)."""
    for port in re.findall(r"127\.0\.0\.1:(71\d\d)", code):
        code = code.replace(port, str(free_port()))
    script = tmp_path / f"host_{name}.py"
    script.write_text(code)
    temp = tmp_path / f"{name}-tmp"
    temp.mkdir()
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path, env=dict(os.environ, TMPDIR=str(temp)))  # fmt: skip


def test_readme_embedded_examples_run(tmp_path: Path) -> None:
    """Issue 11, item 9: the host's stdout and stderr carry only what the host printed (the
    node configures no logging), and the examples leave no temporary dir behind."""
    for number, code in enumerate(examples()):
        done = run_example(code, tmp_path, f"example{number}")
        assert done.returncode == 0, done.stderr[-3000:]
        expected = "holding nightly-job with fencing token 1\n" if number == 0 else ""
        assert (done.stdout, done.stderr) == (expected, "")
        assert list((tmp_path / f"example{number}-tmp").iterdir()) == []


HOST_LOGGING = {
    "logging": "import logging, sys\n"
               "logging.basicConfig(level=logging.INFO, stream=sys.stdout, format='%(name)s %(message)s')\n",
    "structlog": "import structlog\nstructlog.configure(processors=[structlog.processors.JSONRenderer()])\n",
}  # fmt: skip


@pytest.mark.parametrize("host", sorted(HOST_LOGGING))
def test_a_host_that_configures_logging_gets_the_node_events(tmp_path: Path, host: str) -> None:
    done = run_example(HOST_LOGGING[host] + examples()[0], tmp_path, host)
    assert done.returncode == 0, done.stderr[-3000:]
    wanted = {"logging": "paxlock.node event='node_started'",
              "structlog": '"event": "node_started"'}[host]  # fmt: skip
    assert wanted in done.stdout and "holding nightly-job" in done.stdout, done.stdout


@pytest.mark.parametrize("auth", [False, True], ids=["open", "auth"])
async def test_embedded_members_serve_leases_whichever_is_primary(
    tmp_path: Path, auth: bool,
) -> None:
    """Under ``--auth`` too: a member's call sent on to the primary shows the cluster token,
    which the primary takes for the embedding program (without it: 401)."""
    peers = {f"n{i}": f"http://127.0.0.1:{free_port()}" for i in (1, 2, 3)}
    options: dict[str, Any] = {}
    if auth:
        auth_file = tmp_path / "auth.toml"
        auth_file.write_text('[principals.ops]\ntoken_sha256 = "' + "0" * 64 + '"\n'
                             'roles = [{ prefix = "", role = "admin" }]\n')  # fmt: skip
        options = {"auth_file": auth_file, "cluster_token": "t" * 32}
    nodes = [Node(NodeConfig(n, peers, tmp_path / n, **options)) for n in peers]
    await asyncio.gather(*(node.start() for node in nodes))  # they bootstrap together
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


async def test_an_embedded_call_at_a_limit_is_too_many_on_every_member(tmp_path: Path) -> None:
    """The primary's 429 reaches an embedded caller as ``TooMany`` whichever member it lives
    in: directly on the primary, through the error body on the others."""
    from paxlock.coordinator.errors import TooMany

    peers = {f"n{i}": f"http://127.0.0.1:{free_port()}" for i in (1, 2, 3)}
    nodes = [Node(NodeConfig(n, peers, tmp_path / n, holds_max=1)) for n in peers]
    await asyncio.gather(*(node.start() for node in nodes))  # they bootstrap together
    try:
        for node in nodes:
            await node.wait_ready()
        await nodes[0].leases.acquire("only/one", holder="w", ttl=30)
        for node in nodes:
            with pytest.raises(TooMany) as refused:
                await node.leases.acquire(f"one/more/{node.config.node_id}", holder="w", ttl=30)
            assert refused.value.details.get("limit") == "holds"
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
