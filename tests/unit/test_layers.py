"""The layers of DESIGN.md §1: "The client SDK depends on nothing of the server side."

Checked on the package ``paxlock.api.client`` itself, not on file names: every module that
``pkgutil`` finds in it is parsed with ``ast`` (a new module is covered the day it is added),
and the package is imported in a fresh interpreter to see what actually gets loaded.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import pkgutil
import subprocess
import sys

import pytest

import paxlock.api.client as client_package

CLIENT = "paxlock.api.client"
SERVER_SIDE = ("paxlock.coordinator", "paxlock.persistence", "paxlock.api.server",
               "paxlock.api.cli")  # fmt: skip
"""What a client module must never load (the subprocess check)."""
THIRD_PARTY_ALLOWED = {"aiohttp", "yarl", "msgspec"}
"""The SDK talks HTTP: no store, no server logging or metrics stack."""
TOOZ_MODULES = ("paxlock.api.client.tooz_driver", "paxlock.api.client.tooz_lock")
"""The tooz backend, and only it, imports tooz (the ``paxlock[tooz]`` extra): the rest of
the SDK must import without it."""


def client_module_names() -> list[str]:
    walked = pkgutil.walk_packages(client_package.__path__, prefix=CLIENT + ".")
    return [CLIENT, *sorted(info.name for info in walked)]


def imports_of(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str]]:
    """Every module an ``import`` of ``module``'s source names, relative imports resolved;
    ``from a import b`` counts as both ``a`` and ``a.b`` (``b`` may be a module)."""
    package = module if is_package else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module or ""
            else:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def outside_the_client(name: str) -> bool:
    """A paxlock module that is not ``paxlock.api.client`` or below it."""
    if name != "paxlock" and not name.startswith("paxlock."):
        return False
    return name != CLIENT and not name.startswith(CLIENT + ".")


def third_party_not_allowed(name: str, module: str = "") -> bool:
    root = name.split(".")[0]
    return not (root in ("paxlock", "") or root in sys.stdlib_module_names
                or root in THIRD_PARTY_ALLOWED
                or (root == "tooz" and module in TOOZ_MODULES))  # fmt: skip


def test_the_walk_finds_the_sdk() -> None:
    """Guard against a vacuous pass: the walk sees the modules the SDK is made of."""
    names = set(client_module_names())
    assert {f"{CLIENT}.{m}" for m in ("aio", "sync", "transport", "keepalive", "clock", "session",
                                      "holding", "election", "errors", "types")} <= names


def parsed(module: str) -> tuple[ast.Module, bool]:
    """The syntax tree of ``module``'s source, and whether it is a package."""
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None
    with open(spec.origin, encoding="utf-8") as source:
        return ast.parse(source.read(), filename=spec.origin), spec.submodule_search_locations is not None


def import_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` (module -> modules it imports), or None."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return path[path.index(module):] + [module]
        if module in done:
            return None
        for imported in sorted(graph.get(module, ())):
            cycle = visit(imported, [*path, module])
            if cycle is not None:
                return cycle
        done.add(module)
        return None

    return next((c for m in sorted(graph) if (c := visit(m, [])) is not None), None)


@pytest.mark.parametrize("module", client_module_names())
def test_client_module_imports_nothing_outside_the_client(module: str) -> None:
    tree, is_package = parsed(module)
    found = imports_of(tree, module, is_package)
    assert [(line, name) for line, name in found if outside_the_client(name)] == []
    assert [(line, name) for line, name in found if third_party_not_allowed(name, module)] == []
    calls = [n.func.id if isinstance(n.func, ast.Name) else n.func.attr
             for n in ast.walk(tree)
             if isinstance(n, ast.Call) and isinstance(n.func, ast.Name | ast.Attribute)]
    assert "__import__" not in calls and "import_module" not in calls  # no way around it


def test_the_import_check_itself_catches_an_outside_import() -> None:
    """The checker must be able to fail: each of these leaves the SDK."""
    source = ("from paxlock.coordinator.errors import NotFound\nimport paxlock.persistence\n"
              "from paxlock.api import server\nfrom .. import cli\nfrom ..server.app import x\n"
              "import paxlock\nfrom . import errors\nfrom .types import Lease\n"
              "import structlog\n")  # fmt: skip
    found = imports_of(ast.parse(source), f"{CLIENT}.aio", is_package=False)
    assert {name for _, name in found if outside_the_client(name)} == {
        "paxlock.coordinator.errors", "paxlock.coordinator.errors.NotFound",
        "paxlock.persistence", "paxlock.api", "paxlock.api.server", "paxlock.api.cli",
        "paxlock.api.server.app", "paxlock.api.server.app.x", "paxlock",
    }  # fmt: skip
    assert {name for _, name in found if third_party_not_allowed(name)} == {"structlog"}


def test_the_client_modules_import_each_other_without_a_cycle() -> None:
    """Recipes take what they need (a ``Session``) and import nothing of the client module
    that builds them: no import loop inside the SDK, ``TYPE_CHECKING`` imports included
    (``election`` once imported ``AsyncClient`` under ``TYPE_CHECKING`` while ``aio``
    imported ``Election``)."""
    modules = client_module_names()
    graph = {}
    for module in modules:
        tree, is_package = parsed(module)
        graph[module] = {name for _, name in imports_of(tree, module, is_package)
                         if name in modules and name not in (module, CLIENT)}  # fmt: skip
    assert import_cycle(graph) is None
    assert f"{CLIENT}.aio" not in graph[f"{CLIENT}.election"]
    assert import_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_importing_the_client_in_a_fresh_interpreter_loads_no_server_side_module() -> None:
    """The dynamic check: import ``paxlock.api.client`` and every module in it, then look at
    ``sys.modules`` for anything of the coordinator, the store, the server or the CLI."""
    program = (
        "import importlib, json, pkgutil, sys\n"
        f"import {CLIENT} as package\n"
        f"names = sorted(m.name for m in pkgutil.walk_packages(package.__path__, '{CLIENT}.'))\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        f"server_side = {SERVER_SIDE!r}\n"
        "loaded = sorted(m for m in sys.modules\n"
        "                if any(m == s or m.startswith(s + '.') for s in server_side))\n"
        "print(json.dumps({'modules': names, 'loaded': loaded}))\n"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                            check=True, timeout=60)  # fmt: skip
    report = json.loads(result.stdout)
    assert f"{CLIENT}.aio" in report["modules"] and f"{CLIENT}.sync" in report["modules"]
    assert report["loaded"] == []
