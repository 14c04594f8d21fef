"""Acceptance of the tooz driver (issue 15): tooz's own test suite, the one every tooz
driver is held to, against a real 3-node cluster.

It runs as a subprocess (tooz's tests are unittest classes that read ``TOOZ_TEST_URL``),
with a JUnit report read back here, so that the counts and every skip's reason are printed
(``pytest -s`` or a failure shows them). Every test must pass or be skipped by tooz itself.
One test function: the suite never runs twice at once, whatever ``-n`` says.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("tooz", reason="the tooz extra is not installed (pip install -e '.[test]')")
pytest.importorskip("testtools", reason="tooz's tests need testtools")
pytest.importorskip("fixtures", reason="tooz's tests need fixtures")
pytest.importorskip("pytest_timeout", reason="the run uses pytest-timeout")

from paxlock.api.client.tooz_lock import (  # noqa: E402
    MANY_SEGMENTS, ONE_SEGMENT, decode_id, encode_id,
)  # fmt: skip

HARNESS = sys.modules["paxlock_test_harness"]  # loaded by tests/conftest.py
SUITE = ["tooz.tests.test_coordination", "tooz.tests.test_partitioner"]
RUN_TIMEOUT_S = 280.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with HARNESS.running_cluster(tmp_path_factory.mktemp("tooz-cluster")) as running:
        yield running


def tooz_url(cluster: Any) -> str:
    return "paxlock://" + ",".join(url.removeprefix("http://") for url in cluster.urls())


def read_report(path: Path) -> tuple[dict[str, int], list[tuple[str, str]], list[str]]:
    """(counts by outcome, (test, skip reason) pairs, failure texts) of a JUnit report."""
    counts = {"passed": 0, "skipped": 0, "failed": 0, "errors": 0}
    skips: list[tuple[str, str]] = []
    failures: list[str] = []
    for case in ElementTree.parse(path).getroot().iter("testcase"):
        test = f"{case.get('classname') or ''}.{case.get('name')}".lstrip(".")
        outcomes = {child.tag: child for child in case}
        if "skipped" in outcomes:
            counts["skipped"] += 1
            skips.append((test, outcomes["skipped"].get("message") or ""))
        elif "failure" in outcomes or "error" in outcomes:
            tag = "failure" if "failure" in outcomes else "error"
            counts["failed" if tag == "failure" else "errors"] += 1
            failures.append(f"{test}: {(outcomes[tag].text or '')[-3000:]}")
        else:
            counts["passed"] += 1
    return counts, skips, failures


@pytest.mark.slow
def test_tooz_suite_passes_against_a_three_node_cluster(cluster: Any, tmp_path: Path) -> None:
    report = tmp_path / "tooz-junit.xml"
    command = [sys.executable, "-m", "pytest", "--pyargs", *SUITE, "--timeout=60",
               "-p", "no:randomly", "-p", "no:cacheprovider", "-q", "-rs",
               f"--junitxml={report}"]  # fmt: skip
    env = dict(os.environ, TOOZ_TEST_URL=tooz_url(cluster), PYTHONUNBUFFERED="1")
    env.pop("PYTEST_XDIST_WORKER", None)
    env.pop("PYTEST_ADDOPTS", None)
    # cwd outside the repository: none of paxlock's own pytest configuration applies
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S)  # fmt: skip
    assert report.exists(), f"no report (exit {done.returncode}):\n{done.stdout[-5000:]}" \
                            f"\n{done.stderr[-3000:]}"  # fmt: skip
    counts, skips, failures = read_report(report)
    print(f"tooz suite against paxlock: {counts['passed']} passed, {counts['skipped']} skipped, "
          f"{counts['failed']} failed, {counts['errors']} errors")  # fmt: skip
    for test, reason in skips:
        print(f"  skipped {test}: {reason}")
    assert not failures, "\n\n".join(failures) + "\n\n" + done.stdout[-3000:] + cluster.logs()
    assert counts["passed"] > 0 and done.returncode == 0, done.stdout[-5000:]


@given(st.binary(min_size=1, max_size=120) | st.sampled_from(
    [b"a", b"hex.", b"hex.41", b".", b"..", b"a/b", b"/a", b"a//b", b"x" * 256]))
def test_ids_become_names_the_server_takes_and_come_back(raw: bytes) -> None:
    for slashes, pattern in ((False, ONE_SEGMENT), (True, MANY_SEGMENTS)):
        name = encode_id(raw, slashes=slashes)
        assert pattern.fullmatch(name) and decode_id(name) == raw
