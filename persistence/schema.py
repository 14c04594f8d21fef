"""The on-disk schema and its migrations.

The schema version is the number of migration steps applied, kept in ``meta`` (the one
table every version has). Adding version 2 is one line: append its statements to
``MIGRATIONS``. A step is never edited once released: files in the field were built by it.

Values and ballots are msgpack BLOBs (see ``codec``); ordering of ballots is enforced in
Python before writing (``sqlite_store``), because msgpack bytes do not sort like ballots.
"""

from __future__ import annotations

from typing import Final, TypeAlias

Migration: TypeAlias = tuple[str, ...]
"""The SQL statements of one step, run in one transaction together with the version bump."""

APPLICATION_ID: Final = 0x50584C4B
"""``PRAGMA application_id`` ("PXLK"): tells a paxlock store from any other SQLite file."""

V1: Final[Migration] = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL) WITHOUT ROWID",
    # The acceptor's promise: one row, raised in place (a promise covers every slot).
    "CREATE TABLE promise ("
    " id INTEGER PRIMARY KEY CHECK (id = 1),"
    " ballot BLOB NOT NULL CHECK (typeof(ballot) = 'blob'))",
    # Per slot only the highest-ballot accepted proposal: all that phase 1b reports (P2c).
    "CREATE TABLE accepted ("
    " slot INTEGER PRIMARY KEY CHECK (slot >= 0),"
    " ballot BLOB NOT NULL CHECK (typeof(ballot) = 'blob'),"
    " value BLOB NOT NULL CHECK (typeof(value) = 'blob'))",
    "CREATE TABLE chosen ("
    " slot INTEGER PRIMARY KEY CHECK (slot >= 0),"
    " value BLOB NOT NULL CHECK (typeof(value) = 'blob'))",
    # The latest state-machine snapshot; rows at or below its slot are compacted away.
    "CREATE TABLE snapshot ("
    " id INTEGER PRIMARY KEY CHECK (id = 1),"
    " slot INTEGER NOT NULL CHECK (slot >= 0),"
    " data BLOB NOT NULL CHECK (typeof(data) = 'blob'))",
)

V2: Final[Migration] = (
    # Member identity (DESIGN.md §2, Membership). A version-1 store named its cluster with a
    # configured string, not the digest of a genesis configuration: the name is kept aside,
    # and the store counts as not bootstrapped (``cluster_id`` is written by bootstrap only).
    "UPDATE meta SET key = 'legacy_cluster_name' WHERE key = 'cluster_id'",
    # Its incarnation: random, like the uuid4().hex a new store gets (``opening.create``
    # writes that one after the steps, so a new store gets no row here: no node_id yet).
    "INSERT INTO meta (key, value)"
    " SELECT 'incarnation', lower(hex(randomblob(16))) FROM meta WHERE key = 'node_id'",
)

MIGRATIONS: Final[tuple[Migration, ...]] = (V1, V2)
"""Step ``i`` takes a file from version ``i`` to ``i + 1``; version 0 is an empty file."""

SCHEMA_VERSION: Final = len(MIGRATIONS)
