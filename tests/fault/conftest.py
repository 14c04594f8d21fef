"""Fixtures of the fault tests (DESIGN.md §"tests/fault/"; issue 6).

The modules beside this file import each other by plain name: ``proxy`` (the controllable
links), ``cluster`` (processes behind them), ``history`` and ``workload`` (clients and what
they saw), ``lease_model``, ``linearizability``, ``fencing`` and ``findings`` (the checker),
``nemesis``, ``report`` and ``runner`` (one run): this folder is put on ``sys.path``
(pytest runs with ``--import-mode=importlib``, so test folders are not packages; none of
these names is taken by the standard library or an installed distribution).

Soak mode: ``PAXLOCK_SOAK_S=600 pytest tests/fault -s`` repeats each scenario's fault cycle
for 600 s; the report of every run is printed with ``-s`` and written under the test's
``$TMPDIR/paxlock-fault/`` (paths printed too).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from cluster import FaultCluster  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fault: real processes under injected faults")


@pytest.fixture
def fault_cluster(tmp_path: Path) -> Iterator[Callable[..., FaultCluster]]:
    """``fault_cluster(size=3, election_timeout_s=0.3)`` -> a ``FaultCluster`` (not started:
    the run starts it). Every process and the proxy thread are stopped after the test."""
    made: list[FaultCluster] = []

    def make(size: int = 3, **kwargs: object) -> FaultCluster:
        cluster = FaultCluster(tmp_path / f"cluster{len(made)}", size, **kwargs)  # type: ignore[arg-type]
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.close()


@pytest.fixture(scope="session")
def artifacts_root() -> Path:
    """One folder per test session under ``$PAXLOCK_FAULT_ARTIFACTS`` (default
    ``$TMPDIR/paxlock-fault``): pytest's own ``tmp_path`` keeps only its last three
    sessions, and the histories are worth keeping after a failure."""
    base = Path(os.environ.get("PAXLOCK_FAULT_ARTIFACTS") or Path(tempfile.gettempdir())
                / "paxlock-fault")  # fmt: skip
    path = base / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def artifacts(artifacts_root: Path, request: pytest.FixtureRequest) -> Path:
    """Where this test's run writes its history (JSON lines) and report."""
    name: str = request.node.name
    path = artifacts_root / name.replace("/", "_")
    path.mkdir(parents=True, exist_ok=True)
    return path
