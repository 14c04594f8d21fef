"""Every ```python example of the SDK documentation runs, unchanged, against a real cluster.

The examples name the endpoints of ``paxlock up`` (ports 7001-7003); the test swaps in the
cluster's. The text lives in ``docs/sdk.md`` until it moves into README.md's "Python SDK"
section; the test reads whichever exists.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import paxlock
from paxlock.api.client import aio, errors, sync

ROOT = Path(__file__).resolve().parents[2]
HARNESS = sys.modules["paxlock_test_harness"]  # loaded by tests/conftest.py
EXAMPLE = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
PUBLIC = {
    "AsyncClient": aio.AsyncClient, "Client": sync.Client,
    **{name: getattr(errors, name) for name in errors.__all__
       if name != "error_from_response"},
}  # fmt: skip


def sdk_text() -> str:
    docs = ROOT / "docs" / "sdk.md"
    if docs.exists():
        return docs.read_text()
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Python SDK")
    end = readme.find("\n## ", start + 1)
    return readme[start:] if end < 0 else readme[start:end]


EXAMPLES = EXAMPLE.findall(sdk_text())


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    shared = HARNESS.Cluster(tmp_path_factory.mktemp("sdk-docs"), 3, [])
    try:
        shared.start_all()
        yield shared
    finally:
        shared.stop_all()


def test_the_docs_have_examples() -> None:
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_example_runs(index: int, cluster: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in PUBLIC.items():  # until the package root exports them
        if not hasattr(paxlock, name):
            monkeypatch.setattr(paxlock, name, value, raising=False)
    source = EXAMPLES[index]
    for port, url in zip(("7001", "7002", "7003"), cluster.urls(), strict=True):
        source = source.replace(f"http://127.0.0.1:{port}", url)
    assert "127.0.0.1:700" not in source
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(source, f"docs/sdk.md example {index + 1}", "exec"), {"__name__": "__main__"})
    assert out.getvalue().strip(), "every example prints what it did"
