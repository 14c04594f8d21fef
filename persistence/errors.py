"""Why a store refuses to open or to go on.

Every refusal at open leaves the database file exactly as it was found: the operator gets a
one-line message naming the data dir and the reason, and can look at the file untouched.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base of every error the persistence layer raises on purpose."""


class StoreLocked(StoreError):
    """Another live process (or another store in this one) holds the data dir's lock."""


class ForeignStore(StoreError):
    """The file belongs to another node or cluster, or is not a paxlock store at all.

    Opening another node's acceptor state would let one acceptor vote twice under two names,
    which breaks the quorum intersection that Paxos rests on.
    """


class UnknownSchema(StoreError):
    """The file was written by a newer paxlock (a schema version this code does not know)."""


class CorruptStore(StoreError):
    """The file is not a SQLite database, fails the integrity check, or a row does not decode."""


class MigrationFailed(StoreError):
    """A schema migration step failed; its transaction was rolled back, the file is as before."""


class StoreClosed(StoreError):
    """The store was closed, or failed a commit and must be reopened (see ``StoreFailed``)."""


class StoreFailed(StoreClosed):
    """A commit failed (I/O error, disk full...): nothing more is written until a reopen.

    After a failed write or fsync the state of the file is unknown to this process (the
    "fsyncgate" lesson), so the only safe continuation is a fresh open, which lets SQLite
    recover the last committed state.
    """


class StoreOverloaded(StoreError):
    """More records are waiting to be committed than ``pending_records_max``: shed load."""
