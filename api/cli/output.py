"""What every client command of ``paxlock`` shares on its way out: the exit statuses, tables
with aligned columns and human durations, and JSON of the SDK's result objects.

One set of exit statuses for every command, so that a script can tell "someone else holds
it" (3) from "the cluster is down" (4) whatever it ran; ``EXITS_HELP`` says it in each
``--help``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import asdict, is_dataclass
from typing import Any

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_HELD, EXIT_UNAVAILABLE, EXIT_LOST = 0, 1, 2, 3, 4, 5
EXIT_INTERRUPTED = 130
"""Ctrl-C while waiting (as a shell's 128 + SIGINT)."""
EXITS_HELP = ("Exit status: 0 done, 1 refused or not found, 2 usage error, 3 held (--wait "
              "passed), 4 cluster unavailable.")  # fmt: skip
EXITS_RUN_HELP = ("Exit status: CMD's own (127 CMD not found, 126 CMD cannot be run); 2 usage "
                  "error; 3 held (--wait passed); 4 cluster unavailable; 5 lost (the lease or "
                  "the leadership).")  # fmt: skip


def cell(value: Any) -> str:
    return "-" if value is None else str(value)


def duration(seconds: float | None) -> str:
    """``8.2s``, ``12m05s``, ``2h03m``; ``-`` for None."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns left-aligned to their widest cell, two spaces apart, no trailing blanks."""
    cells = [tuple(header)] + [tuple(row) for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in cells)  # fmt: skip


def plain(item: Any) -> Any:
    """A result dataclass as a dict (anything else as it is)."""
    return asdict(item) if is_dataclass(item) and not isinstance(item, type) else item


def to_json(value: Any, *, indent: int | None = 2) -> str:
    """Results (a dataclass, a list of them, a dict) as JSON; bytes as base64, as the API."""
    def default(item: Any) -> Any:
        if isinstance(item, bytes):
            return base64.b64encode(item).decode("ascii")
        if is_dataclass(item) and not isinstance(item, type):
            return asdict(item)
        raise TypeError(f"not JSON: {type(item).__name__}")

    data = [plain(item) for item in value] if isinstance(value, list) else plain(value)
    return json.dumps(data, indent=indent, default=default)
