"""What the lease commands (``lease_commands``) and the coordination commands
(``coord_commands``) share: the name pattern, the size bounds, duration widening and the
two plain answer types. A module of its own so that ``lease_commands`` can build its unions
from ``coord_commands`` without an import cycle; ``lease_commands`` re-exports all of it."""

from __future__ import annotations

import math
import re
from typing import NamedTuple

import msgspec
from msgspec.structs import force_setattr

NAME_RE = re.compile(r"[A-Za-z0-9._/-]{1,256}")
"""The name pattern of DESIGN.md §4 (leases, shared names, groups and members)."""
VALUE_BYTES_MAX = 4096
HOLDER_CHARS_MAX = 256
REQUEST_ID_CHARS_MAX = 256
GROUP_LEADER_PREFIX = "group:"
"""A group's leader is an election on the lease name ``group:<group>``. ``:`` matches no
client name, so only the group routes can campaign on it."""


def widen(struct: msgspec.Struct, *fields: str) -> None:
    """Integer durations become floats, so that equal commands encode to equal bytes."""
    for field in fields:
        value = getattr(struct, field)
        if isinstance(value, int) and not isinstance(value, bool):
            force_setattr(struct, field, float(value))


def duration_ok(seconds: float, *, positive: bool) -> bool:
    return math.isfinite(seconds) and (seconds > 0 if positive else seconds >= 0)


def leader_name(group: str) -> str:
    """The lease name of ``group``'s leader election."""
    return f"{GROUP_LEADER_PREFIX}{group}"


def group_of(lease_name: str) -> str | None:
    """The group whose leader election ``lease_name`` is, or None for a client name."""
    if lease_name.startswith(GROUP_LEADER_PREFIX):
        return lease_name[len(GROUP_LEADER_PREFIX):]
    return None


def lease_name_ok(name: str) -> bool:
    """A client name, or the leader election of a well-formed group name."""
    group = group_of(name)
    return NAME_RE.fullmatch(name if group is None else group) is not None


class Block(msgspec.Struct, frozen=True):
    """A name in lock-delay after the expiry of grant ``token`` of ``holder`` (a lease name
    has at most one; a shared name one per expired hold)."""

    name: str
    holder: str
    token: int
    revision: int
    lock_delay_s: float

    def __post_init__(self) -> None:
        widen(self, "lock_delay_s")


class Verification(NamedTuple):
    """Answer to a resource server's fencing check (Chubby's CheckSequencer)."""

    current: bool
    token: int | None
    """The current grant's token, None when the name is free (for a shared name: ``token``
    itself when it is one of the current holds, else the newest hold's, None when none)."""
