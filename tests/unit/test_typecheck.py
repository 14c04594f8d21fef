"""The package type-checks under ``mypy --strict`` (it ships ``py.typed``).

The repository root *is* the ``paxlock`` package (pyproject maps it), which mypy cannot see
from the checkout; a temporary directory with a ``paxlock`` symlink to the root lets it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_mypy_strict_passes_on_the_package(tmp_path: Path) -> None:
    if shutil.which("mypy") is None and subprocess.run(
        [sys.executable, "-m", "mypy", "--version"], capture_output=True
    ).returncode:
        pytest.skip("mypy is not installed")
    (tmp_path / "paxlock").symlink_to(ROOT, target_is_directory=True)
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental",
         "-p", "paxlock.coordinator", "-p", "paxlock.persistence", "-p", "paxlock.api"],
        cwd=tmp_path, env=dict(os.environ, MYPYPATH=str(tmp_path)),
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-5000:]
