"""Fixtures shared by every test folder."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


def _load_harness() -> Any:
    """tests/harness.py as a module (tests are not a package under importlib mode)."""
    name = "paxlock_test_harness"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("harness.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


harness = _load_harness()


@pytest.fixture
def cluster_factory(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``cluster_factory(size=3, extra_args=[...], start=True)`` -> a running ``Cluster`` of
    ``paxlock serve`` processes; every process is stopped when the test ends."""
    made: list[Any] = []

    def make(size: int = 3, extra_args: list[str] | None = None, start: bool = True) -> Any:
        cluster = harness.Cluster(tmp_path / f"cluster{len(made)}", size, extra_args or [])
        made.append(cluster)
        if start:
            try:
                cluster.start_all()
            except AssertionError:
                print(cluster.logs())
                raise
        return cluster

    yield make
    for cluster in made:
        cluster.stop_all()


@pytest.fixture
def cluster(cluster_factory: Callable[..., Any]) -> Any:
    """A running 3-node cluster."""
    return cluster_factory(3)


@pytest.fixture
def http() -> Callable[..., Any]:
    """``http(method, url, body=None) -> (status, headers, json)``."""
    return harness.http  # type: ignore[no-any-return]


@pytest.fixture
def wait_for() -> Callable[..., Any]:
    """``wait_for(condition, timeout_s, what)``: poll a condition with a deadline."""
    return harness.wait_for  # type: ignore[no-any-return]
