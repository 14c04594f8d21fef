"""TLS on the client API and the peer links (issue 12 item 1), with real certificates made in
the test by ``trustme``: the SDK over https with the cluster's CA, a TLS-only listener, mutual
TLS on ``/internal/``, the identity a peer's certificate proves, a 3-member cluster of real
processes, reload on SIGHUP, and ``paxlock up --tls``."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from aiohttp import web
from prometheus_client import CollectorRegistry

from paxlock.api.client.aio import AsyncClient
from paxlock.api.client.errors import Unavailable
from paxlock.api.client.sync import Client
from paxlock.api.server.node import Node, NodeConfig
from paxlock.api.server.bootstrap import IDENTITY_PATH, Identity
from paxlock.api.server.peer import CLUSTER_HEADER, INCARNATION_HEADER, NODE_HEADER, WS_PATH
from paxlock.api.server.tls import NodeTls, TlsError, peer_identity, peer_names

harness = sys.modules["paxlock_test_harness"]  # registered by tests/conftest.py
free_port, wait_for = harness.free_port, harness.wait_for


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


class Pki:
    """A CA of the test and the files of the certificates it issues, under one directory."""

    def __init__(self, root: Path, name: str = "cluster") -> None:
        self.ca = trustme.CA()
        self.root = root / name
        self.root.mkdir(parents=True)
        self.ca_file = self.root / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))

    def issue(self, node_id: str, tag: str = "") -> Issued:
        """A member's certificate: CN and a DNS name = the node id, plus 127.0.0.1."""
        leaf = self.ca.issue_cert("127.0.0.1", "localhost", node_id, common_name=node_id)
        files = Issued(self.root / f"{node_id}{tag}.pem", self.root / f"{node_id}{tag}-key.pem")
        leaf.cert_chain_pems[0].write_to_path(str(files.cert))
        leaf.private_key_pem.write_to_path(str(files.key))
        return files

    def client_context(self, issued: Issued | None = None) -> ssl.SSLContext:
        """Trusts this CA; presents ``issued`` as the client certificate when given."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        if issued is not None:
            context.load_cert_chain(issued.cert, issued.key)
        return context


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def tls_args(pki: Pki, issued: Issued) -> list[str]:
    return ["--tls-cert", str(issued.cert), "--tls-key", str(issued.key),
            "--tls-ca", str(pki.ca_file)]  # fmt: skip


# -- one node in this process ----------------------------------------------------------------


@pytest.fixture
async def node(tmp_path: Path, pki: Pki) -> Any:
    """A one-member cluster listening on https:// with mutual TLS on /internal/."""
    port = free_port()
    issued = pki.issue("n1")
    config = NodeConfig("n1", {"n1": f"https://127.0.0.1:{port}"}, tmp_path / "n1",
                        tls_cert=issued.cert, tls_key=issued.key, tls_ca=pki.ca_file)  # fmt: skip
    async with Node(config, registry=CollectorRegistry()) as started:
        await started.wait_ready()
        yield started


async def test_the_sdk_takes_and_releases_a_lease_over_https_with_the_clusters_ca(
    node: Any, pki: Pki,
) -> None:
    async with AsyncClient([node.url], ca_file=pki.ca_file, retry_deadline=5) as client:
        lease = await client.acquire("tls/a", ttl=10)
        assert lease.token >= 1
        await client.release("tls/a", lease.token)
        assert (await client.get("tls/a")) is None
    # without the CA the cluster's certificate is not trusted, and the SDK says so (the
    # deadline leaves each attempt time for its handshake: with 0.3 s, a loaded CI machine's
    # last attempt ran out of time first, and the SDK rightly named the timeout instead)
    async with AsyncClient([node.url], retry_deadline=3) as untrusting:
        with pytest.raises(Unavailable, match="TLS certificate is not trusted"):
            await untrusting.acquire("tls/b", ttl=10)


async def test_the_sync_client_passes_its_ca_file_through(node: Any, pki: Pki) -> None:
    port = node.url.rpartition(":")[2]
    with Client(f"127.0.0.1:{port}", ca_file=str(pki.ca_file), retry_deadline=5) as client:
        assert client.endpoints == [node.url]  # with a CA, host:port means https://
        lease = await asyncio.to_thread(client.acquire, "tls/sync", ttl=10)
        assert lease.holder == client.identity


async def test_a_tls_listener_refuses_plain_http(node: Any, pki: Pki) -> None:
    plain = node.url.replace("https://", "http://")
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError):
            async with session.get(plain + "/v1/cluster") as response:
                await response.read()
        with pytest.raises(aiohttp.ClientError):  # a peer that dials http:// gets nowhere
            await session.ws_connect(plain + WS_PATH, headers={NODE_HEADER: "n2"})
        async with session.get(node.url + "/v1/cluster", ssl=pki.client_context()) as response:
            assert response.status == 200  # the same port over TLS answers


async def stand_in(pki: Pki, member: str, port: int, peers: dict[str, str]) -> web.AppRunner:
    """A member that only answers ``/internal/identity`` (mutual TLS), as an empty store:
    enough for n1 to bootstrap a cluster with it."""
    issued = pki.issue(member)
    tls = NodeTls.from_paths(issued.cert, issued.key, pki.ca_file)
    assert tls is not None
    answer = Identity(member, f"inc-{member}", None, None, peers).to_json()

    async def identity(request: web.Request) -> web.Response:
        return web.json_response(answer)

    app = web.Application()
    app.router.add_get(IDENTITY_PATH, identity)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=tls.server).start()
    return runner


@pytest.fixture
async def member_n1(tmp_path: Path, pki: Pki) -> Any:
    """n1 of a three-member cluster whose other members are stand-ins that only answered
    its bootstrap: enough to dial its peer endpoint as n2 (no quorum, so not ready; nothing
    here needs one)."""
    ports = {member: free_port() for member in ("n1", "n2", "n3")}
    peers = {m: f"https://127.0.0.1:{p}" for m, p in ports.items()}
    stand_ins = [await stand_in(pki, m, ports[m], peers) for m in ("n2", "n3")]
    issued = pki.issue("n1")
    config = NodeConfig("n1", peers, tmp_path / "n1", tls_cert=issued.cert, tls_key=issued.key,
                        tls_ca=pki.ca_file)  # fmt: skip
    try:
        async with Node(config, registry=CollectorRegistry()) as started:
            yield started
    finally:
        for runner in stand_ins:
            await runner.cleanup()


async def test_internal_needs_a_certificate_the_clusters_ca_signed(
    member_n1: Any, pki: Pki, tmp_path: Path,
) -> None:
    node = member_n1
    url = node.url + WS_PATH
    headers = {NODE_HEADER: "n2", CLUSTER_HEADER: node.store.cluster_id,
               INCARNATION_HEADER: "inc-n2"}  # fmt: skip
    async with aiohttp.ClientSession() as session:
        # no client certificate: the public API answers, /internal/ does not
        anonymous = pki.client_context()
        async with session.get(node.url + "/v1/cluster", ssl=anonymous) as response:
            assert response.status == 200
        async with session.get(url, headers=headers, ssl=anonymous) as response:
            assert response.status == 401
            assert (await response.json())["error"] == "unauthenticated"
        # a certificate another CA signed: the handshake itself is refused (no HTTP answer,
        # not even a 401: the connection fails)
        rogue = Pki(tmp_path, "rogue").issue("n2")
        with pytest.raises(aiohttp.ClientConnectionError):
            async with session.ws_connect(url, headers=headers,
                                          ssl=pki.client_context(rogue)) as ws:  # fmt: skip
                await ws.receive(timeout=5)
        # a member's certificate: the WebSocket opens
        member = pki.issue("n2")
        async with session.ws_connect(url, headers=headers,
                                      ssl=pki.client_context(member)) as ws:  # fmt: skip
            assert not ws.closed
        # n3's certificate claiming to be n2: the certificate proves n3, and only n3
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            async with session.ws_connect(url, headers=headers,
                                          ssl=pki.client_context(pki.issue("n3"))):  # fmt: skip
                pass
        assert refused.value.status == 403


async def test_peer_identity_is_the_common_name_of_a_verified_certificate(
    pki: Pki, tmp_path: Path,
) -> None:
    server = pki.issue("n1")
    tls = NodeTls.from_paths(server.cert, server.key, pki.ca_file)
    assert tls is not None and tls.mutual

    async def who(request: web.Request) -> web.Response:
        return web.json_response({"id": peer_identity(request),
                                  "names": sorted(peer_names(request))})  # fmt: skip

    app = web.Application()
    app.router.add_get("/who", who)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=tls.server).start()
    try:
        async with aiohttp.ClientSession() as session:
            url = f"https://127.0.0.1:{port}/who"
            async with session.get(url, ssl=pki.client_context(pki.issue("n3"))) as response:
                assert await response.json() == {"id": "n3", "names": ["localhost", "n3"]}
            async with aiohttp.ClientSession() as fresh:  # no pooled connection to reuse
                async with fresh.get(url, ssl=pki.client_context()) as response:
                    assert await response.json() == {"id": None, "names": []}
    finally:
        await runner.cleanup()


def test_tls_settings_are_checked_before_anything_starts(pki: Pki, tmp_path: Path) -> None:
    issued = pki.issue("n1")
    peers = {"n1": "https://127.0.0.1:7001", "n2": "http://127.0.0.1:7002"}
    with pytest.raises(ValueError, match="peer n2: with a TLS certificate every peer URL is"):
        NodeConfig("n1", peers, tmp_path, tls_cert=issued.cert, tls_key=issued.key)
    https = {"n1": "https://127.0.0.1:7001"}
    with pytest.raises(ValueError, match="give both --tls-cert and --tls-key"):
        NodeConfig("n1", https, tmp_path, tls_cert=issued.cert)
    with pytest.raises(ValueError, match="--tls-ca needs --tls-cert"):
        NodeConfig("n1", https, tmp_path, tls_ca=pki.ca_file)
    other = pki.issue("n2")
    with pytest.raises(TlsError, match=r"cannot use --tls-cert .*n1\.pem with --tls-key "
                       r".*n2-key\.pem: key values mismatch"):  # fmt: skip
        NodeTls.from_paths(issued.cert, other.key, None)
    with pytest.raises(TlsError, match=r"cannot read --tls-ca .*missing\.pem: no such file"):
        NodeTls.from_paths(issued.cert, issued.key, tmp_path / "missing.pem")


def test_serve_takes_the_tls_settings_from_flags_environment_and_toml(tmp_path: Path) -> None:
    from paxlock.api.cli.main import build_parser
    from paxlock.api.cli.serve import node_config, resolve

    toml = tmp_path / "paxlock.toml"
    toml.write_text('tls_ca = "/etc/paxlock/ca.pem"\n')
    args = build_parser().parse_args(
        ["serve", "--id", "n1", "--listen", "127.0.0.1:7001", "--data-dir", str(tmp_path),
         "--config", str(toml), "--tls-key", "/etc/paxlock/n1-key.pem"]
    )  # fmt: skip
    environ = {"PAXLOCK_TLS_CERT": "/etc/paxlock/n1.pem", "PAXLOCK_TLS_KEY": "/elsewhere.pem"}
    config = node_config(resolve(args, environ))
    assert (config.tls_cert, config.tls_key, config.tls_ca) == (
        "/etc/paxlock/n1.pem", "/etc/paxlock/n1-key.pem", "/etc/paxlock/ca.pem")
    assert config.peers["n1"] == "https://127.0.0.1:7001"  # the default URL follows TLS


async def test_a_node_whose_certificate_cannot_be_used_opens_nothing(
    pki: Pki, tmp_path: Path,
) -> None:
    issued, other = pki.issue("n1"), pki.issue("n2")
    config = NodeConfig("n1", {"n1": f"https://127.0.0.1:{free_port()}"}, tmp_path / "n1",
                        tls_cert=issued.cert, tls_key=other.key)  # fmt: skip
    with pytest.raises(TlsError):
        await Node(config, registry=CollectorRegistry()).start()
    assert not (tmp_path / "n1").exists()  # refused before the store was opened


# -- real processes ---------------------------------------------------------------------------


class TlsMember(harness.Member):  # type: ignore[name-defined,misc]
    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


def tls_cluster(cluster_factory: Callable[..., Any], pki: Pki, size: int) -> Any:
    """A harness cluster (stopped by the fixture) whose members are https:// with their own
    certificate; started one by one with ``start_tls``."""
    cluster = cluster_factory(size, start=False)
    cluster.members = {n: TlsMember(m.id, m.port, m.data_dir, m.log_path)
                       for n, m in cluster.members.items()}  # fmt: skip
    cluster.certs = {n: pki.issue(n) for n in cluster.members}
    return cluster


def start_tls(cluster: Any, pki: Pki, node_id: str) -> None:
    cluster.start(node_id, tls_args(pki, cluster.certs[node_id]))


def test_a_three_member_tls_cluster_elects_and_serves_through_every_member(
    cluster_factory: Callable[..., Any], pki: Pki,
) -> None:
    cluster = tls_cluster(cluster_factory, pki, 3)
    for node_id in cluster.members:
        start_tls(cluster, pki, node_id)
    urls = cluster.urls()
    try:
        with Client(urls, ca_file=pki.ca_file, retry_deadline=20) as client:
            first = client.acquire("tls/elected", ttl=10)
            assert first.token >= 1
            # the primary hears both followers: every peer link is up over mutual TLS
            view = wait_for(lambda: (v := client.cluster()).node == v.primary
                            and all(m.reachable for m in v.members) and v, 10,
                            "the primary hearing every member")  # fmt: skip
            assert len(view.members) == 3
        # through each member without following the primary: followers forward over TLS
        for index, url in enumerate(urls):
            with Client([url], ca_file=pki.ca_file, follow_primary=False,
                        retry_deadline=10) as one:  # fmt: skip
                lease = one.acquire(f"tls/via{index}", ttl=10)
                assert lease.holder == one.identity
                assert one.cluster().primary == view.primary
    except BaseException:
        print(cluster.logs())
        raise


def served_fingerprint(port: int) -> str:
    pem = ssl.get_server_certificate(("127.0.0.1", port), timeout=2)
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


def file_fingerprint(path: Path) -> str:
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(path.read_text())).hexdigest()


def test_sighup_reloads_the_certificate_and_a_failed_reload_keeps_the_old_one(
    cluster_factory: Callable[..., Any], pki: Pki,
) -> None:
    cluster = tls_cluster(cluster_factory, pki, 1)
    start_tls(cluster, pki, "n1")
    member = cluster.members["n1"]
    files = cluster.certs["n1"]
    with Client([member.url], ca_file=pki.ca_file, retry_deadline=20) as client:
        client.acquire("tls/before", ttl=10)
    before = file_fingerprint(files.cert)
    assert served_fingerprint(member.port) == before
    # a new certificate in the same files, then SIGHUP: new handshakes get it
    renewed = pki.issue("n1", tag="-renewed")
    files.cert.write_bytes(renewed.cert.read_bytes())
    files.key.write_bytes(renewed.key.read_bytes())
    after = file_fingerprint(files.cert)
    assert after != before
    member.process.send_signal(signal.SIGHUP)
    wait_for(lambda: served_fingerprint(member.port) == after, 10, "the renewed certificate")
    # a third certificate with a broken key: the reload is refused, logged, and the node
    # serves the last good pair (a reload into the live context would half-take the new one)
    files.cert.write_bytes(pki.issue("n1", tag="-third").cert.read_bytes())
    files.key.write_text("not a key\n")
    member.process.send_signal(signal.SIGHUP)
    wait_for(lambda: "tls_reload_failed" in member.log_path.read_text(), 10, "the failure")
    assert served_fingerprint(member.port) == after
    assert member.process.poll() is None
    with Client([member.url], ca_file=pki.ca_file, retry_deadline=5) as client:
        client.acquire("tls/after", ttl=10)


# -- paxlock up --tls -------------------------------------------------------------------------


def consecutive_free_ports(count: int) -> int:
    """A base port whose next ``count - 1`` ports are free too (bound and released here)."""
    for _ in range(50):
        base = free_port()
        if base + count > 65535:
            continue
        with contextlib.ExitStack() as stack:
            try:
                for offset in range(count):
                    stack.enter_context(socket.socket()).bind(("127.0.0.1", base + offset))
            except OSError:
                continue
        return base
    raise AssertionError("no consecutive free ports")


@pytest.fixture
def up_tls(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], list[str], Path]]:
    base = consecutive_free_ports(3)
    data = tmp_path / "data"
    up = subprocess.Popen(
        [sys.executable, "-m", "paxlock.api.cli", "up", "--tls", "--base-port", str(base),
         "--data-dir", str(data)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        yield up, [f"https://127.0.0.1:{base + i}" for i in range(3)], data
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGINT)
            try:
                up.wait(timeout=30)
            except subprocess.TimeoutExpired:
                up.kill()
                up.wait()


def test_up_tls_serves_https_and_prints_the_ca_that_the_sdk_and_cli_use(
    up_tls: tuple[subprocess.Popen[str], list[str], Path],
) -> None:
    up, urls, data = up_tls
    ca = data / "tls" / "ca.pem"
    wait_for(ca.exists, 20, "the CA file")
    with Client(urls, ca_file=ca, retry_deadline=30) as client:
        lease = client.acquire("up/tls", ttl=10)
        client.release("up/tls", lease.token)
    keys = sorted((data / "tls").glob("*-key.pem"))
    assert [key.name for key in keys] == ["ca-key.pem", "n1-key.pem", "n2-key.pem", "n3-key.pem"]
    assert all(key.stat().st_mode & 0o777 == 0o600 for key in keys)
    cli = [sys.executable, "-m", "paxlock.api.cli"]
    locked = subprocess.run([*cli, "lock", "up/cli", "--ca", str(ca), "--endpoint", urls[1],
                             "--", sys.executable, "-c", "pass"],
                            capture_output=True, text=True, timeout=30)  # fmt: skip
    assert locked.returncode == 0, locked.stderr
    status = subprocess.run([*cli, "status", "--endpoint", ",".join(urls)],
                            env={**os.environ, "PAXLOCK_CA": str(ca)},
                            capture_output=True, text=True, timeout=30)  # fmt: skip
    assert status.returncode == 0, status.stderr
    up.send_signal(signal.SIGINT)
    assert up.wait(timeout=30) == 0
    assert up.stdout is not None
    printed = up.stdout.read()
    assert all(url in printed for url in urls), printed
    assert f"PAXLOCK_CA={ca}" in printed and f"ca_file={str(ca)!r}" in printed, printed
