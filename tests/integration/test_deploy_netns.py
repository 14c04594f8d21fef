"""Three hosts, one member each: every member in a network namespace of its own, with its own
address, joined by veth pairs to a bridge that lives in a fourth namespace (issue 7).

Each member is started the way deploy/k8s/statefulset.yaml starts a pod: the container's own
start script and environment (pod name as member id, the member list of PAXLOCK_PEER with DNS
names, the advertise URL, the cluster token of the Secret), and the same port on every host.
The pod DNS names resolve through ``/etc/netns/NS/hosts``, which ``ip netns exec`` mounts over
``/etc/hosts`` for that namespace only. The test then checks that the cluster forms across the
hosts, refuses a peer without the token, and survives the loss of the primary's host (its link
goes down): the other two elect a new primary and grant a lease, and the old one rejoins.

Needs root and ``ip`` (iproute2); skips cleanly otherwise. Only addresses inside the namespaces
it creates are used, and the namespaces, their /etc/netns files and the processes are always
removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from paxlock.api.cli.serve import SETTINGS

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read deploy/ (test extras)")

STATEFULSET = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "statefulset.yaml"
IP = shutil.which("ip")
SUBNET = "10.213.7"
"""Addresses of the test's own namespaces only (nothing is routed outside them)."""

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="network namespaces are Linux only"),
    pytest.mark.skipif(IP is None, reason="no `ip` command (apt-get install -y iproute2)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
]

CLIENT = """\
import json, ssl, sys, urllib.error, urllib.request
method, url, body, token, ca, bearer = sys.argv[1:7]
request = urllib.request.Request(url, method=method, data=body.encode() or None,
                                 headers={"Content-Type": "application/json"})
if token:
    request.add_header("X-Paxlock-Cluster-Token", token)
if bearer:
    request.add_header("Authorization", "Bearer " + bearer)
context = ssl.create_default_context(cafile=ca) if ca else None
try:
    with urllib.request.urlopen(request, timeout=2, context=context) as response:
        status, raw = response.status, response.read()
except urllib.error.HTTPError as error:
    status, raw = error.code, error.read()
except OSError as error:
    status, raw = 0, json.dumps({"error": str(error)}).encode()
try:
    parsed = json.loads(raw) if raw else None
except ValueError:
    parsed = raw.decode(errors="replace")
print(json.dumps([status, parsed]))
"""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    assert IP is not None
    return subprocess.run([IP, *args], capture_output=True, text=True, check=check, timeout=30)


@dataclass
class Hosts:
    """The namespaces, the bridge and the members; ``close()`` undoes everything."""

    tag: str
    root: Path
    names: list[str] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ca: str = ""
    bearer: str = ""
    had_etc_netns: bool = field(default_factory=Path("/etc/netns").exists)

    @property
    def switch(self) -> str:
        return f"{self.tag}-sw"

    def ns(self, index: int) -> str:
        return f"{self.tag}-{index}"

    def address(self, index: int) -> str:
        return f"{SUBNET}.{10 + index}"

    def build(self, pods: list[str], peer_host: str) -> None:
        self._add_namespace(self.switch)
        ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", self.switch, "link", "set", "br0", "up")
        hosts = "127.0.0.1 localhost\n" + "".join(
            f"{self.address(i)} {pod}.{peer_host}\n" for i, pod in enumerate(pods))  # fmt: skip
        for index in range(len(pods)):
            ns = self.ns(index)
            self._add_namespace(ns)
            etc = Path("/etc/netns") / ns
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "hosts").write_text(hosts)
            ip("link", "add", "eth0", "netns", ns, "type", "veth",
               "peer", "name", f"v{index}", "netns", self.switch)  # fmt: skip
            ip("-n", self.switch, "link", "set", f"v{index}", "master", "br0", "up")
            ip("-n", ns, "addr", "add", f"{self.address(index)}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "link", "set", "lo", "up")

    def _add_namespace(self, ns: str) -> None:
        ip("netns", "add", ns)
        self.namespaces.append(ns)

    def link(self, index: int, up: bool) -> None:
        """The host's cable: its port on the bridge goes down (or back up)."""
        ip("-n", self.switch, "link", "set", f"v{index}", "up" if up else "down")

    def start(self, index: int, pod: str, command: list[str], env: dict[str, str]) -> None:
        assert IP is not None
        log = open(self.root / f"{pod}.log", "ab")
        self.processes[pod] = subprocess.Popen([IP, "netns", "exec", self.ns(index), *command],
                                               env=env, stdout=log, stderr=log)  # fmt: skip
        log.close()

    def request(self, index: int, method: str, url: str, body: Any = None,
                token: str = "") -> tuple[int, Any]:  # fmt: skip
        """One HTTP request made from inside host ``index``'s namespace, as a client that
        trusts the cluster's CA and holds a bearer token (when the cluster uses them)."""
        assert IP is not None
        done = subprocess.run(
            [IP, "netns", "exec", self.ns(index), sys.executable, "-c", CLIENT, method, url,
             "" if body is None else json.dumps(body), token, self.ca, self.bearer],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        status, parsed = json.loads(done.stdout)
        return int(status), parsed

    def logs(self) -> str:
        return "\n".join(f"--- {path.name} ---\n{path.read_text(errors='replace')[-3000:]}"
                         for path in sorted(self.root.glob("*.log")))  # fmt: skip

    def close(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for ns in reversed(self.namespaces):
            ip("netns", "del", ns, check=False)
            shutil.rmtree(Path("/etc/netns") / ns, ignore_errors=True)
        if not self.had_etc_netns:
            with contextlib.suppress(OSError):
                Path("/etc/netns").rmdir()  # created by this test; removed only if empty


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[Hosts]:
    made = Hosts(f"pxl{os.getpid() % 100000}", tmp_path)
    probe = ip("netns", "add", made.switch, check=False)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {probe.stderr.strip()}")
    bridge = ip("-n", made.switch, "link", "add", "br0", "type", "bridge", check=False)
    ip("netns", "del", made.switch)
    if bridge.returncode != 0:
        pytest.skip(f"cannot create a bridge in a namespace here: {bridge.stderr.strip()}")
    try:
        yield made
    finally:
        made.close()


def pod_env(container: dict[str, Any], pod: str) -> dict[str, str]:
    """The container's environment as the kubelet builds it: field refs and $(VAR)."""
    env: dict[str, str] = {}
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = re.sub(r"\$\(([A-Z_]+)\)", lambda m: env[m.group(1)],
                                       item["value"])  # fmt: skip
        elif item["valueFrom"].get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[item["name"]] = pod
    return env


def mount_secrets(env: dict[str, str], root: Path, files: dict[str, bytes]) -> None:
    """The pod's Secret volumes: each file a setting names, made under ``root`` at the same
    path (mode 0600), and the setting pointed at it."""
    for name, content in files.items():
        path = root / env[name].lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(0o600)
        env[name] = str(path)


def cluster_secrets(hosts: Hosts, pods: list[str], peer_host: str,
                    token: str) -> dict[str, bytes]:  # fmt: skip
    """The three Secrets of the StatefulSet: the token, one certificate for every pod (its
    peer name, and its address, which the test's client uses), and an auth file whose one
    principal is admin. The client side (CA, bearer token) is kept on ``hosts``."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert(*(f"{pod}.{peer_host}" for pod in pods),
                         *(hosts.address(i) for i in range(len(pods))))  # fmt: skip
    hosts.ca = str(hosts.root / "client-ca.crt")
    ca.cert_pem.write_to_path(hosts.ca)
    hosts.bearer = secrets.token_hex(16)
    digest = hashlib.sha256(hosts.bearer.encode()).hexdigest()
    return {
        "PAXLOCK_CLUSTER_TOKEN_FILE": token.encode() + b"\n",
        "PAXLOCK_TLS_CERT": b"".join(pem.bytes() for pem in cert.cert_chain_pems),
        "PAXLOCK_TLS_KEY": cert.private_key_pem.bytes(),
        "PAXLOCK_TLS_CA": ca.cert_pem.bytes(),
        "PAXLOCK_AUTH": (f'[principals.ops]\ntoken_sha256 = "{digest}"\n'
                         'roles = [{ prefix = "", role = "admin" }]\n').encode(),
    }


def test_a_cluster_of_three_hosts_survives_losing_the_primary_host(hosts: Hosts,
                                                                   wait_for: Any) -> None:  # fmt: skip
    sts = yaml.safe_load(STATEFULSET.read_text())
    spec = sts["spec"]
    (container,) = spec["template"]["spec"]["containers"]
    pods = [f"{sts['metadata']['name']}-{i}" for i in range(spec["replicas"])]
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "paxlock").exists():
        pytest.skip("no paxlock script beside the interpreter (package not installed)")
    hosts.build(pods, spec["serviceName"])
    files = cluster_secrets(hosts, pods, spec["serviceName"], secrets.token_hex(16))
    # TODO(issue 12): until the TLS and the auth work are merged, the pods run without what
    # is missing (plain HTTP, no --auth); once both are, these two branches are dead.
    unmerged: set[str] = set()
    if "tls_cert" not in SETTINGS:
        hosts.ca = ""
        unmerged |= {"PAXLOCK_TLS_CERT", "PAXLOCK_TLS_KEY", "PAXLOCK_TLS_CA"}
    if "auth" not in SETTINGS:
        hosts.bearer = ""
        unmerged.add("PAXLOCK_AUTH")
    files = {name: content for name, content in files.items() if name not in unmerged}
    scheme = "https" if hosts.ca else "http"
    port = 0
    for index, pod in enumerate(pods):
        env = pod_env(container, pod)
        port = int(env["PAXLOCK_LISTEN"].rpartition(":")[2])
        env["PAXLOCK_DATA_DIR"] = str(hosts.root / pod / "data")  # the pod's volume
        env["PATH"] = f"{bin_dir}:/usr/bin:/bin"  # the image's `paxlock`
        env = {k: v.replace("https://", f"{scheme}://") for k, v in env.items()
               if k not in unmerged}
        mount_secrets(env, hosts.root / pod, files)
        hosts.start(index, pod, container["command"] + container["args"], env)
    url = {pod: f"{scheme}://{hosts.address(i)}:{port}" for i, pod in enumerate(pods)}

    def agreed_primary(indexes: list[int]) -> str | None:
        views = [hosts.request(i, "GET", url[pods[i]] + "/v1/cluster") for i in indexes]
        primaries = {body.get("primary") if status == 200 else None for status, body in views}
        (primary,) = primaries if len(primaries) == 1 else (None,)
        if primary is None:
            return None
        status, _ = hosts.request(indexes[0], "GET", url[primary] + "/readyz")
        return str(primary) if status == 200 else None

    try:
        primary = wait_for(lambda: agreed_primary([0, 1, 2]), 30, "a primary agreed by 3 hosts",
                           interval_s=0.2)  # fmt: skip
        def all_reachable() -> dict[str, Any] | None:  # heard directly or via the primary
            status, view = hosts.request(0, "GET", url[pods[0]] + "/v1/cluster")
            ok = status == 200 and all(m["reachable"] for m in view["members"])
            return dict(view) if ok else None

        view = wait_for(all_reachable, 10, "every member reachable from the first host",
                        interval_s=0.2)  # fmt: skip
        assert {m["id"]: m["url"] for m in view["members"]} == {
            pod: f"{scheme}://{pod}.{spec['serviceName']}:{port}" for pod in pods}  # fmt: skip

        # Peers must show the cluster token from the Secret (and, with TLS, a certificate).
        status, body = hosts.request(1, "GET", url[pods[0]] + "/internal/ws")
        assert status in (401, 403), body

        status, lease = hosts.request(1, "POST", url[pods[1]] + "/v1/leases/netns:acquire",
                                      {"holder": "before", "ttl": 60})  # fmt: skip
        assert status == 200, lease

        # The primary's host drops off the network.
        lost = pods.index(primary)
        survivors = [i for i in range(len(pods)) if i != lost]
        hosts.link(lost, up=False)
        wait_for(lambda: (p := agreed_primary(survivors)) not in (None, primary)
                               and p, 30, "a new primary among the two hosts left",
                               interval_s=0.2)  # fmt: skip
        acquired = wait_for(
            lambda: (r := hosts.request(survivors[0], "POST",
                                        url[pods[survivors[0]]] + "/v1/leases/after:acquire",
                                        {"holder": "after", "ttl": 60}))[0] == 200 and r,
            30, "a lease granted without the lost host", interval_s=0.2,
        )  # fmt: skip
        assert acquired[1]["token"] > lease["token"]
        status, held = hosts.request(survivors[1], "GET", url[pods[survivors[1]]]
                                     + "/v1/leases/netns")  # fmt: skip
        assert status == 200 and held["holder"] == "before" and held["token"] == lease["token"]

        # Its cable is plugged back in: the three agree on a primary again (the new one, or
        # the old one if its higher ballot won an election on its return) and it serves.
        hosts.link(lost, up=True)
        wait_for(lambda: agreed_primary([lost, *survivors]), 30, "the lost host rejoining",
                 interval_s=0.2)  # fmt: skip
        status, held = wait_for(
            lambda: (r := hosts.request(lost, "GET", url[pods[lost]] + "/v1/leases/after"))[0]
            == 200 and r, 30, "a lease read through the host that came back", interval_s=0.2,
        )  # fmt: skip
        assert held["holder"] == "after" and held["token"] == acquired[1]["token"]
        assert all(process.poll() is None for process in hosts.processes.values())
    except AssertionError:
        print(hosts.logs())
        raise
