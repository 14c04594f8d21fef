"""``promtool`` (Debian's ``prometheus`` package) accepts deploy/prometheus/ and its rule tests
pass (issue 7). Skipped, with the reason, where promtool is not installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

PROMETHEUS_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
PROMTOOL = shutil.which("promtool")

pytestmark = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (apt-get install -y prometheus)"
)


def promtool(*args: str) -> str:
    assert PROMTOOL is not None
    done = subprocess.run([PROMTOOL, *args], cwd=PROMETHEUS_DIR, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def test_promtool_check_config() -> None:
    out = promtool("check", "config", "prometheus.yml")
    assert "SUCCESS" in out and "1 rule files found" in out


def test_promtool_check_rules() -> None:
    out = promtool("check", "rules", "alerts.yml")
    assert "SUCCESS" in out


def test_promtool_test_rules_fires_each_alert_when_it_should() -> None:
    """alerts_test.yml: a healthy cluster fires nothing; each fault fires its alert with the
    labels and rendered annotations an operator will read."""
    out = promtool("test", "rules", "alerts_test.yml")
    assert "SUCCESS" in out
