"""Versioned schema migrations: a file built by the first schema opens with today's code, a
new step is one line in ``MIGRATIONS``, and a failing step changes nothing."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import msgspec
import pytest

from paxlock.coordinator.core.ballot import Ballot
from paxlock.coordinator.core.messages import NOOP, AcceptedEntry, Batch
from paxlock.persistence import (
    MIGRATIONS,
    SCHEMA_VERSION,
    MigrationFailed,
    SqliteStore,
    UnknownSchema,
)
from paxlock.persistence.schema import APPLICATION_ID

NODE, CLUSTER = "n1", "c1"

V1_DDL = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL) WITHOUT ROWID",
    "CREATE TABLE promise ("
    " id INTEGER PRIMARY KEY CHECK (id = 1),"
    " ballot BLOB NOT NULL CHECK (typeof(ballot) = 'blob'))",
    "CREATE TABLE accepted ("
    " slot INTEGER PRIMARY KEY CHECK (slot >= 0),"
    " ballot BLOB NOT NULL CHECK (typeof(ballot) = 'blob'),"
    " value BLOB NOT NULL CHECK (typeof(value) = 'blob'))",
    "CREATE TABLE chosen ("
    " slot INTEGER PRIMARY KEY CHECK (slot >= 0),"
    " value BLOB NOT NULL CHECK (typeof(value) = 'blob'))",
    "CREATE TABLE snapshot ("
    " id INTEGER PRIMARY KEY CHECK (id = 1),"
    " slot INTEGER NOT NULL CHECK (slot >= 0),"
    " data BLOB NOT NULL CHECK (typeof(data) = 'blob'))",
)
"""Schema version 1 exactly as released: files in the field were built by it."""


def build_v1_file(data_dir: Path) -> None:
    """A store as the first release wrote it, built without today's code."""
    data_dir.mkdir(parents=True, exist_ok=True)
    enc = msgspec.msgpack.encode
    db = sqlite3.connect(data_dir / "paxlock.db", isolation_level=None)
    try:
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("BEGIN")
        for statement in V1_DDL:
            db.execute(statement)
        db.executemany(
            "INSERT INTO meta VALUES (?, ?)",
            [("node_id", NODE), ("cluster_id", CLUSTER), ("schema_version", "1")],
        )
        db.execute("INSERT INTO promise VALUES (1, ?)", (enc(Ballot(4, "n2")),))
        db.execute("INSERT INTO accepted VALUES (3, ?, ?)", (enc(Ballot(4, "n2")), enc(NOOP)))
        db.execute("INSERT INTO chosen VALUES (2, ?)", (enc(Batch((b"cmd",))),))
        db.execute("INSERT INTO snapshot VALUES (1, 1, x'00ff')")
        db.execute("COMMIT")
    finally:
        db.close()


def schema_version(data_dir: Path) -> int:
    with closing(sqlite3.connect(data_dir / "paxlock.db")) as db, db:
        (value,) = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(value)


def test_the_released_first_step_is_never_edited() -> None:
    assert MIGRATIONS[0] == V1_DDL


async def test_a_version_1_file_opens_with_the_current_code(tmp_path: Path) -> None:
    build_v1_file(tmp_path)
    async with await SqliteStore.open(tmp_path, node_id=NODE, cluster_id=CLUSTER) as store:
        loaded = store.load()
    assert loaded.durable.promised == Ballot(4, "n2")
    assert loaded.durable.accepted == {3: AcceptedEntry(3, Ballot(4, "n2"), NOOP)}
    assert loaded.durable.chosen == {2: Batch((b"cmd",))}
    assert (loaded.snapshot_slot, loaded.snapshot) == (1, b"\x00\xff")
    assert schema_version(tmp_path) == SCHEMA_VERSION


NEXT = (*MIGRATIONS, ("ALTER TABLE chosen ADD COLUMN learned_from TEXT",))
"""A step after the latest one, as the next release would add it."""


async def test_a_new_step_migrates_an_old_file_once(tmp_path: Path) -> None:
    build_v1_file(tmp_path)
    async with await SqliteStore.open(
        tmp_path, node_id=NODE, cluster_id=CLUSTER, migrations=NEXT
    ) as store:
        assert store.load().durable.chosen == {2: Batch((b"cmd",))}
    assert schema_version(tmp_path) == len(NEXT)
    with closing(sqlite3.connect(tmp_path / "paxlock.db")) as db, db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(chosen)")]
    assert columns == ["slot", "value", "learned_from"]
    async with await SqliteStore.open(tmp_path, node_id=NODE, cluster_id=CLUSTER, migrations=NEXT):
        pass  # already at version 2: nothing to run (ALTER would fail if run twice)
    # ...and the code that only knows the versions before now refuses the file.
    with pytest.raises(UnknownSchema, match=f"schema version {len(NEXT)} is newer"):
        await SqliteStore.open(tmp_path, node_id=NODE, cluster_id=CLUSTER)


async def test_a_new_store_is_created_at_the_latest_version(tmp_path: Path) -> None:
    async with await SqliteStore.open(tmp_path, node_id=NODE, cluster_id=CLUSTER, migrations=NEXT):
        pass
    assert schema_version(tmp_path) == len(NEXT)


async def test_a_failing_step_is_rolled_back_whole(tmp_path: Path) -> None:
    build_v1_file(tmp_path)
    broken = (MIGRATIONS[0], ("CREATE TABLE extra (x)", "THIS IS NOT SQL"))
    with pytest.raises(MigrationFailed, match="schema version 2 failed and was rolled back"):
        await SqliteStore.open(tmp_path, node_id=NODE, cluster_id=CLUSTER, migrations=broken)
    assert schema_version(tmp_path) == 1
    with closing(sqlite3.connect(tmp_path / "paxlock.db")) as db, db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert "extra" not in tables
    async with await SqliteStore.open(tmp_path, node_id=NODE, cluster_id=CLUSTER) as store:
        assert store.load().durable.promised == Ballot(4, "n2")
