"""The snapshot format of the state machine (``leases.LeaseMachine``): one msgpack array,
every list sorted, so that equal states give equal bytes on every member.

Version 4 adds sessions, shared names (with the modes of their blocks) and groups as
trailing fields: versions 1-3 decode with them empty. Version 1 predates office entries (it
restores with the zero office ballot); version 2 predates principals (its leases, commands
and window decode with the principal ``""``)."""

from __future__ import annotations

import msgspec

from paxlock.coordinator.core.ballot import ZERO_BALLOT, Ballot
from paxlock.coordinator.core.coord_commands import Group, Session, SharedMode, SharedName
from paxlock.coordinator.core.lease_commands import Block, Lease
from paxlock.coordinator.core.window import Remembered

SNAPSHOT_VERSION = 4
SNAPSHOT_VERSIONS_READ = (1, 2, 3, 4)


class Snapshot(msgspec.Struct, frozen=True, array_like=True):
    version: int
    revision: int
    last_token: int
    window_per_holder: int
    window_total: int
    leases: tuple[Lease, ...]
    """Sorted by name."""
    blocks: tuple[Block, ...]
    """Sorted by name."""
    window: tuple[Remembered, ...]
    """In insertion order."""
    office: Ballot = ZERO_BALLOT
    expired: tuple[bytes, ...] = ()
    sessions: tuple[Session, ...] = ()
    """In token order."""
    shared: tuple[tuple[SharedName, tuple[SharedMode, ...]], ...] = ()
    """Sorted by (kind, name); each with the modes of its blocks."""
    groups: tuple[Group, ...] = ()
    """Sorted by name."""


encode_snapshot = msgspec.msgpack.Encoder().encode
_decoder = msgspec.msgpack.Decoder(Snapshot)


def decode_snapshot(data: bytes) -> Snapshot:
    snap = _decoder.decode(data)
    if snap.version not in SNAPSHOT_VERSIONS_READ:
        raise ValueError(f"unsupported lease snapshot version {snap.version}")
    return snap
