"""The leases and lease-name lock-delay blocks of the state machine (DESIGN.md §3); the rules
are written down in ``leases``, which drives this table with the other sub-machines."""

from __future__ import annotations

from collections.abc import Iterator

import msgspec

from paxlock.coordinator.core.coord_commands import Session
from paxlock.coordinator.core.lease_commands import (
    Acquire,
    Block,
    Expire,
    Expired,
    Ignored,
    Lease,
    Proclaim,
    Refused,
    Release,
    Released,
    Unblock,
    Unblocked,
    Verification,
    value_bytes,
)
from paxlock.coordinator.core.ledger import Ledger
from paxlock.coordinator.core.sessions import BoundHold, Sessions


class LeaseTable:
    def __init__(self, ledger: Ledger, sessions: Sessions) -> None:
        self._ledger = ledger
        self._sessions = sessions
        self._leases: dict[str, Lease] = {}
        """In grant order (since made or restored)."""
        self._blocks: dict[str, Block] = {}

    # -- queries --------------------------------------------------------------------------

    def get(self, name: str) -> Lease | None:
        return self._leases.get(name)

    def blocked(self, name: str) -> Block | None:
        return self._blocks.get(name)

    def listing(self, prefix: str = "") -> list[Lease]:
        return [self._leases[n] for n in sorted(self._leases) if n.startswith(prefix)]

    def leases(self) -> Iterator[Lease]:
        return iter(self._leases.values())

    def blocks(self) -> list[Block]:
        return [self._blocks[n] for n in sorted(self._blocks)]

    def verify(self, name: str, token: int) -> Verification:
        lease = self._leases.get(name)
        current = None if lease is None else lease.token
        return Verification(current == token, current)

    # -- changes --------------------------------------------------------------------------

    def acquire(self, command: Acquire, session: Session | None) -> Lease | Refused:
        """``session`` (when bound) was checked by the caller."""
        held = self._leases.get(command.name)
        if held is not None:
            return Refused("held", command.name, held.holder, held.token)
        block = self._blocks.get(command.name)
        if block is not None:
            return Refused("held", command.name, None, block.token, blocked=True)
        token = self._ledger.grant()
        ttl_s = command.ttl_s if session is None else session.ttl_s
        lease = Lease(command.name, command.holder, token, token, ttl_s, command.value,
                      command.lock_delay_s, command.principal,
                      None if session is None else session.id)  # fmt: skip
        self._put(lease)
        if session is not None:
            self._sessions.bind(session.id, token, ("lease", command.name, command.holder))
        self._check_name(command.name)
        return lease

    def _matching(self, command: Release | Proclaim) -> Lease | Refused:
        name = command.name
        lease = self._leases.get(name)
        if lease is None:
            return Refused("not_holder", name)
        if lease.holder != command.holder or lease.token != command.token:
            return Refused("not_holder", name, lease.holder, lease.token)
        if lease.owner != command.principal:
            return Refused("forbidden", name, message=f"the lease on {name} belongs to "
                           "another principal")  # fmt: skip
        return lease

    def release(self, command: Release) -> Released | Refused:
        lease = self._matching(command)
        if isinstance(lease, Refused):
            return lease
        if lease.session is not None:
            self._sessions.unbind(lease.session, lease.token)
        self._drop(command.name)
        return Released(command.name, lease.token, self._ledger.bump())

    def proclaim(self, command: Proclaim) -> Lease | Refused:
        lease = self._matching(command)
        if isinstance(lease, Refused):
            return lease
        revision = self._ledger.bump()
        updated = msgspec.structs.replace(lease, value=command.value, revision=revision)
        self._drop(command.name)
        self._put(updated)
        self._check_name(command.name)
        return updated

    def expire(self, command: Expire) -> Expired | Ignored:
        """A bound lease has no timer: an Expire naming it is Ignored."""
        lease = self._leases.get(command.name)
        if lease is None or lease.token != command.token or lease.session is not None:
            return Ignored(command.name, command.token)
        revision = self._ledger.bump()
        blocked = self.free(lease.name, lease.token, revision, expired=True)
        return Expired(lease.name, lease.holder, lease.token, revision, blocked)

    def unblock(self, command: Unblock) -> Unblocked | Ignored:
        block = self._blocks.get(command.name)
        if block is None or block.token != command.token:
            return Ignored(command.name, command.token)
        del self._blocks[command.name]
        return Unblocked(command.name, command.token, self._ledger.revision)

    def free(self, name: str, token: int, revision: int, *, expired: bool) -> bool:
        """End grant ``token`` at ``revision`` (raised by the caller, who unbound it); True
        when it left a lock-delay block (only after an expiry)."""
        lease = self._drop(name)
        assert lease.token == token, (lease, token)
        blocked = expired and lease.lock_delay_s > 0
        if blocked:
            self._blocks[name] = Block(name, lease.holder, token, revision, lease.lock_delay_s)
        self._check_name(name)
        return blocked

    def _put(self, lease: Lease) -> None:
        """Add a lease, and count it for its owner and its value's bytes."""
        assert lease.name not in self._leases
        self._leases[lease.name] = lease
        self._ledger.add_hold(lease.owner, value_bytes(lease.value))

    def _drop(self, name: str) -> Lease:
        """Remove a lease, and its counts."""
        lease = self._leases.pop(name)
        self._ledger.drop_hold(lease.owner, value_bytes(lease.value))
        return lease

    def _check_name(self, name: str) -> None:
        """Negative space: a name is held by at most one grant, and never held while blocked."""
        assert not (name in self._leases and name in self._blocks), name
        lease = self._leases.get(name)
        assert lease is None or lease.token <= lease.revision <= self._ledger.revision, lease

    # -- snapshots ------------------------------------------------------------------------

    def restore(self, leases: tuple[Lease, ...], blocks: tuple[Block, ...]) -> None:
        for lease in leases:
            self._put(lease)
        self._blocks = {block.name: block for block in blocks}
        assert len(self._leases) == len(leases), "one lease per name"
        assert len(self._blocks) == len(blocks), "one block per name"
        for name in [*self._leases, *self._blocks]:
            self._check_name(name)
        for lease in self._leases.values():
            assert lease.token <= self._ledger.last_token

    def bound(self) -> list[tuple[str, int, BoundHold]]:
        """Every bound lease as (session, token, ("lease", name, holder)), for a restore."""
        return [(lease.session, lease.token, ("lease", lease.name, lease.holder))
                for lease in self._leases.values() if lease.session is not None]  # fmt: skip
