"""Membership changes on real processes under load and failures (issue 13): a cluster grown
3 -> 5 and shrunk back while clients acquire and release; a SIGKILLed member replaced by a
fresh store under its id while leases are renewed; a removed member that comes back refused;
a learner never counted in a quorum; a change made while another member is down.

Steps go through ``tests/membership_ops.py`` (the HTTP API, retried while the cluster says
"not now", ended by a condition on ``GET /v1/members``). Every wait is a condition under a
deadline; every process belongs to the harness's ``Cluster`` and is stopped when the test ends.
"""

from __future__ import annotations

import importlib.util
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

harness = sys.modules["paxlock_test_harness"]  # registered by tests/conftest.py
wait_for, try_http = harness.wait_for, harness.try_http


def _load_ops() -> Any:
    name = "paxlock_membership_ops"
    if name not in sys.modules:
        path = Path(__file__).resolve().parent.parent / "membership_ops.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


ops = _load_ops()
WATCH_S = 3.0
"""How long a test watches for something that must not happen: ten election timeouts
(0.3 s) and more."""


def test_grow_to_five_and_shrink_to_three_under_load(cluster: Any) -> None:
    """3 -> 5 by two adds and promotions, 5 -> 3 by removing a joined member and then the
    primary itself, while four clients contend for three names through every endpoint."""
    cluster.wait_ready()
    with ops.Ledger(lambda: ops.endpoints(cluster)) as ledger:
        wait_for(lambda: ledger.count() >= 5, 10, "the load to run")
        steps = [("grow", "n4"), ("grow", "n5"), ("remove", "n4"), ("remove", "primary")]
        for number, (kind, node) in enumerate(steps):
            before = ledger.count()
            if kind == "grow":
                ops.grow(cluster, node)
            else:
                node = ops.primary_id(cluster) if node == "primary" else node
                ops.remove(cluster, node)
                cluster.kill(node, signal.SIGTERM)
            ops.serves(cluster, f"grow/probe{number}")
            wait_for(lambda: ledger.count() > before + 2, 10, f"grants after {kind} {node}")
        voters = ops.roles(cluster)
        assert len(voters) == 3 and set(voters.values()) == {"voter"}, voters
        assert {"n4", node}.isdisjoint(voters), voters
    assert not ledger.errors, ledger.errors[:5]
    assert ledger.overlaps() == []
    assert ledger.count() > 20
