"""The cluster token of ``paxlock serve``: where it may come from, and when a member may start
without a peer credential at all.

The token is a shared secret that every peer shows on ``/internal/``. It is read from a file
(``--cluster-token-file``, first line) or from ``PAXLOCK_CLUSTER_TOKEN``, never from the command
line, which any local user reads in ``ps``, nor from the TOML config file, which is often
world-readable. A member that can be reached beyond loopback refuses to start without a peer
credential (this token, or mutual TLS with ``--tls-ca``) unless told ``--insecure-peers``: on the
peer endpoint, whoever connects can vote and propose as a member.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import re
import secrets
import stat
from collections.abc import Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from paxlock._logs import get_logger

log = get_logger("paxlock.serve")

TOKEN_ENV = "PAXLOCK_CLUSTER_TOKEN"
TOKEN_CHARS_MAX = 4096
"""A token travels in an HTTP header (aiohttp's limit is 8190 bytes a field)."""
TOKEN_RE = re.compile(r"[\x21-\x7e]+")
"""Printable ASCII without spaces: what a header carries unchanged."""
ARGV_REFUSAL = ("--cluster-token puts the secret in the process list; use --cluster-token-file "
                "or PAXLOCK_CLUSTER_TOKEN")  # fmt: skip
CONFIG_REFUSAL = ("secrets stay out of config files, which are often world-readable: set "
                  "cluster_token_file there, or PAXLOCK_CLUSTER_TOKEN")  # fmt: skip
UP_TOKEN_FILE = "cluster-token"
"""``paxlock up`` writes its cluster's token here, in the cluster's data dir, mode 0600."""


class TokenError(ValueError):
    """A token source that cannot be used: one line for the operator."""


class RefuseTokenOnArgv(argparse.Action):
    """``--cluster-token SECRET``: refused before anything else, exit 2. Kept as a hidden flag
    so that argparse does not take it as an abbreviation of ``--cluster-token-file``."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: str | Sequence[Any] | None, option: str | None = None) -> None:  # fmt: skip
        parser.exit(2, f"{parser.prog}: {ARGV_REFUSAL}\n")


def checked(token: str, where: str) -> str:
    if not token:
        raise TokenError(f"{where} is empty: the cluster token needs at least one character")
    if len(token) > TOKEN_CHARS_MAX:
        raise TokenError(f"{where}: the cluster token is longer than {TOKEN_CHARS_MAX} characters")
    if TOKEN_RE.fullmatch(token) is None:
        raise TokenError(f"{where}: the cluster token must be printable ASCII without spaces "
                         "(it travels in an HTTP header)")  # fmt: skip
    return token


def read_token_file(path: str | Path) -> str:
    """The file's first line, stripped. Warns (once, one log line) when users other than this
    process's own user and group can read it."""
    try:
        with open(path, "rb") as file:
            mode = os.fstat(file.fileno())
            first = file.readline(TOKEN_CHARS_MAX + 2)
    except OSError as error:
        raise TokenError(f"cannot read cluster token file {path}: {error.strerror}") from None
    try:
        token = first.decode("ascii").strip()
    except UnicodeDecodeError:
        token = "\x00"  # refused by checked() below, with the reason
    checked(token, f"cluster token file {path}")
    if exposed(mode):
        log.warning("cluster_token_file_readable_by_others", file=str(path),
                    mode=f"{stat.S_IMODE(mode.st_mode):04o}",
                    hint=f"chmod 600 {path}")  # fmt: skip
    return token


def exposed(info: os.stat_result) -> bool:
    """Readable by others, or by a group that is not this process's own. A group read by the
    process's own group is how Kubernetes mounts secrets (fsGroup) and how a unit with
    ``Group=`` shares a file: not a leak."""
    mode = stat.S_IMODE(info.st_mode)
    return bool(mode & 0o004) or bool(mode & 0o040 and info.st_gid != os.getegid())


def merge_env_token(merged: MutableMapping[str, Any], environ: Mapping[str, str]) -> None:
    """``PAXLOCK_CLUSTER_TOKEN`` in the environment layer: it overrides a token file from the
    config file, and conflicts with ``PAXLOCK_CLUSTER_TOKEN_FILE``."""
    raw = environ.get(TOKEN_ENV)
    if raw is None:
        return
    if environ.get(TOKEN_ENV + "_FILE") is not None:
        raise TokenError(f"{TOKEN_ENV} and {TOKEN_ENV}_FILE are both set: give one")
    merged.pop("cluster_token_file", None)
    merged["cluster_token"] = checked(raw.strip(), TOKEN_ENV)


def cluster_token(settings: Mapping[str, Any]) -> str | None:
    """The token the settings name, read and checked, or None."""
    if settings.get("cluster_token"):
        return str(settings["cluster_token"])
    if settings.get("cluster_token_file"):
        return read_token_file(str(settings["cluster_token_file"]))
    return None


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.partition("%")[0]).is_loopback
    except ValueError:
        return False  # a name that may resolve to anything, "" (every interface) included


def has_credential(settings: Mapping[str, Any], token: str | None) -> bool:
    """A cluster token, or mutual TLS (the ``tls_ca`` setting of the TLS work)."""
    return bool(token or settings.get("tls_ca"))


def check_peer_credential(settings: Mapping[str, Any], listen: str, advertise: str,
                          token: str | None) -> None:  # fmt: skip
    """Refuse (``TokenError``) a member reachable beyond loopback, by its listen address or
    its advertised URL, without a peer credential, unless ``insecure_peers``."""
    insecure = settings.get("insecure_peers")
    if insecure is not None and not isinstance(insecure, bool):
        raise TokenError(f"insecure_peers must be true or false, not {insecure!r}")
    if has_credential(settings, token) or insecure:
        return
    hosts = [listen.rpartition(":")[0], urlsplit(advertise).hostname or ""]
    beyond = next((host or "*" for host in hosts if not is_loopback(host)), None)
    if beyond is not None:
        raise TokenError(
            f"{beyond} is beyond loopback: peers need a credential there; give "
            "--cluster-token-file FILE (or PAXLOCK_CLUSTER_TOKEN) or --tls-ca FILE, or "
            "--insecure-peers to let anyone who reaches the port act as a peer"
        )


def warn_unauthenticated(listen: str) -> None:
    """One loud log line, once the member serves without a peer credential (after start-up,
    so that a refusal to start stays one line)."""
    log.warning("peers_unauthenticated", listen=listen,
                message=f"no cluster token and no --tls-ca: any process that reaches {listen} "
                "can act as a peer (vote, propose, install state)")  # fmt: skip


def write_token_file(directory: Path) -> Path:
    """A fresh random token in ``directory/cluster-token``, mode 0600 from its creation (for
    ``paxlock up``, whose members read it with ``--cluster-token-file``)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / UP_TOKEN_FILE
    partial = path.with_name(f".{UP_TOKEN_FILE}.{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(partial)  # left by a crash: never write into a file someone else made
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, (secrets.token_hex(32) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(partial, path)
    return path
