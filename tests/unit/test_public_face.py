"""The public face: exactly the names of DESIGN.md §1, each resolvable, loaded lazily."""

from __future__ import annotations

import subprocess
import sys

import paxlock


def test_every_public_name_resolves() -> None:
    assert {"AsyncClient", "Client", "Node", "NodeConfig", "PaxlockError", "LeaseHeld",
            "NotHolder", "Unavailable", "BadRequest"} <= set(paxlock.__all__)  # fmt: skip
    for name in paxlock.__all__:
        assert getattr(paxlock, name).__name__ == name
    assert issubclass(paxlock.LeaseHeld, paxlock.PaxlockError)


def test_importing_paxlock_loads_no_server_or_http_stack() -> None:
    code = "import sys, paxlock; print(sorted(m for m in ('aiohttp', 'aiosqlite') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
