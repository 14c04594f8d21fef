"""Library code never configures logging (issue 11, item 9): every module of the package logs
through ``paxlock._logs.get_logger``, which uses structlog only once the program configured
it and the standard library's ``logging`` (silent until the host configures it) otherwise.
Only the ``paxlock`` program's own start-up (``api/cli/logs.py``) configures structlog."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIRS = ("api", "coordinator", "persistence")
CONFIGURES = re.compile(r"structlog\.(get_logger|configure|wrap_logger)\(|logging\.basicConfig\(")
ALLOWED = {"api/cli/logs.py"}


def offenders(sources: dict[str, str]) -> list[str]:
    return sorted(f"{path}:{number}" for path, text in sources.items() if path not in ALLOWED
                  for number, line in enumerate(text.splitlines(), 1)
                  if CONFIGURES.search(line))  # fmt: skip


def test_no_library_module_logs_through_structlog_defaults_or_configures_logging() -> None:
    sources = {str(path.relative_to(ROOT)): path.read_text(encoding="utf-8")
               for folder in PACKAGE_DIRS for path in (ROOT / folder).rglob("*.py")}  # fmt: skip
    assert len(sources) > 20  # the walk found the package
    assert offenders(sources) == []


def test_the_check_catches_a_module_level_structlog_logger() -> None:
    planted = {"coordinator/x.py": 'log = structlog.get_logger("paxlock.x")\n',
               "api/y.py": "logging.basicConfig(level=logging.INFO)\n",
               "api/cli/logs.py": "structlog.configure(processors=[])\n"}  # fmt: skip
    assert offenders(planted) == ["api/y.py:1", "coordinator/x.py:1"]
