"""``paxlock up``: a local cluster on loopback to try paxlock with, one ``paxlock serve`` child
process per member, supervised until Ctrl-C, SIGTERM or SIGHUP.

- Every port is checked before anything starts: a port in use is one line and exit 2. A
  member that refuses its first start (exit status 2: a port taken meanwhile, a data dir
  locked by a live process) stops the cluster, exit 2.
- A member that dies later (killed, or its store failed) is reported in one line; the others
  keep running, so a failover can be watched. ``up`` prints the member's own ``paxlock
  serve`` line, runnable as printed, and restarts the dead members itself when Enter is
  pressed in its terminal. It ends (exit 1) only when no member is left.
- Ctrl-C, SIGTERM and SIGHUP stop every member (SIGTERM, SIGKILL after ``STOP_GRACE_S``)
  and wait for them: no orphans, every data dir unlocked, exit 0. The members run in their
  own process group, so signals from the terminal reach ``up`` alone, which stops them in
  order; on Linux they also get SIGTERM should ``up`` itself be killed.

With ``--tls`` it first makes a throwaway CA and one certificate per member under
``DATA_DIR/tls`` (``local_pki``), starts the members with them (https://, mutual TLS between
members), and prints the CA's path and how to point the SDK and the CLI at it.

Signal handlers only record the signal; the one loop wakes up on a signal (``SIGCHLD``
included, through ``signal.set_wakeup_fd``) or a line on stdin, and acts there.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import selectors
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from paxlock.api.cli.cluster_token import write_token_file
from paxlock.api.server.node import listen_failure

if TYPE_CHECKING:
    from paxlock.api.cli.local_pki import MemberFiles

STOP_GRACE_S = 10.0
"""How long stopping members get after SIGTERM before SIGKILL."""
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
REFUSED = 2
"""``paxlock serve``'s exit status for a start it refuses (configuration, store, address)."""
PR_SET_PDEATHSIG = 1


@dataclass
class Member:
    node_id: str
    port: int
    args: list[str]
    """The member's command line after the program: ``serve --id n1 ...``."""
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0


def member_ids(nodes: int) -> list[str]:
    return [f"n{i + 1}" for i in range(nodes)]


def plan(nodes: int, base_port: int, data_dir: Path, host: str,
         tls: tuple[Path, dict[str, MemberFiles]] | None = None) -> list[Member]:  # fmt: skip
    """Each member's ``serve`` line; ``tls`` is the CA file and each member's certificate."""
    ids = member_ids(nodes)
    scheme = "https" if tls is not None else "http"
    urls = {node_id: f"{scheme}://{host}:{base_port + i}" for i, node_id in enumerate(ids)}
    members = []
    for i, node_id in enumerate(ids):
        args = ["serve", "--id", node_id, "--listen", f"{host}:{base_port + i}",
                "--data-dir", str(data_dir / node_id)]  # fmt: skip
        if tls is not None:
            ca, files = tls
            args += ["--tls-cert", str(files[node_id].cert), "--tls-key",
                     str(files[node_id].key), "--tls-ca", str(ca)]  # fmt: skip
        for other in ids:
            if other != node_id:
                args += ["--peer", f"{other}={urls[other]}"]
        members.append(Member(node_id, base_port + i, args))
    return members


def port_in_use(host: str, port: int) -> str | None:
    """Why a member could not listen on ``host:port``, or None. Probed as the member binds
    (``SO_REUSEADDR``), so a port still in TIME_WAIT from a previous run counts as free."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            return listen_failure(host, port, error)
    return None


def program() -> list[str]:
    """How to run paxlock from a shell, for the lines ``up`` prints: ``paxlock`` when that is
    this installation's command on PATH, else the command's full path, else ``python -m``."""
    script = Path(sysconfig.get_path("scripts")) / "paxlock"
    found = shutil.which("paxlock")
    if found and script.exists() and os.path.samefile(found, script):
        return ["paxlock"]
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "paxlock.api.cli"]


def die_with_parent() -> Callable[[], None] | None:
    """On Linux, a hook run in each member before it execs that asks the kernel for SIGTERM
    when ``up`` dies, even by SIGKILL, so that no member outlives it unsupervised."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def hook() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))
        if os.getppid() != parent:  # up died before the hook ran
            os.kill(os.getpid(), signal.SIGTERM)

    return hook


def how_it_ended(code: int) -> str:
    if code >= 0:
        return f"exited with status {code}"
    try:
        return f"was killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"was killed by signal {-code}"


def drain(fd: int) -> None:
    """Empty the non-blocking wakeup pipe (one byte per signal received)."""
    with contextlib.suppress(BlockingIOError):
        while os.read(fd, 512):
            pass


class LocalCluster:
    """The members of one ``paxlock up`` and the loop that supervises them."""

    def __init__(self, members: list[Member], host: str, data_dir: Path,
                 ca: Path | None = None) -> None:  # fmt: skip
        self.members = members
        self.host = host
        self.data_dir = data_dir
        self.ca = ca
        """The CA file of ``--tls`` (the members speak https://), else None."""
        self.signal: int | None = None
        self._selector = selectors.SelectSelector()  # select(): ttys, pipes and files alike
        self._keyboard: int | None = None
        """stdin's fd while a line on it restarts the dead members."""
        self._keyboard_closed = False
        self._hook = die_with_parent()

    def run(self) -> int:
        wakeup_r, wakeup_w = os.pipe()
        os.set_blocking(wakeup_r, False)
        os.set_blocking(wakeup_w, False)
        self._selector.register(wakeup_r, selectors.EVENT_READ)
        previous = {signum: signal.signal(signum, self._record) for signum in STOP_SIGNALS}
        previous[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, self._wake)
        previous_fd = signal.set_wakeup_fd(wakeup_w, warn_on_full_buffer=False)
        try:
            return self._supervise(wakeup_r)
        finally:
            self.stop_all()  # signals arriving meanwhile are only recorded: it runs to its end
            signal.set_wakeup_fd(previous_fd)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self._selector.close()
            os.close(wakeup_r)
            os.close(wakeup_w)

    def _supervise(self, wakeup_r: int) -> int:
        for member in self.members:
            if self.signal is None:
                self.start(member)
        if self.signal is None:
            self._banner()
            self._watch_keyboard()
        while self.signal is None:
            ended = self._reap()
            if ended is not None:
                return ended
            for key, _ in self._selector.select():
                if key.fd == wakeup_r:
                    drain(wakeup_r)
                else:
                    self._on_keyboard()
        name = signal.Signals(self.signal).name
        print(f"\npaxlock up: {name}: stopping the cluster", flush=True)
        return 0

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self.signal = signum

    def _wake(self, signum: int, frame: FrameType | None) -> None:
        """SIGCHLD needs a Python handler to wake the loop through the wakeup fd."""

    def start(self, member: Member) -> None:
        member.process = subprocess.Popen(
            [sys.executable, "-m", "paxlock.api.cli", *member.args],
            stdin=subprocess.DEVNULL, process_group=0, preexec_fn=self._hook,
        )  # fmt: skip
        member.starts += 1

    def serve_line(self, member: Member) -> str:
        return shlex.join(program() + member.args)

    def _banner(self) -> None:
        scheme = "https" if self.ca is not None else "http"
        urls = [f"{scheme}://{self.host}:{member.port}" for member in self.members]
        print(f"paxlock: {len(self.members)}-node cluster on {self.host}, "
              f"data under {self.data_dir}/")  # fmt: skip
        for member, url in zip(self.members, urls, strict=True):
            assert member.process is not None
            print(f"  {member.node_id}  {url}  (pid {member.process.pid})")
        cacert = ""
        if self.ca is not None:
            ca = shlex.quote(str(self.ca))
            cacert = f"--cacert {ca} "
            print(f"TLS: the members' certificates are signed by the CA {self.ca}")
            print(f"  CLI:  export PAXLOCK_CA={ca} PAXLOCK_ENDPOINTS={','.join(urls)}")
            print(f"  SDK:  AsyncClient({urls!r}, ca_file={str(self.ca)!r})")
        print(f"try:  curl -s {cacert}-XPOST {urls[0]}"
              """/v1/leases/demo:acquire -d '{"holder": "me", "ttl": 10}'""")  # fmt: skip
        print(f"      paxlock leases  (with PAXLOCK_ENDPOINTS={','.join(urls)})")
        print(f"look: {urls[0]}/ui/  (the status page, on every member)")
        print("Ctrl-C stops the cluster. Kill a member's pid to watch a failover; "
              "the others keep running.", flush=True)  # fmt: skip

    def _reap(self) -> int | None:
        """Report the members that ended since the last look; the exit status of ``up`` when
        it must end now."""
        for member in self.members:
            if member.process is None or member.process.poll() is None:
                continue
            code, pid = member.process.returncode, member.process.pid
            member.process = None
            if code == REFUSED and member.starts == 1:
                print(f"paxlock up: {member.node_id} could not start; stopping the cluster",
                      file=sys.stderr, flush=True)  # fmt: skip
                return REFUSED
            running = [m.node_id for m in self.members if m.process is not None]
            print(f"paxlock up: {member.node_id} (pid {pid}) {how_it_ended(code)}; "
                  f"still running: {', '.join(running) or 'none'}", file=sys.stderr)  # fmt: skip
            print(f"  restart it: {self.serve_line(member)}", file=sys.stderr)
            if self._watch_keyboard():
                print("  or press Enter here to have paxlock up restart it", file=sys.stderr)
            sys.stderr.flush()
        if all(member.process is None for member in self.members):
            print("paxlock up: no member is left running", file=sys.stderr, flush=True)
            return 1
        return None

    def _watch_keyboard(self) -> bool:
        """Listen to stdin if it is ours to read (a pipe, or the terminal while ``up`` is in
        the foreground: a background read would stop it with SIGTTIN)."""
        if self._keyboard is not None:
            return True
        if self._keyboard_closed or sys.stdin is None:
            return False
        try:
            fd = sys.stdin.fileno()
            if os.isatty(fd) and os.tcgetpgrp(fd) != os.getpgrp():
                return False
            self._selector.register(fd, selectors.EVENT_READ)
        except (OSError, ValueError):
            return False
        self._keyboard = fd
        return True

    def _on_keyboard(self) -> None:
        fd = self._keyboard
        assert fd is not None
        data: bytes | None = None  # None: not now (moved to the background), maybe later
        try:
            if not os.isatty(fd) or os.tcgetpgrp(fd) == os.getpgrp():
                data = os.read(fd, 1024)
        except OSError:
            pass
        if not data:
            self._selector.unregister(fd)
            self._keyboard = None
            self._keyboard_closed = data == b""  # end of input: never again
            return
        if b"\n" in data:
            self._restart_dead()

    def _restart_dead(self) -> None:
        for member in self.members:
            if member.process is None:
                self.start(member)
                assert member.process is not None
                print(f"paxlock up: restarted {member.node_id} (pid {member.process.pid})",
                      file=sys.stderr, flush=True)  # fmt: skip

    def stop_all(self) -> None:
        """SIGTERM to every member still running, SIGKILL to any not gone after the grace."""
        running = [m.process for m in self.members if m.process is not None]
        for process in running:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + STOP_GRACE_S
        for process in running:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def up(base_port: int, nodes: int, data_dir: Path, host: str = "127.0.0.1",
       tls: bool = False) -> int:  # fmt: skip
    """Run a local cluster until Ctrl-C, SIGTERM or SIGHUP (exit 0); exit 2 when it cannot
    start, 1 when no member is left running."""
    for port in range(base_port, base_port + nodes):
        failure = port_in_use(host, port)
        if failure is not None:
            print(f"paxlock up: {failure}", file=sys.stderr)
            return REFUSED
    pki = None
    if tls:
        from paxlock.api.cli.local_pki import make_local_pki  # cryptography: only for --tls

        try:
            pki = make_local_pki(data_dir / "tls", member_ids(nodes), hosts=[host])
        except OSError as error:
            print(f"paxlock up: cannot write the TLS certificates under {data_dir / 'tls'}: "
                  f"{error.strerror or error}", file=sys.stderr)  # fmt: skip
            return REFUSED
    members = plan(nodes, base_port, data_dir, host, pki)
    # Peers authenticate with a fresh token, given by file: never on a command line.
    try:
        token_file = write_token_file(data_dir)
    except OSError as error:
        print(f"paxlock up: cannot write the cluster token in {data_dir}: {error.strerror}",
              file=sys.stderr)  # fmt: skip
        return REFUSED
    for member in members:
        member.args += ["--cluster-token-file", str(token_file)]
    return LocalCluster(members, host, data_dir, pki[0] if pki else None).run()
