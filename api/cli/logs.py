"""structlog configuration for the ``paxlock`` program (never called by library code)."""

from __future__ import annotations

import logging
import sys

import structlog


def configure_logging(level: str, *, node: str) -> None:
    """JSON lines on stderr, bound with the node id; ``merge_contextvars`` first so that
    callers can bind ballot and slot around a block of work."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(node=node)
