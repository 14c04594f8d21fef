"""The core is pure: sans-I/O, no clock, no global randomness (DESIGN §1, STYLE "The boundary").

"The core imports no asyncio, no aiohttp, no sqlite, no ``time``, no ``random``: it receives
messages and the current time, and returns effects ... Randomness comes from an injected
``random.Random``." Checked statically on every module of ``coordinator/core`` with ``ast``,
and dynamically by importing the core in a fresh interpreter.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import paxlock.coordinator.core as core_package

CORE_DIR = Path(core_package.__file__).parent
CORE_MODULES = sorted(CORE_DIR.glob("*.py"))

FORBIDDEN = {
    "asyncio", "aiohttp", "aiosqlite", "sqlite3", "socket", "selectors", "ssl", "time",
    "datetime", "threading", "multiprocessing", "subprocess", "concurrent", "structlog",
    "prometheus_client", "paxlock.api", "paxlock.persistence",
}  # fmt: skip
"""Modules (and their submodules) the core must not import."""

def forbidden(module: str) -> bool:
    return any(module == bad or module.startswith(bad + ".") for bad in FORBIDDEN)


def absolute(node: ast.ImportFrom) -> str:
    """The absolute module of a ``from ... import``, resolving relative imports."""
    if node.level == 0:
        return node.module or ""
    base = "paxlock.coordinator.core".split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = absolute(node)
            found.append((node.lineno, module))
            # ``from paxlock import api`` imports paxlock.api
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def test_the_core_has_the_expected_modules() -> None:
    names = {path.name for path in CORE_MODULES}
    assert {"ballot.py", "messages.py", "ready.py", "acceptor.py", "learner.py", "proposer.py",
            "election.py", "node.py", "keeper.py", "waiters.py", "renewals.py", "replica.py",
            "replica_io.py"} <= names  # fmt: skip


@pytest.mark.parametrize("path", CORE_MODULES, ids=lambda p: p.name)
def test_core_module_imports_no_io_clock_or_outer_layer(path: Path) -> None:
    """DESIGN §1: "The core imports no asyncio, no aiohttp, no sqlite, no time, no random";
    and nothing of ``api``/``persistence`` (the dependency direction)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    bad = [(line, module) for line, module in imports_of(tree) if forbidden(module)]
    assert bad == []
    # no dynamic way around the check either
    calls = [
        n.func.id if isinstance(n.func, ast.Name) else n.func.attr
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name | ast.Attribute)
    ]
    assert "__import__" not in calls and "import_module" not in calls
    assert all(module != "importlib" for _, module in imports_of(tree))


@pytest.mark.parametrize("path", CORE_MODULES, ids=lambda p: p.name)
def test_core_module_never_imports_random(path: Path) -> None:
    """DESIGN §1: "Randomness comes from an injected ``random.Random``" — injected as the
    ``Rng`` protocol of ``config.py``, so no core module imports ``random`` at all, under any
    name, and so none can draw from the global generator."""
    tree = ast.parse(path.read_text(), filename=str(path))
    assert [m for _, m in imports_of(tree) if m == "random" or m.startswith("random.")] == []
    bare = [n for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id == "random"]
    assert bare == []


def test_the_purity_check_itself_catches_forbidden_imports() -> None:
    """The checker must be able to fail."""
    source = (
        "import time\nfrom asyncio import sleep\nfrom paxlock import api\n"
        "from ...persistence import store\nimport random as r\n"
    )
    found = {m for _, m in imports_of(ast.parse(source)) if forbidden(m)}
    assert found == {"time", "asyncio", "asyncio.sleep", "paxlock.api", "paxlock.persistence",
                     "paxlock.persistence.store"}  # fmt: skip


def test_importing_the_core_in_a_fresh_interpreter_imports_no_io_framework() -> None:
    """The dynamic check: importing every module of paxlock.coordinator.core in a new
    interpreter leaves asyncio (and every other I/O framework) out of sys.modules."""
    watched = ["asyncio", "aiohttp", "aiosqlite", "sqlite3", "socket", "selectors", "ssl",
               "threading", "structlog", "prometheus_client", "paxlock.api",
               "paxlock.persistence"]  # fmt: skip
    program = (
        "import importlib, json, pkgutil, sys\n"
        "import paxlock.coordinator.core as core\n"
        "names = sorted(m.name for m in pkgutil.iter_modules(core.__path__))\n"
        "for name in names:\n"
        "    importlib.import_module(f'paxlock.coordinator.core.{name}')\n"
        f"watched = {watched!r}\n"
        "print(json.dumps({'modules': names,\n"
        "                  'loaded': [m for m in watched if m in sys.modules]}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True, timeout=60
    )
    report = json.loads(result.stdout)
    assert {"node", "acceptor", "election"} <= set(report["modules"])
    assert report["loaded"] == []
