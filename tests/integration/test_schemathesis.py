"""Schemathesis against a real 3-node cluster, from the committed OpenAPI document: every
operation, positive and negative data, every check (responses conform to the document —
status, content type, headers, body schema —, no 5xx, valid data accepted and invalid data
refused, the stateful links acquire -> renew/verify/release), plus ``json_error_shape``
(tests/integration/schemathesis_hooks.py): every error is the JSON error shape.

The requests go to a follower, so each one is also forwarded or relayed to the primary.
Left out: the membership changes (``POST /v1/members``, ``:promote``, ``DELETE``), which
would change the cluster under test (tests/integration/test_membership_changes.py covers
them); the check ``ensure_resource_availability`` (a created resource can be read at once),
as holds and sessions expire by design (one opened with ``ttl`` 1e-34 s is gone before the
next request); links inferred from field names (schemathesis.toml beside this says why).

Run by hand with more examples: ``PAXLOCK_SCHEMATHESIS_EXAMPLES=100 python -m pytest -s
tests/integration/test_schemathesis.py`` (the report is printed with ``-s``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from paxlock.api.server import responses

harness = sys.modules["paxlock_test_harness"]  # registered by tests/conftest.py
http = harness.http

HERE = Path(__file__).resolve().parent
DOCUMENT = HERE.parents[1] / "api" / "openapi.json"
MAX_EXAMPLES = int(os.environ.get("PAXLOCK_SCHEMATHESIS_EXAMPLES", "10"))
SEED = int(os.environ.get("PAXLOCK_SCHEMATHESIS_SEED", "16"))
LEFT_OUT = ("postMembers", "postMemberPromote", "deleteMember")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with harness.running_cluster(Path(tmp_path_factory.mktemp("schemathesis"))) as running:
        yield running


def test_every_node_serves_the_committed_document(cluster: Any) -> None:
    committed = json.loads(DOCUMENT.read_text())
    for node in cluster.members:
        status, headers, body = http("GET", f"{cluster.url(node)}/v1/openapi.json")
        assert status == 200 and headers["Content-Type"].startswith("application/json")
        assert body == committed


def test_the_cluster_objects_decode_strictly_into_their_structs(cluster: Any) -> None:
    """The answers the unit tests cannot build without a real node (the views' own are in
    tests/unit/test_openapi.py)."""
    primary = cluster.wait_ready()
    status, _, lease = http("POST", f"{cluster.url(primary)}/v1/leases/drift/a:acquire",
                            {"holder": "h", "ttl": 60})  # a revision past 0 for /v1/changes
    assert status == 200, lease
    answers = {"/v1/cluster": responses.Cluster, "/v1/members": responses.Membership,
               "/healthz": responses.Health, "/readyz": responses.Ready,
               "/v1/changes?timeout=0": responses.Changes}  # fmt: skip
    for node in cluster.members:
        for path, kind in answers.items():
            status, _, body = http("GET", f"{cluster.url(node)}{path}")
            assert status == 200, (node, path, body)
            msgspec.json.decode(json.dumps(body).encode(), type=kind)


def test_a_slash_in_a_name_may_be_sent_percent_encoded(cluster: Any) -> None:
    """What the document says of names with ``/`` (schemathesis sends path parameters
    percent-encoded): ``%2F`` and ``/`` reach the same name, from any member."""
    primary = cluster.wait_ready()
    follower = cluster.followers(primary)[0]
    status, _, lease = http("POST", f"{cluster.url(follower)}/v1/leases/enc%2Fx%2F.:acquire",
                            {"holder": "h", "ttl": 60})  # fmt: skip
    assert status == 200 and lease["name"] == "enc/x/.", lease
    for node in (primary, follower):
        status, _, read = http("GET", f"{cluster.url(node)}/v1/leases/enc/x%2F%2E")
        assert status == 200 and read["holder"] == "h" and read["token"] == lease["token"]


def test_schemathesis_finds_nothing(cluster: Any, tmp_path: Path) -> None:
    primary = cluster.wait_ready()
    node = cluster.followers(primary)[0]
    report = tmp_path / "report.json"
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(HERE / "schemathesis.toml"),
        "run", str(DOCUMENT),
        "--url", cluster.url(node), "--checks", "all", "--mode", "all",
        "--exclude-checks", "ensure_resource_availability",
        "--phases", "examples,coverage,fuzzing,stateful",
        # one worker: with two, hypothesis's lambda descriptions raced CPython 3.11's ast
        "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED), "--workers", "1",
        "--request-timeout", "10", "--suppress-health-check", "all", "--output-sanitize", "false",
        "--report", "json", "--report-json-path", str(report),
        *(arg for op in LEFT_OUT for arg in ("--exclude-operation-id", op)),
    ]  # fmt: skip
    status, _, session = http("POST", f"{cluster.url(node)}/v1/sessions",
                              {"holder": "fuzz", "ttl": 3600})  # fmt: skip
    assert status == 200, session
    env = dict(os.environ, SCHEMATHESIS_HOOKS="schemathesis_hooks",
               PAXLOCK_FUZZ_SESSION=session["id"],
               PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    started = time.monotonic()
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300,
                         cwd=tmp_path)  # its cache (.schemathesis/) goes there too
    elapsed = time.monotonic() - started
    print(run.stdout, run.stderr[-5000:], sep="\n")
    summary = json.loads(report.read_text())
    cases, operations = summary["test_cases"], summary["operations"]
    print(f"schemathesis: {operations['tested']} operations, {cases['generated']} generated "
          f"test cases, exit {run.returncode}, {elapsed:.0f} s")  # fmt: skip
    assert run.returncode == 0, "schemathesis found failures (above)"
    assert operations["tested"] == operations["total"] - len(LEFT_OUT), operations
