"""The cluster token (issue 12, items 0 and 4): from a file or the environment, never argv nor
the config file; required beyond loopback unless ``--insecure-peers``; made by ``paxlock up``
for its members and passed by file, so that no process list shows it, and used by the peers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from paxlock.api.cli.main import build_parser
from paxlock.api.cli.serve import ConfigError, node_config, resolve
from paxlock.api.server.peer import NODE_HEADER, TOKEN_HEADER

harness = sys.modules["paxlock_test_harness"]
SECRET = "s3cret-token-from-a-file"
BEYOND = ["--id", "n1", "--listen", "0.0.0.0:7001", "--advertise", "http://10.0.0.11:7001",
          "--peer", "n2=http://10.0.0.12:7001", "--peer", "n3=http://10.0.0.13:7001",
          "--data-dir", "/nonexistent"]  # fmt: skip
LOOPBACK = ["--id", "n1", "--listen", "127.0.0.1:7001", "--peer", "n2=http://127.0.0.1:7002",
            "--peer", "n3=http://127.0.0.1:7003", "--data-dir", "/nonexistent"]  # fmt: skip


def configure(argv: list[str], environ: Mapping[str, str] | None = None) -> Any:
    """``paxlock serve ARGV``'s NodeConfig, as serve_command builds it (nothing started)."""
    args = build_parser().parse_args(["serve", *argv])
    return node_config(resolve(args, environ or {}))


def token_file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "cluster-token"
    path.write_text(text)
    path.chmod(mode)
    return path


def serve(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "paxlock.api.cli", "serve", *args],
                          capture_output=True, text=True, timeout=30,
                          env={**os.environ, **(env or {})})  # fmt: skip


# -- where the token may come from ----------------------------------------------------------


def test_the_token_on_the_command_line_is_refused_and_never_taken_as_a_file_name() -> None:
    """argparse would read ``--cluster-token X`` as an abbreviation of --cluster-token-file."""
    for words in (["--cluster-token", SECRET], [f"--cluster-token={SECRET}"]):
        done = serve(*LOOPBACK, *words)
        assert done.returncode == 2
        assert done.stderr == ("paxlock serve: --cluster-token puts the secret in the process "
                               "list; use --cluster-token-file or PAXLOCK_CLUSTER_TOKEN\n")


def test_the_token_file_gives_its_first_line_stripped(tmp_path: Path) -> None:
    path = token_file(tmp_path, f"  {SECRET}  \nsecond line, ignored\n")
    config = configure([*BEYOND, "--cluster-token-file", str(path)])
    assert config.cluster_token == SECRET


def test_an_empty_unreadable_or_unprintable_token_file_is_refused(tmp_path: Path) -> None:
    for text, reason in (("", "is empty"), ("\n" + SECRET, "is empty"),
                         ("two words", "printable ASCII without spaces")):  # fmt: skip
        path = token_file(tmp_path, text)
        with pytest.raises(ConfigError, match=reason):
            configure([*LOOPBACK, "--cluster-token-file", str(path)])
    with pytest.raises(ConfigError, match="cannot read cluster token file .*No such file"):
        configure([*LOOPBACK, "--cluster-token-file", str(tmp_path / "missing")])
    done = serve(*LOOPBACK, "--cluster-token-file", str(token_file(tmp_path, "")))
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "is empty" in done.stderr


def test_a_token_file_others_can_read_is_used_with_a_warning(tmp_path: Path) -> None:
    with capture_logs() as logs:
        configure([*BEYOND, "--cluster-token-file", str(token_file(tmp_path, SECRET, 0o600))])
    assert logs == []
    path = token_file(tmp_path, SECRET, 0o644)
    with capture_logs() as logs:
        assert configure([*BEYOND, "--cluster-token-file", str(path)]).cluster_token == SECRET
    (warning,) = logs
    assert warning["event"] == "cluster_token_file_readable_by_others"
    assert warning["log_level"] == "warning" and warning["mode"] == "0644"


def test_the_environment_token_works_and_a_file_flag_overrides_it(tmp_path: Path) -> None:
    assert configure(BEYOND, {"PAXLOCK_CLUSTER_TOKEN": SECRET}).cluster_token == SECRET
    other = token_file(tmp_path, "from-the-flag")
    config = configure([*BEYOND, "--cluster-token-file", str(other)],
                       {"PAXLOCK_CLUSTER_TOKEN": SECRET})  # fmt: skip
    assert config.cluster_token == "from-the-flag"
    with pytest.raises(ConfigError, match="is empty"):
        configure(BEYOND, {"PAXLOCK_CLUSTER_TOKEN": ""})
    with pytest.raises(ConfigError, match="both set"):
        configure(BEYOND, {"PAXLOCK_CLUSTER_TOKEN": SECRET,
                           "PAXLOCK_CLUSTER_TOKEN_FILE": str(other)})  # fmt: skip


def test_the_config_file_takes_a_token_file_never_the_token(tmp_path: Path) -> None:
    path = token_file(tmp_path, SECRET)
    config = tmp_path / "paxlock.toml"
    config.write_text(f'cluster_token_file = "{path}"\n')
    assert configure([*BEYOND, "--config", str(config)]).cluster_token == SECRET
    config.write_text(f'cluster_token = "{SECRET}"\n')
    with pytest.raises(ConfigError, match="secrets stay out of config files"):
        configure([*BEYOND, "--config", str(config)])


# -- a credential beyond loopback -----------------------------------------------------------


@pytest.mark.parametrize("listen, advertise", [
    ("0.0.0.0:7001", None), ("[::]:7001", None), (":7001", "http://127.0.0.1:7001"),
    ("10.0.0.11:7001", None),
    ("127.0.0.1:7001", "http://node1.example:7001"),
])  # fmt: skip
def test_beyond_loopback_without_a_credential_is_refused(listen: str, advertise: str | None
                                                         ) -> None:  # fmt: skip
    argv = ["--id", "n1", "--listen", listen, "--data-dir", "/nonexistent",
            "--peer", "n2=http://127.0.0.1:7002", "--peer", "n3=http://127.0.0.1:7003"]
    argv += ["--advertise", advertise] if advertise else []
    with pytest.raises(ConfigError, match="beyond loopback: peers need a credential there; "
                       "give --cluster-token-file FILE .* or --insecure-peers"):  # fmt: skip
        configure(argv)
    assert configure([*argv, "--insecure-peers"]).cluster_token is None
    assert configure(argv, {"PAXLOCK_CLUSTER_TOKEN": SECRET}).cluster_token == SECRET


def test_mutual_tls_counts_as_a_peer_credential() -> None:
    """The TLS work adds the ``tls_ca`` setting; the check already reads it."""
    from paxlock.api.cli.cluster_token import check_peer_credential

    check_peer_credential({"tls_ca": "/etc/paxlock/tls/ca.crt"}, "0.0.0.0:7001",
                          "https://10.0.0.11:7001", None)  # fmt: skip
    with pytest.raises(ValueError, match="beyond loopback"):
        check_peer_credential({}, "0.0.0.0:7001", "https://10.0.0.11:7001", None)


def test_the_refusal_is_one_line_exit_2_and_insecure_peers_is_a_flag_and_a_variable() -> None:
    done = serve(*BEYOND)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert done.stderr.startswith("paxlock serve: 0.0.0.0 is beyond loopback")
    for environ in ({"PAXLOCK_INSECURE_PEERS": "true"}, {"PAXLOCK_INSECURE_PEERS": "1"}):
        assert configure(BEYOND, environ).node_id == "n1"
    with pytest.raises(ConfigError, match="beyond loopback"):
        configure(BEYOND, {"PAXLOCK_INSECURE_PEERS": "false"})
    with pytest.raises(ConfigError, match="not true or false"):
        configure(BEYOND, {"PAXLOCK_INSECURE_PEERS": "maybe"})


def free_port() -> int:
    return int(sys.modules["paxlock_test_harness"].free_port())  # outside the ephemeral range


def test_loopback_without_a_credential_serves_with_one_loud_warning(tmp_path: Path) -> None:
    """Said once the member serves, not before: a refusal to start stays one line."""
    url = f"http://127.0.0.1:{free_port()}"
    peers = [f"--peer=n{i}=http://127.0.0.1:{free_port()}" for i in (2, 3)]
    node = subprocess.Popen([sys.executable, "-m", "paxlock.api.cli", "serve", "--id", "n1",
                             "--listen", url.removeprefix("http://"), *peers,
                             "--data-dir", str(tmp_path / "n1")],
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = threading.Timer(20, node.kill)  # ends the read below should it never come
    deadline.start()
    try:
        assert node.stderr is not None
        lines = []
        for line in node.stderr:
            lines.append(line)
            if "peers_unauthenticated" in line:
                break
        warning = json.loads(lines[-1])
        assert warning["event"] == "peers_unauthenticated" and warning["level"] == "warning"
        assert f"reaches 127.0.0.1:{url.rpartition(':')[2]} can act as a peer" in warning["message"]
        assert harness.http("GET", url + "/healthz")[0] == 200, "it serves"
    finally:
        deadline.cancel()
        node.terminate()
        node.wait(timeout=10)
    rest = node.stderr.read()
    assert "peers_unauthenticated" not in rest, "said once"


# -- paxlock up ---------------------------------------------------------------------------------


def three_free_ports() -> int:
    return int(sys.modules["paxlock_test_harness"].free_ports_in_a_row(3))


def live_processes() -> dict[int, tuple[bytes, bytes]]:
    """Every process's command line and environment that this user may read."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found[int(entry.name)] = ((entry / "cmdline").read_bytes(),
                                          (entry / "environ").read_bytes())  # fmt: skip
            except OSError:
                continue  # gone meanwhile, or not ours to read
    return found


def test_up_makes_a_token_no_process_list_shows_and_the_peers_use_it(tmp_path: Path) -> None:
    base = three_free_ports()
    data = tmp_path / "data"
    urls = [f"http://127.0.0.1:{base + i}" for i in range(3)]
    up = subprocess.Popen([sys.executable, "-m", "paxlock.api.cli", "up", "--base-port",
                           str(base), "--data-dir", str(data)], stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        # Ready on every member: a primary was elected, so the peers got through to each other.
        harness.wait_for(lambda: all((r := harness.try_http("GET", url + "/readyz")) is not None
                                     and r[0] == 200 for url in urls), 30, "the cluster ready")
        path = data / "cluster-token"
        token = path.read_text().strip()
        assert len(token) == 64 and int(token, 16) >= 0, "secrets.token_hex(32)"
        assert path.stat().st_mode & 0o777 == 0o600
        processes = live_processes()
        nodes = [pid for pid, (argv, _) in processes.items()
                 if str(data).encode() in argv and b"serve" in argv.split(b"\0")]  # fmt: skip
        assert len(nodes) == 3, "the members were found"
        for pid, (argv, environ) in processes.items():
            assert token.encode() not in argv, f"the token in pid {pid}'s command line"
            if pid in nodes:
                assert token.encode() not in environ, f"the token in pid {pid}'s environment"
        for index, url in enumerate(urls):
            member = {NODE_HEADER: f"n{(index + 1) % 3 + 1}"}  # another member, as a peer says
            for offered in ({}, {TOKEN_HEADER: "0" * 64}):
                status, _, body = harness.http("GET", url + "/internal/ws",
                                               headers={**member, **offered})  # fmt: skip
                assert status == 401 and body["error"] == "unauthenticated", (url, body)
            status, _, body = harness.http("GET", url + "/internal/ws",
                                           headers={**member, TOKEN_HEADER: token})  # fmt: skip
            assert (status, body["error"]) == (403, "forbidden"), "past the token check"
            assert "X-Paxlock-Cluster-Id" in body["message"], "refused for its cluster id"
    finally:
        up.terminate()
        up.wait(timeout=30)
        assert up.stderr is not None
        up.stderr.close()
