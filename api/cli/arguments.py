"""The argument types and the parser class of the ``paxlock`` command line: each type turns
one word into a value or into a usage error that says what the value must be, and the parser
reports that error on one line with exit status 2."""

from __future__ import annotations

import argparse
import importlib.metadata
import math
import sys
import textwrap
from collections.abc import Mapping
from typing import Any, NoReturn

from paxlock.coordinator.core.lease_commands import NAME_RE

LOCAL_CLUSTER_NODES_MAX = 9
"""``paxlock up`` runs every member on this machine: a few are a cluster, many are a mistake."""
TTL_S_MAX = 3600.0
"""The server's bound on a lease's TTL."""


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, but lines never break inside a word at a hyphen, so a flag such
    as --retry-deadline is never cut in two."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return textwrap.fill(" ".join(text.split()), width, initial_indent=indent,
                             subsequent_indent=indent, break_on_hyphens=False)  # fmt: skip


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line: the error, then where the usage
    is (argparse would print the whole usage block first). Subparsers are of this class too,
    and every parser formats its help with ``HelpFormatter``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see '{self.prog} --help')\n")


def add_token_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--token-file", metavar="FILE",
                        help="file holding the bearer token for a cluster run with --auth "
                        "(default: $PAXLOCK_AUTH_TOKEN)")  # fmt: skip


def token_from(prog: str, path: str | None, environ: Mapping[str, str]) -> str | None:
    """The bearer token: the file's first line, else ``PAXLOCK_AUTH_TOKEN``, else None (a token
    never comes from argv, where ``ps`` shows it). An unreadable file exits 2, one line."""
    if path is None:
        return environ.get("PAXLOCK_AUTH_TOKEN", "").strip() or None
    try:
        with open(path, encoding="utf-8") as file:
            return file.readline().strip() or None
    except (OSError, UnicodeDecodeError) as error:
        print(f"{prog}: cannot read --token-file {path}: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def version() -> str:
    try:
        return importlib.metadata.version("paxlock")
    except importlib.metadata.PackageNotFoundError:
        return "(version unknown: not installed)"


def _number(text: str, rule: str) -> float:
    """A finite number, or the usage error ``must be {rule}, not {text!r}``."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be {rule}, not {text!r}")
    return value


def seconds(text: str) -> float:
    rule = "a number of seconds, at least 0"
    value = _number(text, rule)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be {rule}, not {text!r}")
    return value


def ttl(text: str) -> float:
    rule = f"a number of seconds above 0 and at most {TTL_S_MAX:g}"
    value = _number(text, rule)
    if not 0 < value <= TTL_S_MAX:
        raise argparse.ArgumentTypeError(f"must be {rule}, not {text!r}")
    return value


def fraction(text: str) -> float:
    rule = "a fraction between 0 and 1 (both excluded)"
    value = _number(text, rule)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be {rule}, not {text!r}")
    return value


def lease_name(text: str) -> str:
    if NAME_RE.fullmatch(text) is None:
        raise argparse.ArgumentTypeError(
            f"invalid lease name {text[:60]!r}: use 1 to 256 characters of A-Za-z0-9._/-"
        )
    return text


def identity(text: str) -> str:
    if not 1 <= len(text) <= 256:
        raise argparse.ArgumentTypeError("must have 1 to 256 characters")
    return text


def cluster_size(text: str) -> int:
    """An odd number of members from 3: fewer survive no failure, and an even size is refused
    because it tolerates no more failures than the odd size below it while needing one more
    vote for every decision (4 members: a majority is 3, one failure tolerated, as with 3)."""
    try:
        nodes = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if nodes < 3:
        raise argparse.ArgumentTypeError(
            f"a cluster needs at least 3 members to survive the loss of one, not {nodes}"
        )
    if nodes > LOCAL_CLUSTER_NODES_MAX:
        raise argparse.ArgumentTypeError(
            f"at most {LOCAL_CLUSTER_NODES_MAX} members on one machine, not {nodes}"
        )
    if nodes % 2 == 0:
        raise argparse.ArgumentTypeError(
            f"{nodes} members tolerate no more failures than {nodes - 1} and need more votes: "
            f"use {nodes - 1} or {nodes + 1}"
        )
    return nodes


def add_endpoint_argument(parser: argparse.ArgumentParser) -> None:
    """``--endpoint``/``--endpoints URL[,URL...]`` (repeatable), read by
    ``status.endpoints_from``: the flags, else ``PAXLOCK_ENDPOINTS``, else the ports of
    ``paxlock up``."""
    parser.add_argument("--endpoint", "--endpoints", dest="endpoints", action="append",
                        metavar="URL[,URL...]",
                        help="member URLs to send to (repeatable; default $PAXLOCK_ENDPOINTS "
                        "or http://127.0.0.1:7001,7002,7003)")  # fmt: skip


def add_prefix_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prefix", default="", help="only names starting with it (default: all)")


def add_ca_argument(parser: argparse.ArgumentParser) -> None:
    """``--ca FILE`` for a command that talks to a cluster over ``https://``."""
    parser.add_argument("--ca", metavar="FILE",
                        help="PEM file of the CA that signed the cluster's certificates, to "
                        "verify https:// endpoints (default: $PAXLOCK_CA; without either, the "
                        "system's CAs); with it, the default endpoints are https://")  # fmt: skip


def ca_file(args: argparse.Namespace, environ: Mapping[str, str]) -> str | None:
    """``--ca``, else ``PAXLOCK_CA``, else None; ``ValueError`` with one sentence when the file
    cannot be used as a CA (checked before anything is sent)."""
    from paxlock.api.client.transport import client_ssl_context

    path = getattr(args, "ca", None) or environ.get("PAXLOCK_CA") or None
    if path is not None:
        client_ssl_context(path)
    return path
