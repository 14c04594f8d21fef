"""The files of ``deploy/`` say only what the server understands (issue 7).

Docker has no engine here and there is no Kubernetes or systemd to run them, so these tests
read the Dockerfile, the compose file, the manifests, the unit and the example config, and
check every flag, ``PAXLOCK_*`` variable, port, path and metric name they use against the real
thing: ``paxlock serve --help``, ``api.serve.SETTINGS``, the HTTP routes and a node's metrics
registry. Where a piece of them can run here (the image's HEALTHCHECK command, the pod's start
script, each member's settings through ``resolve`` and ``node_config``), it is run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web

from paxlock.api.cli.main import build_parser
from paxlock.api.server.routes import add_routes
from paxlock.api.cli.cluster_token import TOKEN_ENV
from paxlock.api.cli.serve import ENV_PREFIX, SETTINGS, node_config, resolve
from paxlock.coordinator.metrics import Metrics

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read deploy/ (test extras)")

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SECRET_SETTINGS = {"cluster_token_file": "cluster_token", "tls_cert": "tls_cert",
                   "tls_key": "tls_key", "tls_ca": "tls_ca", "auth": "auth_file"}
"""The settings that name a secret's file, and the NodeConfig field each one fills."""
PENDING = set(SECRET_SETTINGS) - set(SETTINGS)
"""Settings of issue 12's TLS and auth work that deploy/ already uses: empty once merged.
TODO(issue 12): until then their flags and variables are checked by name only."""
SETTING_ENV = {ENV_PREFIX + name.upper() for name in set(SETTINGS) | PENDING} | {TOKEN_ENV}
PAXLOCK_TOKEN = re.compile(r"\bpaxlock_[a-z0-9_]+\b")
PLACEHOLDER_TOKEN = "t0ken-for-tests"


# -- what the server understands ------------------------------------------------------------


@pytest.fixture(scope="module")
def serve_flags() -> set[str]:
    """Every ``--flag`` of ``paxlock serve --help``, from the installed command itself."""
    out = subprocess.run([sys.executable, "-m", "paxlock.api.cli", "serve", "--help"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", out)) - {"--help"}


def routes() -> set[str]:
    app = web.Application()
    add_routes(app.router)
    return {r.canonical for r in app.router.resources()}


def exposed_metric_names() -> set[str]:
    """The sample names a node exposes (``_total``, ``_bucket``...), labelled ones included."""
    metrics = Metrics("n1")
    metrics.observe_http("/healthz", "GET", 200, 0.001)
    metrics.http_forwarded.labels(outcome="ok").inc()
    return {sample.name for family in metrics.registry.collect() for sample in family.samples}


def metric_labels() -> set[str]:
    metrics = Metrics("n1")
    metrics.observe_http("/healthz", "GET", 200, 0.001)
    metrics.http_forwarded.labels(outcome="ok").inc()
    labels = {key for family in metrics.registry.collect() for sample in family.samples
              for key in sample.labels}  # fmt: skip
    return labels | {"job", "instance", "cluster", "__name__"}  # added by Prometheus / us


def settings_of(environ: Mapping[str, str], argv: list[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(["serve", *(argv or [])])
    settings: dict[str, Any] = resolve(args, environ)
    return settings


@pytest.fixture(scope="module")
def secret_material(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """What each secret file holds, real enough for any check a setting makes: a token, a
    certificate and key from a CA made here (trustme), and an auth file of the issue's shape."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    digest = "0" * 64
    return {
        "cluster_token_file": PLACEHOLDER_TOKEN.encode() + b"\n",
        "tls_cert": b"".join(pem.bytes() for pem in cert.cert_chain_pems),
        "tls_key": cert.private_key_pem.bytes(), "tls_ca": ca.cert_pem.bytes(),
        "auth": f'[principals.ops]\ntoken_sha256 = "{digest}"\nroles = [{{ prefix = "", '
                f'role = "admin" }}]\n'.encode(),
    }  # fmt: skip


def checked_config(settings: dict[str, Any], root: Path, material: Mapping[str, bytes]) -> Any:
    """``node_config`` of a deployed member's settings, with each secret file it names made
    under ``root`` (same path, fresh content, mode 0600) and the store never opened. Checks
    that every secret reached its NodeConfig field."""
    settings["data_dir"] = "/nonexistent/data"
    for key in set(SECRET_SETTINGS) & set(settings):
        path = root / str(settings[key]).lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(material[key])
        path.chmod(0o600)
        settings[key] = str(path)
    config = node_config(settings)
    assert config.cluster_token == PLACEHOLDER_TOKEN
    for key, field in SECRET_SETTINGS.items():
        if key in settings and field != "cluster_token":
            assert str(getattr(config, field)) == settings[key], field
    return config


def check_paxlock_env(names: Any, where: str) -> None:
    for name in names:
        if name.startswith(ENV_PREFIX):
            assert name in SETTING_ENV, f"{where}: {name} is not a setting of api/cli/serve.py"


def http_paths(text: str) -> set[str]:
    return set(re.findall(r"https?://[^/\s'\"]+(/[A-Za-z0-9_/.-]*)", text))


# -- Dockerfile -------------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        joined = (pending + line).strip()
        pending = ""
        if joined:
            word, _, rest = joined.partition(" ")
            instructions.append((word.upper(), rest.strip()))
    return instructions


def docker_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in dockerfile():
        if word == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def dockerignore_keeps(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents wins."""
    keep = True
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        regex = re.escape(pattern.strip("/"))
        regex = (regex.replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
                 .replace(r"\*", "[^/]*").replace(r"\?", "[^/]"))  # fmt: skip
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            keep = negate
    return keep


def test_dockerfile_is_small_multi_stage_and_non_root() -> None:
    steps = dockerfile()
    args = {rest.partition("=")[0]: rest.partition("=")[2] for word, rest in steps if word == "ARG"}
    froms = [rest for word, rest in steps if word == "FROM"]
    assert len(froms) >= 2 and any(" AS build" in f for f in froms), "a multi-stage build"
    assert args["PYTHON_IMAGE"].startswith("python:3.11-slim"), "a slim Python 3.11 base"
    assert all(f.split()[0] == "${PYTHON_IMAGE}" for f in froms)
    users = [rest for word, rest in steps if word == "USER"]
    assert users, "the image must not run as root"
    uid = users[-1].split(":")[0].replace("${PAXLOCK_UID}", args.get("PAXLOCK_UID", ""))
    assert uid.isdigit() and int(uid) != 0, users
    entry = [json.loads(rest) for word, rest in steps if word == "ENTRYPOINT"]
    cmd = [json.loads(rest) for word, rest in steps if word == "CMD"]
    assert entry == [["paxlock"]] and cmd == [["serve"]]
    wheel_steps = " ".join(rest for word, rest in steps if word == "RUN")
    assert "pip wheel" in wheel_steps and "--no-index" in wheel_steps


def test_dockerfile_settings_ports_volume_and_healthcheck_agree() -> None:
    steps = dockerfile()
    env = docker_env()
    check_paxlock_env(env, "Dockerfile ENV")
    port = int(env["PAXLOCK_LISTEN"].rpartition(":")[2])
    assert [rest for word, rest in steps if word == "EXPOSE"] == [str(port)]
    volumes = [json.loads(rest) for word, rest in steps if word == "VOLUME"]
    assert len(volumes) == 1 and len(volumes[0]) == 1
    assert Path(env["PAXLOCK_DATA_DIR"]).is_relative_to(volumes[0][0]), "the store is on the volume"
    healthcheck = [rest for word, rest in steps if word == "HEALTHCHECK"]
    assert len(healthcheck) == 1 and "CMD [" in healthcheck[0]
    command = json.loads(healthcheck[0].partition("CMD ")[2])
    assert command[0] == "python" and "/healthz" in command[-1], "stdlib only, no curl"
    assert http_paths(command[-1].replace("{port}", "1")) <= routes()


def test_dockerfile_copies_every_package_folder_and_the_context_keeps_them() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    folders = set(pyproject["tool"]["setuptools"]["package-dir"].values())
    copied: list[str] = []
    for word, rest in dockerfile():
        if word == "COPY" and "--from" not in rest:
            copied += [source.rstrip("/") for source in rest.split()[:-1]]
    for folder in folders - {"."}:
        assert folder in copied or any(folder.startswith(c + "/") for c in copied), folder
    root_needs = {"pyproject.toml", pyproject["project"]["readme"], "py.typed",
                  *pyproject["project"].get("license-files", []),
                  *(module.name for module in ROOT.glob("*.py"))}  # the package's own modules
    assert root_needs <= set(copied)
    patterns = [line.strip() for line in (DEPLOY / "Dockerfile.dockerignore").read_text()
                .splitlines() if line.strip() and not line.startswith("#")]  # fmt: skip
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
        files = [source] if (ROOT / source).is_file() else [
            str(p.relative_to(ROOT)) for p in (ROOT / source).rglob("*.py")]  # fmt: skip
        for file in files:
            assert dockerignore_keeps(file, patterns), f"{file} is left out of the build context"
    assert not dockerignore_keeps("tests/harness.py", patterns)
    assert not dockerignore_keeps("api/server/__pycache__/app.cpython-311.pyc", patterns)


def free_port() -> int:
    return int(sys.modules["paxlock_test_harness"].free_port())  # outside the ephemeral range


def test_the_image_healthcheck_command_probes_a_live_node(tmp_path: Path) -> None:
    """The HEALTHCHECK's own command, run here against a real node, then a dead one."""
    healthcheck = next(rest for word, rest in dockerfile() if word == "HEALTHCHECK")
    command = json.loads(healthcheck.partition("CMD ")[2])
    command[0] = sys.executable
    port = free_port()
    env = dict(os.environ, PAXLOCK_LISTEN=f"127.0.0.1:{port}")
    node = subprocess.Popen(
        [sys.executable, "-m", "paxlock.api.cli", "serve", "--id", "n1", "--data-dir",
         str(tmp_path / "n1"), "--peer", f"n2=http://127.0.0.1:{free_port()}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline_polls = 100
        for _ in range(deadline_polls):
            if subprocess.run(command, env=env, capture_output=True).returncode == 0:
                break
            assert node.poll() is None, "the node exited"
        else:
            raise AssertionError("the HEALTHCHECK never passed against a live node")
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(timeout=10)
    assert subprocess.run(command, env=env, capture_output=True).returncode != 0


# -- compose ---------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    text = (DEPLOY / "compose.yaml").read_text()
    text = re.sub(r"\$\{[A-Z_]+:\?[^}]*\}", PLACEHOLDER_TOKEN, text)  # required variables
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


def compose_mounts(service: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """target -> (source, options) of a compose service's short-syntax volumes."""
    mounts = {}
    for mount in service["volumes"]:
        source, target, *options = mount.split(":")
        mounts[target] = (source, ",".join(options))
    return mounts


def test_compose_runs_three_members_each_with_its_own_volume(
    tmp_path: Path, secret_material: dict[str, bytes],
) -> None:
    spec = compose()
    services = spec["services"]
    assert len(services) == 3, "a 3-member cluster"
    volume_dir = json.loads(next(r for w, r in dockerfile() if w == "VOLUME"))[0]
    volumes_used: list[str] = []
    for name, service in services.items():
        build = service["build"]
        assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
        assert service["command"] == ["serve"]
        env = {key: str(value) for key, value in service["environment"].items()}
        check_paxlock_env(env, f"compose service {name}")
        assert env["PAXLOCK_ID"] == name and TOKEN_ENV not in env, "the token is a file"
        port = int(env["PAXLOCK_LISTEN"].rpartition(":")[2])
        assert all(mapping.endswith(f":{port}") for mapping in service["ports"])
        assert env["PAXLOCK_ADVERTISE"] == f"https://{name}:{port}"
        for peer in env["PAXLOCK_PEER"].split(","):
            peer_id, _, url = peer.partition("=")
            assert peer_id in services and peer_id != name
            assert url == f"https://{peer_id}:{port}", "peers are reached by service name"
        mounts = compose_mounts(service)
        volume, _ = mounts[volume_dir]
        assert volume in spec["volumes"]
        assert Path(env["PAXLOCK_DATA_DIR"]).is_relative_to(volume_dir)
        volumes_used.append(volume)
        # The token is a compose secret; the certificates (this member's own) and the auth
        # file are read-only bind mounts from deploy/secrets/.
        (secret,) = service["secrets"]
        assert spec["secrets"][secret]["file"] == "./secrets/cluster-token"
        assert env[TOKEN_ENV + "_FILE"] == f"/run/secrets/{secret}"
        for key in ("tls_cert", "tls_key", "tls_ca", "auth"):
            path = Path(env[ENV_PREFIX + key.upper()])
            target = next(t for t in mounts if path.is_relative_to(t))
            source, options = mounts[target]
            assert options == "ro" and source.startswith("./secrets/"), mounts[target]
            if key.startswith("tls"):
                assert source == f"./secrets/{name}", "each member its own certificate"
        settings = settings_of(env)
        config = checked_config(settings, tmp_path / name, secret_material)
        assert set(config.peers) == set(services)
    assert len(set(volumes_used)) == 3, "never share a store between members"


# -- Kubernetes ------------------------------------------------------------------------------


def manifests() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return found


def pod_env(container: Mapping[str, Any], pod_name: str, token: str) -> dict[str, str]:
    """The container's environment as the kubelet builds it: field refs, secrets, $(VAR)."""
    env: dict[str, str] = {}
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = re.sub(r"\$\(([A-Z_]+)\)", lambda m: env[m.group(1)],
                                       item["value"])  # fmt: skip
        elif item["valueFrom"].get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[item["name"]] = pod_name
        elif "secretKeyRef" in item["valueFrom"]:
            env[item["name"]] = token
        else:
            raise AssertionError(f"unexpected env source {item}")
    return env


def run_pod_script(container: Mapping[str, Any], env: Mapping[str, str],
                   tmp_path: Path) -> dict[str, str]:  # fmt: skip
    """Run the container's start script with a stand-in ``paxlock`` that reports what it got."""
    stub_dir = tmp_path / "stub-bin"
    stub_dir.mkdir(exist_ok=True)
    stub = stub_dir / "paxlock"
    stub.write_text('#!/bin/sh\nprintf "ARGS=%s\\n" "$*"\nenv | grep "^PAXLOCK_"\n')
    stub.chmod(0o755)
    script = container["command"] + container["args"]
    out = subprocess.run(script, env={**env, "PATH": f"{stub_dir}:/usr/bin:/bin"},
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return dict(line.split("=", 1) for line in out.splitlines())


def test_kubernetes_statefulset_services_and_budget_fit_together(
    tmp_path: Path, secret_material: dict[str, bytes],
) -> None:
    found = manifests()
    (sts,) = [d for d in found.values() if d["kind"] == "StatefulSet"]
    spec = sts["spec"]
    replicas = spec["replicas"]
    assert replicas in (3, 5) and spec["podManagementPolicy"] == "Parallel"
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    headless = found[f"Service/{spec['serviceName']}"]["spec"]
    assert headless["clusterIP"] == "None" and headless["publishNotReadyAddresses"] is True
    clients = [d for k, d in found.items() if k.startswith("Service/")
               and d["metadata"]["name"] != spec["serviceName"]]  # fmt: skip
    assert len(clients) == 1 and clients[0]["spec"].get("clusterIP") != "None"
    for service in (headless, clients[0]["spec"]):
        assert service["selector"].items() <= labels.items()
    (pdb,) = [d for d in found.values() if d["kind"] == "PodDisruptionBudget"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1 and replicas - 1 > replicas // 2
    affinity = spec["template"]["spec"]["affinity"]["podAntiAffinity"]
    (rule,) = affinity["requiredDuringSchedulingIgnoredDuringExecution"]
    assert rule["topologyKey"] == "kubernetes.io/hostname"
    assert rule["labelSelector"]["matchLabels"].items() <= labels.items()

    (container,) = spec["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for service in (headless, clients[0]["spec"]):
        assert all(p["targetPort"] in ports for p in service["ports"])
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] in routes() and get["port"] in ports and get["scheme"] == "HTTPS"
    annotations = spec["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scheme"] == "https"
    assert annotations["prometheus.io/path"] in routes()
    assert int(annotations["prometheus.io/port"]) in ports.values()

    env_items = {item["name"]: item for item in container["env"]}
    check_paxlock_env(env_items, "StatefulSet env")
    assert TOKEN_ENV not in env_items, "the token is a file, not a value in the pod spec"
    # Each secret setting names a file of a Secret mounted read-only: the token, the TLS
    # certificates (one Secret, kubernetes.io/tls keys plus ca.crt) and the auth file.
    volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
    secret_mounts = {m["mountPath"]: volumes[m["name"]]["secret"]
                     for m in container["volumeMounts"] if "secret" in volumes.get(m["name"], {})}
    secret_names = {}
    for key in SECRET_SETTINGS:
        path = Path(env_items[ENV_PREFIX + key.upper()]["value"])
        mount = next(m for m in container["volumeMounts"] if m["mountPath"] == str(path.parent))
        assert mount.get("readOnly") is True, mount
        source = secret_mounts[str(path.parent)]
        assert {item["path"]: item["key"] for item in source["items"]}[path.name] == path.name
        assert source["defaultMode"] & 0o077 == 0o040, "no one but the pod's group reads it"
        secret_names[key] = source["secretName"]
    assert secret_names == {"cluster_token_file": "paxlock-cluster-token", "auth": "paxlock-auth",
                            "tls_cert": "paxlock-tls", "tls_key": "paxlock-tls",
                            "tls_ca": "paxlock-tls"}  # fmt: skip
    assert {Path(env_items[ENV_PREFIX + k.upper()]["value"]).name for k in SECRET_SETTINGS
            if k.startswith("tls")} == {"tls.crt", "tls.key", "ca.crt"}  # fmt: skip
    header = (DEPLOY / "k8s" / "statefulset.yaml").read_text().split("\napiVersion")[0]
    for name in set(secret_names.values()):
        assert f"kubectl create secret generic {name} " in header, f"how to make {name}"
    uid = int(spec["template"]["spec"]["securityContext"]["runAsUser"])
    assert str(uid) in (DEPLOY / "Dockerfile").read_text(), "the image's user"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    (claim,) = spec["volumeClaimTemplates"]
    if container["securityContext"].get("readOnlyRootFilesystem"):
        assert "/tmp" in mounts.values()

    sts_name = sts["metadata"]["name"]
    pods = [f"{sts_name}-{i}" for i in range(replicas)]
    for pod in pods:
        env = pod_env(container, pod, PLACEHOLDER_TOKEN)
        port = int(env["PAXLOCK_LISTEN"].rpartition(":")[2])
        assert port in ports.values()
        assert Path(env["PAXLOCK_DATA_DIR"]).is_relative_to(mounts[claim["metadata"]["name"]])
        members = dict(item.split("=", 1) for item in env["PAXLOCK_PEER"].split(","))
        assert list(members) == pods, "one entry per pod, named after it"
        for member, url in members.items():
            assert url == f"https://{member}.{spec['serviceName']}:{port}"
        assert env["PAXLOCK_ADVERTISE"] == members[pod]
        started = run_pod_script(container, env, tmp_path)
        assert started["ARGS"] == "serve"
        assert started["PAXLOCK_PEER"].split(",") == [f"{m}={u}" for m, u in members.items()
                                                     if m != pod]  # fmt: skip
        config = checked_config(settings_of(started), tmp_path / pod, secret_material)
        assert config.node_id == pod and set(config.peers) == set(pods)


# -- systemd ---------------------------------------------------------------------------------


def unit() -> list[tuple[str, str, str]]:
    """(section, key, value) in order; systemd allows a key more than once."""
    entries: list[tuple[str, str, str]] = []
    section = ""
    text = (DEPLOY / "systemd" / "paxlock.service").read_text()
    for line in re.sub(r"\\\n\s*", " ", text).splitlines():  # continuation lines joined
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        entries.append((section, key.strip(), value.strip()))
    return entries


def test_systemd_unit_is_hardened() -> None:
    service = {key: value for section, key, value in unit() if section == "Service"}
    assert service.get("DynamicUser") == "yes" or service.get("User") not in (None, "root")
    expected = {
        "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
        "PrivateTmp": "yes", "PrivateDevices": "yes", "CapabilityBoundingSet": "",
        "RestrictSUIDSGID": "yes", "MemoryDenyWriteExecute": "yes", "LockPersonality": "yes",
        "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
        "ProtectControlGroups": "yes", "RestrictNamespaces": "yes",
    }  # fmt: skip
    for key, value in expected.items():
        assert service.get(key) == value, f"{key}={service.get(key)!r}, want {value!r}"
    assert service["StateDirectory"] == "paxlock" and service["RestartPreventExitStatus"] == "2"


def test_systemd_unit_and_example_config_use_real_settings(
    serve_flags: set[str], tmp_path: Path, secret_material: dict[str, bytes],
) -> None:
    service = {key: value for section, key, value in unit() if section == "Service"}
    argv = shlex.split(service["ExecStart"])
    assert Path(argv[0]).name == "paxlock" and argv[1] == "serve"
    flags = [word.partition("=")[0] for word in argv[2:] if word.startswith("--")]
    pending = {"--" + name.replace("_", "-") for name in PENDING}
    assert set(flags) <= serve_flags | pending, set(flags) - serve_flags
    options = dict(zip(argv[2::2], argv[3::2]))
    assert options["--config"] == f"%E/{service['ConfigurationDirectory']}/paxlock.toml"
    assert options["--data-dir"] == f"%S/{service['StateDirectory']}"
    assert "EnvironmentFile" not in service, "no secret in the environment: credentials"
    environment = dict(item.split("=", 1) for item in service["Environment"].split())
    check_paxlock_env(environment, "Environment=")

    # Every secret is a credential from /etc/paxlock, given by its file in the credentials
    # directory: LoadCredential=NAME:PATH, then --flag ${CREDENTIALS_DIRECTORY}/NAME.
    credentials = dict(value.split(":", 1) for section, key, value in unit()
                       if key == "LoadCredential")  # fmt: skip
    assert all(source.startswith("/etc/paxlock/") for source in credentials.values())
    assert credentials["cluster-token"] == "/etc/paxlock/cluster-token"
    given = {flag: value.removeprefix("${CREDENTIALS_DIRECTORY}/") for flag, value in
             options.items() if value.startswith("${CREDENTIALS_DIRECTORY}/")}  # fmt: skip
    secret_flags = {"--" + key.replace("_", "-") for key in SECRET_SETTINGS}
    assert set(given) == secret_flags and set(given.values()) == set(credentials)

    toml_path = DEPLOY / "systemd" / "paxlock.toml"
    table = tomllib.loads(toml_path.read_text())
    assert {key.replace("-", "_") for key in table} <= set(SETTINGS)
    assert not set(table) & {"cluster_token", *SECRET_SETTINGS}, "secrets are credentials"
    credentials_dir = "/run/credentials/paxlock.service"
    exec_argv = [o.replace("%E", str(DEPLOY.parent)).replace("%S", str(tmp_path))
                 .replace("${CREDENTIALS_DIRECTORY}", credentials_dir)
                 for i, o in enumerate(argv[2:], 2)
                 if o not in pending and argv[i - 1] not in pending]  # not parsed before merge
    exec_argv[exec_argv.index("--config") + 1] = str(toml_path)
    settings = settings_of({}, exec_argv)
    data_dir = str(tmp_path / service["StateDirectory"])
    assert settings["data_dir"] == data_dir
    config = checked_config(settings, tmp_path, secret_material)
    assert config.node_id == table["id"] and len(config.peers) in (3, 5)
    for member, url in config.peers.items():
        assert urlsplit(url).scheme == "https", member
        assert urlsplit(url).port == int(table["listen"].rpartition(":")[2]), member


# -- Prometheus and Grafana ------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DEPLOY / "grafana" / "paxlock-dashboard.json").read_text())
    return loaded


def dashboard_targets() -> Iterator[dict[str, Any]]:
    for panel in dashboard()["panels"]:
        yield from panel.get("targets", [])


def test_every_metric_and_label_in_rules_and_dashboard_exists() -> None:
    exposed = exposed_metric_names()
    labels = metric_labels()
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    exprs += [target["expr"] for target in dashboard_targets()]
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            exprs.append(variable["definition"])
    used: set[str] = set()
    for expr in exprs:
        used |= set(PAXLOCK_TOKEN.findall(expr))
        for label in re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)\s*\"", expr):
            assert label in labels, f"label {label!r} does not exist: {expr}"
        for grouping in re.findall(r"\b(?:by|on|without|group_left|group_right)\s*\(([^)]*)\)",
                                   expr):  # fmt: skip
            for label in filter(None, (word.strip() for word in grouping.split(","))):
                assert label in labels | {"le"}, f"label {label!r} does not exist: {expr}"
    assert used, "no paxlock_ metric found"
    assert used <= exposed, f"not exposed by a node: {sorted(used - exposed)}"
    tested = (DEPLOY / "prometheus" / "alerts_test.yml").read_text()
    assert set(PAXLOCK_TOKEN.findall(tested)) <= exposed


def test_alert_rules_cover_the_issue() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    alerts = {rule["alert"]: rule for group in rules["groups"] for rule in group["rules"]}
    wanted = {"PaxlockNoPrimary", "PaxlockPrimaryFlapping", "PaxlockQuorumLost",
              "PaxlockNodeFarBehind", "PaxlockFsyncSlow", "PaxlockHTTPErrorsHigh"}  # fmt: skip
    assert wanted <= set(alerts)
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
    docs = "".join(path.read_text() for path in (ROOT / "docs" / "operations.md", ROOT / "README.md")
                   if path.exists())  # the Operations section, wherever it lives now
    for name in alerts:
        assert name in docs, f"the Operations section does not explain {name}"


def test_every_alert_has_a_firing_case_in_the_rule_tests() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    tests = yaml.safe_load((DEPLOY / "prometheus" / "alerts_test.yml").read_text())
    assert tests["rule_files"] == ["alerts.yml"]
    cases = [case for test in tests["tests"] for case in test["alert_rule_test"]]
    firing = {case["alertname"] for case in cases if case["exp_alerts"]}
    quiet = {case["alertname"] for case in cases if not case["exp_alerts"]}
    assert firing == alerts, f"no firing case for {alerts - firing}"
    assert quiet == alerts, f"no quiet case for {alerts - quiet}"


def test_scrape_config_and_dashboard_are_consistent() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "paxlock" and job.get("metrics_path", "/metrics") in routes()
    assert config["rule_files"] == ["alerts.yml"]
    ports = {int(target.rpartition(":")[2]) for target in job["static_configs"][0]["targets"]}
    assert ports == {int(compose()["services"]["n1"]["environment"]["PAXLOCK_LISTEN"]
                         .rpartition(":")[2])}  # fmt: skip
    board = dashboard()
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)) and board["uid"]
    variables = {variable["name"] for variable in board["templating"]["list"]}
    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"], panel["title"]
        for target in panel["targets"]:
            used = set(re.findall(r"\$(?!__)(\w+)", target["expr"]))
            assert used <= variables, f"{panel['title']}: undefined {used - variables}"


def test_every_env_var_in_deploy_is_a_setting() -> None:
    """A sweep over every file, so a new file cannot slip an unknown PAXLOCK_* variable in."""
    for path in DEPLOY.rglob("*"):
        if path.is_file():
            names = set(re.findall(r"\bPAXLOCK_[A-Z_]+\b", path.read_text())) - {"PAXLOCK_UID"}
            check_paxlock_env(names, str(path.relative_to(ROOT)))


def test_argparse_helper_sees_the_flags(serve_flags: set[str]) -> None:
    """Guards the other tests: the flags parsed from --help are SETTINGS plus --config."""
    assert serve_flags == {"--" + name.replace("_", "-") for name in SETTINGS} | {"--config"}
    assert isinstance(build_parser(), argparse.ArgumentParser)
