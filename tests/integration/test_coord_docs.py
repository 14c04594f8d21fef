"""Every ```python example of README.md's "Beyond one mutex" section runs, unchanged,
against a real cluster (as ``test_sdk_docs`` does for the "Python SDK" section)."""

from __future__ import annotations

import contextlib
import io
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
HARNESS = sys.modules["paxlock_test_harness"]  # loaded by tests/conftest.py
EXAMPLE = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def section() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Beyond one mutex")
    end = readme.find("\n## ", start + 1)
    return readme[start:] if end < 0 else readme[start:end]


EXAMPLES = EXAMPLE.findall(section())


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    shared = HARNESS.Cluster(tmp_path_factory.mktemp("coord-docs"), 3, [])
    try:
        shared.start_all()
        yield shared
    finally:
        shared.stop_all()


def test_one_example_each_for_session_semaphore_rwlock_and_group() -> None:
    assert len(EXAMPLES) == 4
    for call in ("client.session(", "client.semaphore(", "client.rwlock(", "join_group("):
        assert any(call in example for example in EXAMPLES), call


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_example_runs(index: int, cluster: Any) -> None:
    source = EXAMPLES[index]
    for port, url in zip(("7001", "7002", "7003"), cluster.urls(), strict=True):
        source = source.replace(f"http://127.0.0.1:{port}", url)
    assert "127.0.0.1:700" not in source
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(source, f"README Beyond one mutex example {index + 1}", "exec"),
             {"__name__": "__main__"})  # fmt: skip
    assert out.getvalue().strip(), "every example prints what it did"
