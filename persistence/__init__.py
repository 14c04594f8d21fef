"""Durable storage: acceptor state, chosen log and snapshots on SQLite (aiosqlite)."""

from __future__ import annotations

from paxlock.persistence.errors import (
    CorruptStore,
    ForeignStore,
    MigrationFailed,
    StoreClosed,
    StoreError,
    StoreFailed,
    StoreLocked,
    StoreOverloaded,
    UnknownSchema,
)
from paxlock.persistence.schema import MIGRATIONS, SCHEMA_VERSION, Migration
from paxlock.persistence.sqlite_store import SqliteStore, StoreStats
from paxlock.persistence.state import LoadedState

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "CorruptStore",
    "ForeignStore",
    "LoadedState",
    "Migration",
    "MigrationFailed",
    "SqliteStore",
    "StoreClosed",
    "StoreError",
    "StoreFailed",
    "StoreLocked",
    "StoreOverloaded",
    "StoreStats",
    "UnknownSchema",
]
