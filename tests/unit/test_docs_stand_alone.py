"""The project stands alone (issue 11 item 7): nothing a user reads — the README, an error
message, a help text — sends them to a design document that is not in the repository; the
license that pyproject.toml names is there; the README installs only what can be installed
and documents what the command line offers."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_FOLDERS = ("api", "coordinator", "persistence")


def readme() -> str:
    return (ROOT / "README.md").read_text()


def section(title: str) -> str:
    """The README's text from a heading to the next heading of any level."""
    text = readme()
    start = text.index(title)
    following = re.search(r"^#+ ", text[start + len(title):], re.M)
    return text[start:start + len(title) + (following.start() if following else len(text))]


def user_facing_strings(path: Path) -> list[tuple[int, str]]:
    """Every string literal of a module except docstrings (the developer's reading)."""
    tree = ast.parse(path.read_text())
    docstrings: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list):
            for statement in body:  # a docstring, or an attribute's docstring below it
                if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
                    docstrings.add(id(statement.value))
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docstrings]  # fmt: skip


def test_the_readme_does_not_send_users_to_a_missing_design_document() -> None:
    assert not (ROOT / "DESIGN.md").exists()
    assert "DESIGN" not in readme()


def test_no_message_or_help_text_of_the_package_cites_the_design_document() -> None:
    found = [f"{path.relative_to(ROOT)}:{line}: {text[:80]!r}"
             for folder in PACKAGE_FOLDERS for path in sorted((ROOT / folder).rglob("*.py"))
             for line, text in user_facing_strings(path) if "DESIGN" in text]  # fmt: skip
    assert not found, "\n".join(found)


def test_the_apache_license_is_in_the_repository_and_in_the_distribution() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]


def test_the_systemd_install_uses_the_source_tree_or_a_built_wheel() -> None:
    systemd = section("- **systemd**")
    installs = re.findall(r"pip install[^`;&\n]*", systemd)
    assert installs, systemd
    assert all(re.search(r"\.whl|\s\.(\s|$)|/", words) for words in installs), installs
    unit = (ROOT / "deploy" / "systemd" / "paxlock.service").read_text()
    assert not re.search(r"pip install paxlock\s*$", unit, re.M), "no index serves paxlock"


def test_the_readme_documents_status_json_and_the_lock_give_up_time() -> None:
    command_line = section("### Command line")
    assert "--json" in command_line
    assert "--retry-deadline" in command_line and "40 s" in command_line
