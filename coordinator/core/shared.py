"""Semaphores and read/write locks of the state machine ("shared" names, DESIGN.md §7).

A shared name holds several grants at once, each a ``Permit`` with its own fencing token,
and, after an expiry with lock-delay, one ``Block`` per expired hold. Rules written down:

- **Grant rule.** Semaphore: holds plus blocks < limit. Read/write lock: a read needs no
  write hold or write block; a write needs no hold and no block at all. A refusal is
  ``held`` naming the oldest incompatible grant (a block: ``holder`` None, ``blocked``).
- **Limit.** The first grant on a free name fixes it; another limit while anything holds or
  blocks the name is ``limit_mismatch``. A name with nothing left is forgotten entirely.
- **Not reentrant.** A holder already holding the name is refused ``held``.
- **Ownership and binding** as for leases: release by the owning principal only
  (``forbidden``); a bound hold has no timer, so an ``ExpireShared`` naming one is Ignored.
- ``verify``: current when ``token`` is one of the name's holds; the answer's token is then
  ``token``, else the newest hold's (None when none).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from paxlock.coordinator.core.coord_commands import (
    AcquireShared,
    ExpireShared,
    Permit,
    ReleaseShared,
    Session,
    SharedExpired,
    SharedKind,
    SharedMode,
    SharedName,
    SharedReleased,
    SharedUnblocked,
    UnblockShared,
)
from paxlock.coordinator.core.lease_commands import Block, Ignored, Refused, Verification
from paxlock.coordinator.core.ledger import Ledger
from paxlock.coordinator.core.sessions import BoundHold, Sessions

Key = tuple[SharedKind, str]


@dataclass(slots=True)
class _Name:
    limit: int
    holds: dict[int, Permit] = field(default_factory=dict)
    """By token, in token order."""
    blocks: dict[int, tuple[Block, SharedMode]] = field(default_factory=dict)
    """By token of the expired hold, with that hold's mode: in token order, whatever order
    the holds expired in, so a restored snapshot encodes as the machine that applied it."""

    def view(self, key: Key) -> SharedName:
        blocks = tuple(block for block, _ in self.blocks.values())
        return SharedName(key[0], key[1], self.limit, tuple(self.holds.values()), blocks)


def _compatible(kind: SharedKind, mode: SharedMode, other: SharedMode) -> bool:
    """Whether a new ``mode`` hold may sit beside an existing ``other`` one (rwlocks)."""
    return kind == "semaphore" or (mode == "read" and other == "read")


class SharedNames:
    def __init__(self, ledger: Ledger, sessions: Sessions) -> None:
        self._ledger = ledger
        self._sessions = sessions
        self._names: dict[Key, _Name] = {}

    # -- queries --------------------------------------------------------------------------

    def get(self, kind: SharedKind, name: str) -> SharedName | None:
        entry = self._names.get((kind, name))
        return None if entry is None else entry.view((kind, name))

    def listing(self, kind: SharedKind | None = None, prefix: str = "") -> list[SharedName]:
        """Shared names of ``kind`` (all kinds: None) starting with ``prefix``, sorted."""
        return [self._names[key].view(key) for key in sorted(self._names)
                if (kind is None or key[0] == kind) and key[1].startswith(prefix)]  # fmt: skip

    def hold(self, kind: SharedKind, name: str, token: int) -> Permit | None:
        entry = self._names.get((kind, name))
        return None if entry is None else entry.holds.get(token)

    def holds(self) -> int:
        return sum(len(entry.holds) for entry in self._names.values())

    def verify(self, kind: SharedKind, name: str, token: int) -> Verification:
        entry = self._names.get((kind, name))
        if entry is None or not entry.holds:
            return Verification(False, None)
        if token in entry.holds:
            return Verification(True, token)
        return Verification(False, next(reversed(entry.holds)))

    def refusal(self, command: AcquireShared) -> Refused | None:
        """Why the machine would refuse ``command`` now (session aside), or None."""
        entry = self._names.get((command.kind, command.name))
        if entry is None:
            return None
        if command.kind == "semaphore" and command.limit != entry.limit:
            return Refused("limit_mismatch", command.name, message=f"semaphore {command.name}"
                           f" has limit {entry.limit}, not {command.limit}")  # fmt: skip
        for permit in entry.holds.values():
            if permit.holder == command.holder:
                return Refused("held", command.name, permit.holder, permit.token,
                               message="already held by this holder (not reentrant)")  # fmt: skip
        full = command.kind == "semaphore" and len(entry.holds) + len(entry.blocks) >= command.limit
        oldest: Refused | None = None
        for permit in entry.holds.values():
            if full or not _compatible(command.kind, command.mode, permit.mode):
                oldest = Refused("held", command.name, permit.holder, permit.token)
                break
        for block, mode in entry.blocks.values():
            if (full or not _compatible(command.kind, command.mode, mode)) \
                    and (oldest is None or block.token < (oldest.token or 0)):  # fmt: skip
                return Refused("held", command.name, None, block.token, blocked=True)
        return oldest

    # -- changes --------------------------------------------------------------------------

    def acquire(self, command: AcquireShared, session: Session | None) -> Permit | Refused:
        refused = self.refusal(command)
        if refused is not None:
            return refused
        key = (command.kind, command.name)
        entry = self._names.setdefault(key, _Name(command.limit))
        token = self._ledger.grant()
        ttl_s = command.ttl_s if session is None else session.ttl_s
        permit = Permit(command.kind, command.name, command.holder, token, token, command.mode,
                        command.limit, ttl_s, None if session is None else session.id,
                        command.lock_delay_s, command.principal)  # fmt: skip
        entry.holds[token] = permit
        self._ledger.add_hold(permit.owner)
        if session is not None:
            self._sessions.bind(session.id, token, (command.kind, command.name, command.holder))
        self._check(key)
        holders = tuple(p.holder for p in entry.holds.values())
        return msgspec.structs.replace(permit, holders=holders)

    def release(self, command: ReleaseShared) -> SharedReleased | Refused:
        entry = self._names.get((command.kind, command.name))
        permit = None if entry is None else entry.holds.get(command.token)
        if permit is None or permit.holder != command.holder:
            mine = None if entry is None else next(
                (p for p in entry.holds.values() if p.holder == command.holder), None)
            return Refused("not_holder", command.name, None if mine is None else mine.holder,
                           None if mine is None else mine.token)  # fmt: skip
        if permit.owner != command.principal:
            return Refused("forbidden", command.name, message=f"the hold on {command.name} "
                           "belongs to another principal")  # fmt: skip
        if permit.session is not None:
            self._sessions.unbind(permit.session, permit.token)
        revision = self._ledger.bump()
        self.free(command.kind, command.name, command.token, revision, expired=False)
        return SharedReleased(command.kind, command.name, command.holder, command.token, revision)

    def expire(self, command: ExpireShared) -> SharedExpired | Ignored:
        permit = self.hold(command.kind, command.name, command.token)
        if permit is None or permit.holder != command.holder or permit.session is not None:
            return Ignored(command.name, command.token)
        revision = self._ledger.bump()
        blocked = self.free(command.kind, command.name, command.token, revision, expired=True)
        return SharedExpired(command.kind, command.name, command.holder, command.token,
                             revision, blocked)  # fmt: skip

    def unblock(self, command: UnblockShared) -> SharedUnblocked | Ignored:
        key = (command.kind, command.name)
        entry = self._names.get(key)
        if entry is None or command.token not in entry.blocks:
            return Ignored(command.name, command.token)
        del entry.blocks[command.token]
        self._forget_if_empty(key)
        return SharedUnblocked(command.kind, command.name, command.token, self._ledger.revision)

    def free(self, kind: SharedKind, name: str, token: int, revision: int, *,
             expired: bool) -> bool:  # fmt: skip
        """End hold ``token`` at ``revision`` (already raised by the caller; a session's end
        unbinds it itself); True when it left a lock-delay block (only after an expiry)."""
        key = (kind, name)
        entry = self._names[key]
        permit = entry.holds.pop(token)
        self._ledger.drop_hold(permit.owner)
        blocked = expired and permit.lock_delay_s > 0
        if blocked:
            block = Block(name, permit.holder, token, revision, permit.lock_delay_s)
            entry.blocks[token] = (block, permit.mode)
            if any(other > token for other in entry.blocks):  # expired out of token order
                entry.blocks = dict(sorted(entry.blocks.items()))
        self._forget_if_empty(key)
        return blocked

    def _forget_if_empty(self, key: Key) -> None:
        entry = self._names[key]
        if not entry.holds and not entry.blocks:
            del self._names[key]
        else:
            self._check(key)

    def _check(self, key: Key) -> None:
        """Negative space: never more grants than the limit, never a writer beside anyone."""
        entry = self._names[key]
        modes = [p.mode for p in entry.holds.values()] + [m for _, m in entry.blocks.values()]
        assert modes, key
        if key[0] == "semaphore":
            assert len(modes) <= entry.limit and set(modes) == {"permit"}, (key, modes)
        else:
            assert entry.limit == 0 and ("write" not in modes or len(modes) == 1), (key, modes)
        assert all(p.token <= self._ledger.last_token for p in entry.holds.values())

    # -- snapshots ------------------------------------------------------------------------

    def snapshot(self) -> tuple[tuple[SharedName, tuple[SharedMode, ...]], ...]:
        """Every name sorted by (kind, name), with the modes of its blocks."""
        return tuple((self._names[key].view(key),
                      tuple(mode for _, mode in self._names[key].blocks.values()))
                     for key in sorted(self._names))  # fmt: skip

    def restore(self, names: tuple[tuple[SharedName, tuple[SharedMode, ...]], ...]) -> None:
        for view, modes in names:
            key = (view.kind, view.name)
            assert key not in self._names and len(modes) == len(view.blocked), key
            entry = self._names[key] = _Name(view.limit)
            for permit in sorted(view.holds, key=lambda p: p.token):
                entry.holds[permit.token] = permit
                self._ledger.add_hold(permit.owner)
            for block, mode in sorted(zip(view.blocked, modes), key=lambda b: b[0].token):
                entry.blocks[block.token] = (block, mode)
            self._check(key)

    def bound(self) -> list[tuple[str, int, BoundHold]]:
        """Every bound hold as (session, token, (kind, name, holder)), for a restore."""
        return [(p.session, p.token, (p.kind, p.name, p.holder))
                for entry in self._names.values() for p in entry.holds.values()
                if p.session is not None]  # fmt: skip
