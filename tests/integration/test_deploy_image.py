"""The image's build stage, done here without Docker (issue 7): the files that
deploy/Dockerfile copies, as deploy/Dockerfile.dockerignore lets them into the build context,
build a wheel (``pip wheel``, as the build stage does) that holds every module of the package,
the license, and a working ``paxlock`` command."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def copied_sources() -> list[str]:
    sources: list[str] = []
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    for line in text.splitlines():
        words = line.split()
        if words and words[0] == "COPY" and not any(w.startswith("--from") for w in words):
            sources += [word.rstrip("/") for word in words[1:-1] if not word.startswith("--")]
    return sources


def test_the_build_stage_makes_a_complete_wheel(tmp_path: Path) -> None:
    context = tmp_path / "src"
    context.mkdir()
    for source in copied_sources():
        origin = ROOT / source
        if origin.is_dir():
            shutil.copytree(origin, context / source,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))  # fmt: skip
        else:
            shutil.copy2(origin, context / source)
    wheels = tmp_path / "wheels"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir",
         str(wheels), str(context)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (wheel,) = wheels.glob("paxlock-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for package, folder in pyproject["tool"]["setuptools"]["package-dir"].items():
        prefix = package.replace(".", "/")
        for module in (ROOT / folder).glob("*.py"):
            assert f"{prefix}/{module.name}" in names, f"{prefix}/{module.name} not in the wheel"
    assert "paxlock/py.typed" in names
    license_files = [n for n in names if ".dist-info/licenses/" in n]
    assert [n.rpartition("/")[2] for n in license_files] == pyproject["project"]["license-files"]
    assert zipfile.ZipFile(wheel).read(license_files[0]) == (ROOT / "LICENSE").read_bytes()
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    assert "License-Expression: Apache-2.0" in zipfile.ZipFile(wheel).read(metadata).decode()
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "paxlock = paxlock.api.cli.main:main" in zipfile.ZipFile(wheel).read(entry_points).decode()

    # Installed on its own (the dependencies come from this environment), it runs.
    target = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                           "--target", str(target), str(wheel)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); import paxlock; "
             "assert paxlock.__file__.startswith(sys.argv[1]), paxlock.__file__; "
             "from paxlock.api.cli.main import main; sys.argv = ['paxlock', 'serve', '--help']; main()")
    done = subprocess.run([sys.executable, "-c", probe, str(target)], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0 and "--data-dir" in done.stdout, done.stdout + done.stderr
