"""The SDK's one clock, for lease windows and deadlines alike.

A held grant is trusted until ``t_sent + ttl × (1 − margin)`` (``keepalive``), and the servers
that could expire it keep running while this host is suspended (a laptop lid, a paused VM).
``time.monotonic()`` is ``CLOCK_MONOTONIC`` on Linux, which stops during a suspend: on resume
the client would still trust a grant the cluster has long given to someone else. On Linux the
SDK reads ``CLOCK_BOOTTIME`` instead (monotonic too, but counting the suspend); where that
clock does not exist it falls back to ``time.monotonic()``.
"""

from __future__ import annotations

import time

__all__ = ["now"]


def now() -> float:
    """Seconds on a clock that never goes back and, on Linux, keeps counting while the host
    is suspended (``CLOCK_BOOTTIME``); ``time.monotonic()`` elsewhere. Only differences
    between two readings mean anything."""
    boottime = getattr(time, "CLOCK_BOOTTIME", None)
    if boottime is None:
        return time.monotonic()
    return time.clock_gettime(boottime)
