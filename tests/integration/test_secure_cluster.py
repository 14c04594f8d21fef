"""Issue 12's "done when": a 3-member cluster of real processes started with TLS (mutual on
the peer links), ``--auth`` and a cluster token file serves the README's SDK examples, which
run unchanged except for the endpoint scheme, the CA file and a token; and the same cluster
refuses whoever lacks one of the three credentials.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
import runpy
import ssl
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from paxlock.api.client.sync import Client

HARNESS = sys.modules["paxlock_test_harness"]  # registered by tests/conftest.py
TLS = runpy.run_path(str(Path(__file__).with_name("test_tls.py")))
SDK_DOCS = runpy.run_path(str(Path(__file__).with_name("test_sdk_docs.py")))
TOKEN = "app-token-" + "7" * 32
READER = "reader-token-" + "3" * 32
CLUSTER_TOKEN = "cluster-token-" + "5" * 32


def auth_file(root: Path) -> Path:
    def digest(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    path = root / "auth.toml"
    path.write_text(
        f'[principals.app]\ntoken_sha256 = "{digest(TOKEN)}"\n'
        'roles = [{ prefix = "", role = "lock" }]\n'
        f'[principals.auditor]\ntoken_sha256 = "{digest(READER)}"\n'
        'roles = [{ prefix = "", role = "read" }]\n'
    )  # fmt: skip
    return path


@pytest.fixture
def secure_cluster(cluster_factory: Callable[..., Any], tmp_path: Path) -> Any:
    pki = TLS["Pki"](tmp_path)
    token_file = tmp_path / "cluster-token"
    token_file.write_text(CLUSTER_TOKEN + "\n")
    token_file.chmod(0o600)
    cluster = TLS["tls_cluster"](cluster_factory, pki, 3)
    cluster.extra_args += ["--auth", str(auth_file(tmp_path)),
                           "--cluster-token-file", str(token_file)]  # fmt: skip
    for node_id in cluster.members:
        TLS["start_tls"](cluster, pki, node_id)
    cluster.pki = pki
    return cluster


def test_the_readme_sdk_examples_run_against_a_cluster_with_tls_auth_and_a_token_file(
    secure_cluster: Any,
) -> None:
    cluster, ca_file = secure_cluster, secure_cluster.pki.ca_file
    urls = cluster.urls()
    assert all(url.startswith("https://") for url in urls)
    try:
        with Client(urls, ca_file=ca_file, token=TOKEN, retry_deadline=30) as client:
            client.acquire("secure/ready", ttl=5)  # the cluster elected a primary
        for index, example in enumerate(SDK_DOCS["EXAMPLES"]):
            source = example
            for port, url in zip(("7001", "7002", "7003"), urls, strict=True):
                source = source.replace(f"http://127.0.0.1:{port}", url)
            source, changed = re.subn(r"Client\(ENDPOINTS",
                                      "Client(ENDPOINTS, ca_file=CA_FILE, token=TOKEN", source)
            assert changed and "127.0.0.1:700" not in source
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(compile(source, f"README SDK example {index + 1}", "exec"),
                     {"__name__": "__main__", "CA_FILE": str(ca_file), "TOKEN": TOKEN})
            assert out.getvalue().strip(), "every example prints what it did"
    except BaseException:
        print(cluster.logs())
        raise


def test_without_each_credential_the_secure_cluster_refuses(secure_cluster: Any) -> None:
    cluster, pki = secure_cluster, secure_cluster.pki
    url = cluster.urls()[0]
    trusting = pki.client_context()

    def status(path: str, token: str | None, method: str = "GET",
               context: ssl.SSLContext | None = trusting) -> int:  # fmt: skip
        request = urllib.request.Request(url + path, method=method, data=b"{}" if method ==
                                         "POST" else None)  # fmt: skip
        request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=10, context=context) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as error:
            return int(error.code)

    with Client(cluster.urls(), ca_file=pki.ca_file, token=TOKEN, retry_deadline=30) as app:
        app.acquire("secure/held", ttl=30)

    def healthy() -> bool:  # the acquire needed two members; this one may still be starting
        with contextlib.suppress(urllib.error.URLError, OSError):
            return status("/healthz", None) == 200  # open, over TLS
        return False

    HARNESS.wait_for(healthy, 20.0, f"{url} answering /healthz")
    assert status("/v1/leases/secure/held", None) == 401  # no token
    assert status("/v1/leases/secure/held", "wrong") == 401
    HARNESS.wait_for(lambda: status("/v1/leases/secure/held", READER) == 200, 20.0,
                     "the read role reading (once this member knows the primary)")  # fmt: skip
    assert status("/v1/leases/secure/held:release", READER, "POST") == 403  # but may not write
    with pytest.raises(urllib.error.URLError):  # no CA: the server's certificate is untrusted
        status("/healthz", TOKEN, context=ssl.create_default_context())
    # a peer with the CA's certificate but without the cluster token is refused
    peer = pki.client_context(pki.issue("n2", tag="-probe"))
    request = urllib.request.Request(url + "/internal/ws", headers={"X-Paxlock-Node": "n2"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10, context=peer)
    assert refused.value.code == 401
