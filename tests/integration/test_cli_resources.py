"""The ``paxlock`` command line for every resource (issue 16 item 3), on real processes: one
3-member cluster for the module, each command a ``python -m paxlock.api.cli`` subprocess
given the cluster by ``PAXLOCK_ENDPOINTS`` (or ``--endpoints``). Tables and ``--json``, and
the exit statuses every client command shares: 0 done, 1 not found or refused, 2 usage, 3
held, 4 unavailable, 5 lost, CMD's own for ``lock``/``elect``.

State the commands only read is made over HTTP (quicker than a subprocess); independent
commands run concurrently to keep the module's wall time low.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

harness = sys.modules["paxlock_test_harness"]
wait_for = harness.wait_for
DEADLINE_S = 20.0
PAXLOCK = [sys.executable, "-m", "paxlock.api.cli"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with harness.running_cluster(Path(tmp_path_factory.mktemp("cli"))) as running:
        running.wait_ready()
        yield running


def env_of(cluster: Any) -> dict[str, str]:
    return dict(os.environ, PAXLOCK_ENDPOINTS=",".join(cluster.urls()))


def paxlock(cluster: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PAXLOCK, *args], capture_output=True, text=True, timeout=60,
                          env=env_of(cluster))  # fmt: skip


def concurrently(cluster: Any, *commands: list[str]) -> list[subprocess.CompletedProcess[str]]:
    with ThreadPoolExecutor(len(commands)) as pool:
        return list(pool.map(lambda words: paxlock(cluster, *words), commands))


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, (done.args, done.stdout, done.stderr)
    return done.stdout


def rows_of(table: str) -> tuple[list[str], dict[str, list[str]]]:
    """A table's header and its rows by first cell; checks the columns are aligned."""
    lines = table.strip().splitlines()
    starts = [m.start() for m in re.finditer(r"\S+", lines[0])]
    for line in lines[1:]:
        for start in starts[1:]:
            assert line[start - 2:start] == "  " and line[start] != " ", f"misaligned:\n{table}"
    header = lines[0].split()
    return header, {line.split()[0]: line.split() for line in lines[1:]}


def test_lease_commands_tables_json_and_exit_statuses(cluster: Any) -> None:
    token = ok(paxlock(cluster, "lease", "acquire", "cli/a", "--ttl", "30", "--value", "v1"))
    assert token.strip().isdigit(), token
    held, got, missing, table, wrong, renewed, bad = concurrently(
        cluster, ["lease", "acquire", "cli/a", "--identity", "someone-else"],
        ["lease", "get", "cli/a", "--json"], ["lease", "get", "cli/none"],
        ["leases", "--prefix", "cli/"], ["lease", "renew", "cli/a", str(int(token) + 99)],
        ["lease", "renew", "cli/a", token.strip(), "--json"], ["lease", "acquire", "bad name"])
    assert held.returncode == 3 and "cli/a" in held.stderr, held.stderr
    lease = json.loads(ok(got))
    assert (lease["name"], lease["token"], lease["value"]) == ("cli/a", int(token), "v1")
    assert missing.returncode == 1 and "nobody holds cli/none" in missing.stderr
    header, rows = rows_of(ok(table))
    assert header[:6] == ["NAME", "HOLDER", "TOKEN", "EXPIRES", "TTL", "SESSION"], header
    assert rows["cli/a"][2] == token.strip() and rows["cli/a"][5] == "30.0s", rows
    assert rows["cli/a"][3] == "in" and re.fullmatch(r"\d+\.\ds", rows["cli/a"][4]), rows
    if "WAITERS" in header:  # once the server reports waiters
        assert rows["cli/a"][-1] == "0", rows
    assert wrong.returncode == 1 and "not the holder" in wrong.stderr, wrong.stderr
    assert json.loads(ok(renewed))["token"] == int(token)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
    assert ok(paxlock(cluster, "lease", "release", "cli/a", token.strip())).startswith(
        "released cli/a")
    assert json.loads(ok(paxlock(cluster, "leases", "--prefix", "cli/", "--json"))) == {
        "leases": []}


def test_a_lease_acquired_with_a_session_lives_and_ends_with_it(cluster: Any) -> None:
    session = json.loads(ok(paxlock(cluster, "session", "open", "--ttl", "30", "--json")))
    bound = json.loads(ok(paxlock(cluster, "lease", "acquire", "cli/bound", "--session",
                                  session["id"], "--json")))  # fmt: skip
    assert (bound["session"], bound["ttl"]) == (session["id"], 30.0), bound
    header, rows = rows_of(ok(paxlock(cluster, "leases", "--prefix", "cli/bound")))
    assert rows["cli/bound"][header.index("SESSION") + 1] == session["id"], rows  # "in 29.9s"
    ok(paxlock(cluster, "session", "close", session["id"]))
    missing = paxlock(cluster, "lease", "get", "cli/bound")
    assert missing.returncode == 1 and "nobody holds cli/bound" in missing.stderr


def test_elect_runs_the_command_with_its_token_and_resigns_after_it(cluster: Any) -> None:
    script = (f"{' '.join(PAXLOCK)} elections --prefix cli/ --json; "
              "echo token=$PAXLOCK_TOKEN; exit 7")
    done = paxlock(cluster, "elect", "cli/leader", "host-a", "--", "sh", "-c", script)
    assert done.returncode == 7, (done.stdout, done.stderr)  # the command's own status
    lines = done.stdout.splitlines()
    first, listing, token_line = lines[0], "\n".join(lines[1:-1]), lines[-1]
    assert first.startswith("cli/leader: leader ") and "value host-a" in first, done.stdout
    (leader,) = json.loads(listing)["elections"]
    assert (leader["name"], leader["value"]) == ("cli/leader", "host-a")
    assert token_line == f"token={leader['token']}" and f"token {leader['token']}" in first
    # Resigned once the command exited.
    after, unrunnable = concurrently(cluster, ["elections", "--prefix", "cli/"],
                                     ["elect", "cli/leader", "v", "--", "/no/such/command"])
    assert ok(after).strip() == "no elections"
    assert unrunnable.returncode == 127, unrunnable.stderr


def test_observe_prints_each_change_and_elect_leads_until_interrupted(cluster: Any) -> None:
    env = env_of(cluster)
    observe = subprocess.Popen([*PAXLOCK, "observe", "cli/watched", "--json"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    elect = subprocess.Popen([*PAXLOCK, "elect", "cli/watched", "host-b", "--ttl", "5"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)  # fmt: skip
    try:
        assert elect.stdout is not None and observe.stdout is not None
        announced = elect.stdout.readline()
        assert announced.startswith("cli/watched: leader ") and "host-b" in announced
        seen = json.loads(observe.stdout.readline())
        assert (seen["name"], seen["value"], seen["leader"]) == (
            "cli/watched", "host-b", announced.split()[2])
        # A second candidate waits (WAITERS 1); SIGINT withdraws its campaign: exit 130.
        waiting = subprocess.Popen([*PAXLOCK, "elect", "cli/watched", "host-c"], env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        try:
            def waiters() -> tuple[list[str], dict[str, list[str]]] | None:
                header, rows = rows_of(ok(paxlock(cluster, "elections", "--prefix", "cli/w")))
                return (header, rows) if rows["cli/watched"][-1] == "1" else None

            header, rows = wait_for(waiters, DEADLINE_S, "the second candidate to wait")
            assert header == ["NAME", "LEADER", "VALUE", "TOKEN", "EXPIRES", "TTL", "SESSION",
                              "WAITERS"] and rows["cli/watched"][2] == "host-b", rows  # fmt: skip
            waiting.send_signal(signal.SIGINT)
            assert waiting.wait(DEADLINE_S) == 130
            assert waiting.stdout is not None and waiting.stdout.read() == ""  # never led
        finally:
            if waiting.poll() is None:
                waiting.kill()
                waiting.wait()
        elect.send_signal(signal.SIGINT)  # resigns, exit 0
        assert elect.wait(DEADLINE_S) == 0, elect.stderr.read() if elect.stderr else ""
        assert json.loads(observe.stdout.readline()) == {"name": "cli/watched", "leader": None}
        observe.send_signal(signal.SIGINT)
        assert observe.wait(DEADLINE_S) == 0
        assert observe.stderr is not None and "Traceback" not in observe.stderr.read()
    finally:
        for process in (observe, elect):
            if process.poll() is None:
                process.kill()
                process.wait()


def test_sessions_and_groups_tables(cluster: Any) -> None:
    from paxlock.api.client.sync import Client

    with Client(cluster.urls(), identity="worker-1") as client:  # the state, made in-process
        session = client.open_session(60)
        client.create_group("cli-workers")
        client.join_group("cli-workers", "w1", session=session.id)
    sessions, sessions_json, groups, groups_json = concurrently(
        cluster, ["sessions", "--holder", "worker-1"], ["sessions", "--json"],
        ["groups", "--prefix", "cli-"], ["groups", "--json", "--prefix", "cli-"])
    header, rows = rows_of(ok(sessions))
    assert header == ["ID", "HOLDER", "TTL", "EXPIRES", "TOKEN"], header
    assert rows[session.id][1:3] == ["worker-1", "1m00s"], rows
    assert session.id in [s["id"] for s in json.loads(ok(sessions_json))["sessions"]]
    header, rows = rows_of(ok(groups))
    assert header == ["GROUP", "MEMBERS", "REVISION"] and rows["cli-workers"][1] == "1", rows
    assert json.loads(ok(groups_json))["groups"][0] | {"revision": 0} == {
        "name": "cli-workers", "members": 1, "revision": 0}


def test_status_member_list_and_unavailable_is_exit_4(cluster: Any) -> None:
    dead = f"http://127.0.0.1:{harness.free_port()}"
    status, members, status_json, dead_status, dead_leases, dead_lock = concurrently(
        cluster, ["status"], ["member", "list"], ["status", "--json"],
        ["status", "--endpoints", dead],
        ["leases", "--endpoint", dead, "--retry-deadline", "0.5"],
        ["lock", "cli/x", "--endpoints", dead, "--wait", "0", "--retry-deadline", "0.5",
         "--", "true"])
    primary = cluster.primary()
    header, rows = rows_of(ok(status).split("\n", 1)[1])
    assert header == ["MEMBER", "URL", "ROLE", "REACHABLE", "BALLOT", "CHOSEN", "APPLIED",
                      "LAG", "HEARD"], header  # fmt: skip
    assert rows[primary][2] == "primary" and rows[primary][4] != "-", rows
    assert status.stdout.startswith(f"primary {primary}  ballot ")
    assert all(row[3] == "up" and row[5].isdigit() and row[6].isdigit() for row in rows.values())
    header, rows = rows_of(ok(members).split("\n", 1)[1])
    assert header[:4] == ["ID", "ROLE", "URL", "PRIMARY"] and rows[primary][3] == "yes", rows
    assert json.loads(ok(status_json))["primary"] == primary
    for done in (dead_status, dead_leases, dead_lock):
        assert done.returncode == 4, (done.args, done.stderr)
        assert "Traceback" not in done.stderr


def test_completion_scripts_list_every_command(tmp_path: Path) -> None:
    from paxlock.api.cli.main import build_parser

    commands = top_level_commands(build_parser())
    for shell in ("bash", "zsh"):
        done = subprocess.run([*PAXLOCK, "completion", shell], capture_output=True, text=True,
                              timeout=60)  # fmt: skip
        script = ok(done)
        for command in commands:
            assert re.search(rf"\b{command}\b", script), f"{shell}: no {command}"
        if shell == "bash":
            (tmp_path / "paxlock.bash").write_text(script)
            checked = subprocess.run(["bash", "-n", str(tmp_path / "paxlock.bash")],
                                     capture_output=True, text=True, timeout=30)  # fmt: skip
            assert checked.returncode == 0, checked.stderr
            assert "complete " in script and "leases" in script


def top_level_commands(parser: Any) -> list[str]:
    import argparse

    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return list(commands.choices)
