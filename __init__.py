"""paxlock: an embeddable lock and leader-election service on Multi-Paxos.

The public face. Only the names in ``__all__`` are public. They are loaded on first use, so
that importing the pure core (``paxlock.coordinator.core``) pulls in no I/O framework.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Node": "paxlock.api.server.node",
    "NodeConfig": "paxlock.api.server.node",
    "AsyncClient": "paxlock.api.client.aio",
    "Client": "paxlock.api.client.sync",
    "Lease": "paxlock.api.client.types",
    "Leader": "paxlock.api.client.types",
    "PaxlockError": "paxlock.api.client.errors",
    "LeaseHeld": "paxlock.api.client.errors",
    "LeaseLost": "paxlock.api.client.errors",
    "NotHolder": "paxlock.api.client.errors",
    "NotFound": "paxlock.api.client.errors",
    "RequestExpired": "paxlock.api.client.errors",
    "Unavailable": "paxlock.api.client.errors",
    "BadRequest": "paxlock.api.client.errors",
    "Unauthenticated": "paxlock.api.client.errors",
    "Forbidden": "paxlock.api.client.errors",
    "TooMany": "paxlock.api.client.errors",
    "Exists": "paxlock.api.client.errors",
    "NotEmpty": "paxlock.api.client.errors",
    "NotMember": "paxlock.api.client.errors",
    "LimitMismatch": "paxlock.api.client.errors",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from paxlock.api.client.aio import AsyncClient
    from paxlock.api.client.errors import (
        BadRequest,
        Exists,
        Forbidden,
        LeaseHeld,
        LeaseLost,
        LimitMismatch,
        NotEmpty,
        NotFound,
        NotHolder,
        NotMember,
        PaxlockError,
        RequestExpired,
        TooMany,
        Unauthenticated,
        Unavailable,
    )
    from paxlock.api.client.types import Leader, Lease
    from paxlock.api.server.node import Node, NodeConfig
    from paxlock.api.client.sync import Client


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'paxlock' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
