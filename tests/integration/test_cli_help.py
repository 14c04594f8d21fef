"""``paxlock --help`` and every subcommand's, ``--version`` and ``up --nodes`` (issue 11 item
7), from real ``paxlock`` processes: plain text (no reST markup), every default shown, the
version of the installed distribution, and a local cluster of fewer than 3 members (or of an
even size) refused with one line before any member starts."""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from paxlock.api.cli.main import build_parser

harness = sys.modules["paxlock_test_harness"]
COMMANDS = [[], ["sim"], ["serve"], ["up"], ["status"], ["lock"], ["session", "open"],
            ["session", "list"], ["semaphore", "acquire"], ["rwlock", "acquire"],
            ["group", "list"], ["group", "join"]]


def paxlock(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "paxlock.api.cli", *args], timeout=60,
                          capture_output=True, text=True)  # fmt: skip


def subparser(words: list[str]) -> argparse.ArgumentParser:
    parser = build_parser()
    for word in words:
        (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parser = commands.choices[word]
    return parser


def entry_of(help_text: str, option: str) -> str:
    """The help entry of one option (its lines, joined): the entry that starts with it."""
    for entry in re.split(r"\n(?=  -)", help_text):
        flags = re.match(r"  (-\S+(?: \S+)?(?:, -\S+(?: \S+)?)*)", entry)
        if flags and option in [words.split()[0] for words in flags.group(1).split(", ")]:
            return " ".join(entry.split())
    raise AssertionError(f"{option} has no entry in:\n{help_text}")


@pytest.mark.parametrize("words", COMMANDS, ids=lambda w: " ".join(w) or "paxlock")
def test_help_is_plain_text_and_shows_every_default(words: list[str]) -> None:
    done = paxlock(*words, "--help")
    assert done.returncode == 0, done.stderr
    assert "`" not in done.stdout, f"reST markup in the help:\n{done.stdout}"
    for action in subparser(words)._actions:
        if not action.option_strings or action.default in (None, False, argparse.SUPPRESS):
            continue  # positionals, flags, and options whose absence is described in words
        entry = entry_of(done.stdout, action.option_strings[-1])
        assert f"default: {action.default}" in entry, f"no default shown: {entry}"


EVERY_COMMAND = ("sim", "serve", "up", "status", "member", "session", "semaphore", "rwlock",
                 "group", "leases", "lease", "elections", "elect", "observe", "sessions",
                 "groups", "lock", "completion")  # fmt: skip
"""Issue 16: a command for every resource, each listed by ``paxlock --help``."""
CLIENT_COMMANDS = [["status"], ["member", "list"], ["leases"], ["lease", "get"],
                   ["lease", "acquire"], ["lease", "renew"], ["lease", "release"],
                   ["elections"], ["elect"], ["observe"], ["sessions"], ["groups"], ["lock"],
                   ["session", "list"], ["group", "list"]]  # fmt: skip


def test_the_help_lists_every_command() -> None:
    done = paxlock("--help")
    assert done.returncode == 0, done.stderr
    listed = re.findall(r"^    (\S+)", done.stdout, re.M)
    assert sorted(listed) == sorted(EVERY_COMMAND), done.stdout
    assert "4 cluster unavailable" in done.stdout.replace("\n", " ")


@pytest.mark.parametrize("words", CLIENT_COMMANDS, ids=" ".join)
def test_client_commands_share_the_endpoint_options_and_the_exit_statuses(words: list[str]
                                                                          ) -> None:  # fmt: skip
    """In-process (quick): every client command takes --endpoint/--endpoints, documents exit
    status 4 for an unavailable cluster, and shows every default."""
    parser = subparser(words)
    text = " ".join(parser.format_help().split())
    options = {o for action in parser._actions for o in action.option_strings}
    assert {"--endpoint", "--endpoints", "--token-file"} <= options, options
    assert "--json" in options or words == ["lock"], options
    assert "4 cluster unavailable" in text, text
    for action in parser._actions:
        if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
            assert f"default: {action.default}" in text, (action.option_strings, text)


def test_version_is_the_installed_distributions() -> None:
    done = paxlock("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"paxlock {importlib.metadata.version('paxlock')}\n"


@pytest.mark.parametrize("nodes", ["1", "2", "4", "0", "-3", "three"])
def test_up_refuses_fewer_than_three_members_and_even_sizes(tmp_path: Path, nodes: str) -> None:
    data_dir = tmp_path / "data"
    # Its own session: on the code before the fix `up --nodes 1` starts a member and runs
    # until stopped, so the whole group is killed at the end, whatever happened.
    up = subprocess.Popen([sys.executable, "-m", "paxlock.api.cli", "up", "--nodes", nodes,
                           "--base-port", str(harness.free_port()), "--data-dir", str(data_dir)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True)  # fmt: skip
    try:
        out, err = up.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(up.pid, signal.SIGKILL)
        up.communicate()
        raise AssertionError(f"paxlock up --nodes {nodes} started a cluster") from None
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()
    assert up.returncode == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err and "--nodes" in lines[0], err
    assert not data_dir.exists(), "no member was started"
    assert "at least 3" in paxlock("up", "--help").stdout.replace("\n", " ")
