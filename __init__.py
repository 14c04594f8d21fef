"""paxlock: an embeddable lock and leader-election service on Multi-Paxos.

The public face. Only the names in ``__all__`` are public. They are loaded on first use, so
that importing the pure core (``paxlock.coordinator.core``) pulls in no I/O framework.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Node": "paxlock.api.node",
    "NodeConfig": "paxlock.api.node",
    "AsyncClient": "paxlock.api.client",
    "Client": "paxlock.api.sync_client",
    "Lease": "paxlock.api.client_types",
    "Leader": "paxlock.api.client_types",
    "PaxlockError": "paxlock.api.client_errors",
    "LeaseHeld": "paxlock.api.client_errors",
    "LeaseLost": "paxlock.api.client_errors",
    "NotHolder": "paxlock.api.client_errors",
    "NotFound": "paxlock.api.client_errors",
    "Unavailable": "paxlock.api.client_errors",
    "BadRequest": "paxlock.api.client_errors",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from paxlock.api.client import AsyncClient
    from paxlock.api.client_errors import (
        BadRequest,
        LeaseHeld,
        LeaseLost,
        NotFound,
        NotHolder,
        PaxlockError,
        Unavailable,
    )
    from paxlock.api.client_types import Leader, Lease
    from paxlock.api.node import Node, NodeConfig
    from paxlock.api.sync_client import Client


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'paxlock' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
