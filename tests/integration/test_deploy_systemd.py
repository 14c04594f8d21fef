"""deploy/systemd/paxlock.service is a valid, hardened unit, and its sandbox does not break
the node (issue 7).

There is no systemd running here to start it, so: ``systemd-analyze verify`` checks the unit
(with ExecStart and EnvironmentFile pointed at files that exist on this machine), ``systemd-
analyze security --offline`` scores its exposure, and a real cluster runs under the two
restrictions a Python program is most likely to trip over — MemoryDenyWriteExecute (the kernel's
PR_SET_MDWE) and NoNewPrivileges — to take a lease.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "systemd" / "paxlock.service"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze not installed (apt-get install -y systemd)"
)
EXPOSURE_MAX = 20
"""``--threshold`` is the exposure level times ten: 20 is 2.0 of 10, well inside "OK"."""

SANDBOX = """\
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
PR_SET_NO_NEW_PRIVS, PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 38, 65, 1
for option, arg in ((PR_SET_NO_NEW_PRIVS, 1), (PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN)):
    if libc.prctl(option, arg, 0, 0, 0) != 0:
        sys.exit(f"prctl({option}) failed: errno {ctypes.get_errno()}")
os.execv(sys.argv[1], sys.argv[1:])
"""


def local_unit(tmp_path: Path) -> Path:
    """The unit with its absolute paths pointed at this machine's paxlock and an env file."""
    env_file = tmp_path / "paxlock.env"
    env_file.write_text("PAXLOCK_CLUSTER_TOKEN=test\n")
    paxlock = Path(sys.executable).with_name("paxlock")
    lines = []
    for line in UNIT.read_text().splitlines():
        if line.startswith("ExecStart="):
            line = line.replace("/opt/paxlock/bin/paxlock", str(paxlock))
        elif line.startswith("EnvironmentFile="):
            line = f"EnvironmentFile={env_file}"
        lines.append(line)
    path = tmp_path / "paxlock.service"
    path.write_text("\n".join(lines) + "\n")
    return path


@needs_systemd_analyze
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    if not Path(sys.executable).with_name("paxlock").exists():
        pytest.skip("no paxlock script beside the interpreter (package not installed)")
    assert SYSTEMD_ANALYZE is not None
    done = subprocess.run([SYSTEMD_ANALYZE, "verify", str(local_unit(tmp_path))],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0 and not done.stderr.strip(), done.stdout + done.stderr


@needs_systemd_analyze
def test_systemd_analyze_security_exposure_is_low(tmp_path: Path) -> None:
    assert SYSTEMD_ANALYZE is not None
    done = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=yes", f"--threshold={EXPOSURE_MAX}",
         "--no-pager", str(local_unit(tmp_path))],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if "Unknown option" in done.stderr or "unrecognized option" in done.stderr:
        pytest.skip(f"systemd-analyze too old for --offline: {done.stderr.strip()}")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr


def mdwe_supported() -> bool:
    """PR_SET_MDWE exists from Linux 6.3: probe it in a child (it cannot be undone)."""
    probe = "import ctypes,sys; sys.exit(ctypes.CDLL(None).prctl(66, 0, 0, 0, 0) < 0)"
    return sys.platform == "linux" and subprocess.run([sys.executable, "-c", probe]).returncode == 0


def test_a_cluster_runs_under_memory_deny_write_execute(cluster_factory: Any, http: Any,
                                                        tmp_path: Path) -> None:  # fmt: skip
    """MemoryDenyWriteExecute=yes and NoNewPrivileges=yes, as the unit sets them, applied by
    the kernel to each member: the members elect a primary, fsync and grant a lease."""
    if not mdwe_supported():
        pytest.skip("the kernel has no PR_SET_MDWE (Linux >= 6.3)")
    assert "MemoryDenyWriteExecute=yes" in UNIT.read_text()
    sandbox = tmp_path / "sandbox.py"
    sandbox.write_text(SANDBOX)
    cluster = cluster_factory(3, start=False)
    plain = cluster.command
    cluster.command = lambda node_id, extra_args=None: [sys.executable, str(sandbox),
                                                        *plain(node_id, extra_args)]  # fmt: skip
    try:
        cluster.start_all()
    except AssertionError:
        print(cluster.logs())
        raise
    status, _, lease = http("POST", cluster.url("n1") + "/v1/leases/mdwe:acquire",
                            {"holder": "alice", "ttl": 10})  # fmt: skip
    assert status == 200, lease
    for node_id, member in cluster.members.items():
        status_text = Path(f"/proc/{member.process.pid}/status").read_text()
        assert "NoNewPrivs:\t1" in status_text, node_id
