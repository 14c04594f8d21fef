"""The secrets of deploy/ work as files (issue 12, item 6): compose-secrets.sh makes every file
compose.yaml mounts, with certificates that pass mutual TLS between members; the image's
HEALTHCHECK speaks TLS, showing the member's own certificate; the cert-manager Certificate
names every member as the StatefulSet's peer URLs reach it."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read deploy/ (test extras)")
trustme = pytest.importorskip("trustme", reason="trustme makes the test certificates")

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
IMAGE_UID = 10001


# -- compose: deploy/compose-secrets.sh --------------------------------------------------------


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command")
    out = tmp_path_factory.mktemp("compose") / "secrets"
    done = subprocess.run(["sh", str(DEPLOY / "compose-secrets.sh"), str(out)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out


def handshake(server: ssl.SSLContext, client: ssl.SSLContext, name: str) -> dict[str, Any]:
    """One TLS handshake over a socket pair: the client certificate the server saw, or the
    error of either side (with TLS 1.3 the server refuses a client after the client is done)."""
    left, right = socket.socketpair()
    seen: dict[str, Any] = {}
    failed: list[BaseException] = []

    def serve() -> None:
        try:
            with server.wrap_socket(left, server_side=True) as tls:
                seen.update(tls.getpeercert() or {})
        except (ssl.SSLError, OSError) as error:
            failed.append(error)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client.wrap_socket(right, server_hostname=name):
            pass
    finally:
        thread.join(timeout=10)
    if failed:
        raise failed[0]
    return seen


def member_contexts(made: Path, member: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A member's server side (client certificate required) and client side (a peer link)."""
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=made / member / "ca.crt")
    server.verify_mode = ssl.CERT_REQUIRED
    client = ssl.create_default_context(cafile=made / member / "ca.crt")
    for context in (server, client):
        context.load_cert_chain(made / member / "tls.crt", made / member / "tls.key")
    return server, client


def test_compose_secrets_make_every_file_compose_mounts(made: Path) -> None:
    spec = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    sources = {spec["secrets"][name]["file"] for name in spec["secrets"]}
    for service in spec["services"].values():
        sources |= {mount.split(":")[0] for mount in service["volumes"]}
    files = {source for source in sources if source.startswith("./secrets/")}
    assert len(files) == 5, "the token, the auth file and 3 members' TLS directories"
    for source in files:
        path = made / source.removeprefix("./secrets/")
        assert path.exists(), source
        for item in [path, *path.iterdir()] if path.is_dir() else [path]:
            info = item.stat()
            assert info.st_mode & 0o077 == 0, f"{item} is readable by others"
            if os.geteuid() == 0:
                assert info.st_uid == IMAGE_UID, f"{item}: the image's user cannot read it"
        if path.is_dir():
            assert {p.name for p in path.iterdir()} == {"ca.crt", "tls.crt", "tls.key"}
    assert re.fullmatch(r"[0-9a-f]{64}", (made / "cluster-token").read_text().strip())
    auth = tomllib.loads((made / "auth.toml").read_text())
    admin = (made / "admin.token").read_text().strip()
    assert auth["principals"]["admin"]["token_sha256"] == hashlib.sha256(admin.encode()).hexdigest()
    assert auth["principals"]["admin"]["roles"] == [{"prefix": "", "role": "admin"}]


def test_compose_members_pass_mutual_tls_with_each_other_by_name(made: Path) -> None:
    members = sorted(yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"])
    for server_id in members:
        for client_id in members:
            if client_id != server_id:
                seen = handshake(member_contexts(made, server_id)[0],
                                 member_contexts(made, client_id)[1], server_id)  # fmt: skip
                assert ("DNS", client_id) in seen["subjectAltName"]
    stranger = trustme.CA().issue_cert("n9")
    client = ssl.create_default_context(cafile=made / "ca.crt")
    stranger.configure_cert(client)
    with pytest.raises(ssl.SSLError, match="CERTIFICATE_VERIFY_FAILED|unknown ca"):
        handshake(member_contexts(made, "n1")[0], client, "n1")  # a CA it does not trust
    host = ssl.create_default_context(cafile=made / "ca.crt")  # the host reaches n1 so
    handshake(ssl_server_without_client_auth(made, "n1"), host, "localhost")


def ssl_server_without_client_auth(made: Path, member: str) -> ssl.SSLContext:
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(made / member / "tls.crt", made / member / "tls.key")
    return server


# -- the image's HEALTHCHECK over TLS ---------------------------------------------------------


def healthcheck() -> list[str]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    line = next(line for line in text.splitlines() if line.startswith("HEALTHCHECK"))
    command: list[str] = json.loads(line.partition("CMD ")[2])
    return [sys.executable, *command[1:]]


@pytest.fixture
def https_node(tmp_path: Path) -> Iterator[tuple[int, Any]]:
    """A stand-in member answering /healthz over TLS and requiring a client certificate of
    its CA (mutual TLS): the port, and the CA."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("paxlock-0.paxlock-peers").configure_cert(context)
    ca.configure_trust(context)
    context.verify_mode = ssl.CERT_REQUIRED

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], ca
    finally:
        server.shutdown()
        server.server_close()


def write_member_files(tmp_path: Path, ca: Any, name: str) -> dict[str, str]:
    cert = ca.issue_cert(name)
    paths = {"PAXLOCK_TLS_CERT": tmp_path / "tls.crt", "PAXLOCK_TLS_KEY": tmp_path / "tls.key",
             "PAXLOCK_TLS_CA": tmp_path / "ca.crt"}  # fmt: skip
    cert.cert_chain_pems[0].write_to_path(paths["PAXLOCK_TLS_CERT"])
    cert.private_key_pem.write_to_path(paths["PAXLOCK_TLS_KEY"])
    ca.cert_pem.write_to_path(paths["PAXLOCK_TLS_CA"])
    return {key: str(path) for key, path in paths.items()}


def test_the_healthcheck_speaks_mutual_tls_to_a_member(https_node: tuple[int, Any],
                                                       tmp_path: Path) -> None:  # fmt: skip
    port, ca = https_node
    base = {"PATH": os.environ.get("PATH", ""), "PAXLOCK_LISTEN": f"0.0.0.0:{port}"}
    member = write_member_files(tmp_path, ca, "paxlock-0.paxlock-peers")
    done = subprocess.run(healthcheck(), env={**base, **member}, capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    # A member certificate of another CA: the server is not trusted (and does not trust it).
    other = tmp_path / "other"
    other.mkdir()
    foreign = write_member_files(other, trustme.CA(), "paxlock-0.paxlock-peers")
    done = subprocess.run(healthcheck(), env={**base, **foreign}, capture_output=True, timeout=30)
    assert done.returncode != 0
    done = subprocess.run(healthcheck(), env=base, capture_output=True, timeout=30)
    assert done.returncode != 0, "plain http to a TLS member fails: the probe follows the config"


# -- Kubernetes: the cert-manager Certificate --------------------------------------------------


def test_the_cert_manager_certificate_names_every_member_as_its_peers_reach_it() -> None:
    docs = {f"{d['kind']}/{d['metadata']['name']}": d for d in yaml.safe_load_all(
        (DEPLOY / "k8s" / "cert-manager" / "certificate.yaml").read_text()) if d}  # fmt: skip
    sts = yaml.safe_load((DEPLOY / "k8s" / "statefulset.yaml").read_text())
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    peer_hosts = {urlsplit(item.partition("=")[2]).hostname
                  for item in env["PAXLOCK_PEER"].split(",")}  # fmt: skip
    assert len(peer_hosts) == sts["spec"]["replicas"]
    services = [d for d in yaml.safe_load_all((DEPLOY / "k8s" / "services.yaml").read_text())
                if d and d["spec"].get("clusterIP") != "None"]  # fmt: skip
    certificate = docs["Certificate/paxlock-tls"]["spec"]
    assert peer_hosts | {s["metadata"]["name"] for s in services} <= set(certificate["dnsNames"])
    assert {"server auth", "client auth"} <= set(certificate["usages"])
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert certificate["secretName"] == volumes["tls"]["secret"]["secretName"]
    issuer = docs[f"Issuer/{certificate['issuerRef']['name']}"]["spec"]["ca"]["secretName"]
    assert docs[f"Certificate/{issuer}"]["spec"]["isCA"] is True
