"""How paxlock's own modules log, without ever configuring the program they run in.

``get_logger(name)`` is used where a module would call ``structlog.get_logger(name)``. When
the program configured structlog (``paxlock serve`` does, at start-up), events go through its
configuration. When it did not — a host program that embeds a ``paxlock.Node`` — structlog's
defaults would print every event on the host's stdout; instead, events go to the standard
library's ``logging`` under the logger ``name`` (all below ``paxlock``), where the library's
usual ``NullHandler`` keeps them silent until the host configures ``logging`` itself.
"""

from __future__ import annotations

import logging
from typing import Any

import structlog

logging.getLogger("paxlock").addHandler(logging.NullHandler())


class _Logger:
    """A structlog logger that decides at each call where its event goes."""

    __slots__ = ("_configured", "_stdlib")

    def __init__(self, name: str) -> None:
        self._configured = structlog.get_logger(name)
        self._stdlib = structlog.wrap_logger(
            logging.getLogger(name),
            processors=[
                structlog.stdlib.filter_by_level,  # nothing below the host's level is built
                structlog.contextvars.merge_contextvars,
                structlog.processors.format_exc_info,
                structlog.processors.KeyValueRenderer(key_order=["event"], sort_keys=True),
            ],
            wrapper_class=structlog.stdlib.BoundLogger,
        )  # fmt: skip

    def __getattr__(self, method: str) -> Any:
        chosen = self._configured if structlog.is_configured() else self._stdlib
        return getattr(chosen, method)


def get_logger(name: str) -> Any:
    """A logger for module ``name`` (``paxlock.node``, ``paxlock.peer``, …)."""
    assert name == "paxlock" or name.startswith("paxlock."), name
    return _Logger(name)
