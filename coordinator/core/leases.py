"""The lease state machine (DESIGN.md §3): applied identically on every node, in slot order.

It never reads a clock: expiry is a command (``Expire``) proposed by the primary's timer, so
every node agrees on *when* in the log a lease ended. Decisions written down here:

- **Revision.** One cluster-wide counter, raised by every change of a lease object: a grant,
  a proclaim, a release, an expiry. A grant's fencing token is the revision it raised, so
  tokens strictly increase across the cluster. ``Unblock`` does *not* raise it: the end of a
  lock-delay changes no lease object (the name was already free of any holder since the
  expiry, which did raise it), so observers are not woken by a change they cannot see.
- **Idempotency window** (``window``). A client command with a ``request_id`` has its first
  result remembered under ``(principal, holder, request_id)``; applying an equal command
  again returns that result unchanged, whatever happened since. One principal's flood evicts
  its own results, never another principal's. A different command under a remembered key is
  refused with ``bad_request`` rather than answered with another command's result. (Without
  ``--auth`` every client is the one principal ``""``: the total bound is then shared.)
- **Ownership.** A grant records the principal that took it (``Lease.owner``). A Release or
  Proclaim whose holder and token name the current grant but whose principal is another is
  ``forbidden``; one that names no current grant stays ``not_holder`` (so a holder that
  lost its lease learns that, whoever holds the name now).
- **Counts for the limits.** Holds per owner and the total bytes of values are kept up to
  date here, but no limit is enforced here: the primary's keeper checks them when it admits
  a request, before proposing. A limit in ``apply`` would make replicas started with
  different flags diverge; at admission a flag changes only what one primary accepts.
- **Not reentrant.** An acquire by the current holder that is not a replay is ``held``.
- **Lock-delay** follows an expiry only, never a release, and answers acquires ``held``.
- **Office.** The machine keeps the ballot of the latest applied ``Office`` entry (the
  highest: a ghost office entry of a lower ballot changes nothing). A primary decision
  (``Expire``, ``Unblock``) stamped with a lower ballot is ``Ignored(deposed=True)``: a
  deposed primary's minority-accepted proposal, recovered later by P2c(b), must not end a
  lease its successor has since renewed (DESIGN.md §2).
- **Determinism.** Snapshots list leases and blocks sorted by name and the window in
  insertion order; nothing is ever produced by iterating a set or a hash-ordered structure.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from typing import assert_never

import msgspec

from paxlock.coordinator.core.ballot import ZERO_BALLOT, Ballot
from paxlock.coordinator.core.lease_commands import (
    Acquire,
    AnyClientCommand,
    Block,
    ClientCommand,
    Expire,
    Expired,
    Ignored,
    InOffice,
    Lease,
    LeaseCommand,
    Office,
    PrimaryDecision,
    Proclaim,
    Refused,
    Release,
    Released,
    Result,
    Unblock,
    Unblocked,
    Verification,
    invalid_reason,
    subject_of,
    value_bytes,
)
from paxlock.coordinator.core.window import WINDOW_PER_HOLDER, WINDOW_TOTAL, Remembered, Window

SNAPSHOT_VERSION = 3
SNAPSHOT_VERSIONS_READ = (1, 2, 3)
"""Version 1 predates office entries: it restores with the zero office ballot. Version 2
predates principals: its leases, commands and window decode with the principal ``""``."""


class _Snapshot(msgspec.Struct, frozen=True, array_like=True):
    version: int
    revision: int
    last_token: int
    window_per_holder: int
    window_total: int
    leases: tuple[Lease, ...]
    blocks: tuple[Block, ...]
    window: tuple[Remembered, ...]
    office: Ballot = ZERO_BALLOT
    expired: tuple[bytes, ...] = ()


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(_Snapshot)


class LeaseMachine:
    """Leases, lock-delay blocks, the revision counter and the idempotency window."""

    def __init__(
        self,
        *,
        window_per_holder: int = WINDOW_PER_HOLDER,
        window_total: int = WINDOW_TOTAL,
    ) -> None:
        """The window sizes must be equal on every node (they are part of the snapshot)."""
        self._window = Window(window_per_holder, window_total)
        self._revision = 0
        self._last_token = 0
        self._office = ZERO_BALLOT
        self._leases: dict[str, Lease] = {}
        self._blocks: dict[str, Block] = {}
        self._holds_by_owner: dict[str, int] = {}
        self._value_bytes = 0
        """Bytes of the values of current leases (``value_bytes``), for the limits."""

    # -- queries ------------------------------------------------------------------------------

    @property
    def window_per_holder(self) -> int:
        return self._window.per_holder

    @property
    def window_total(self) -> int:
        return self._window.total

    @property
    def revision(self) -> int:
        return self._revision

    @property
    def office(self) -> Ballot:
        """The ballot of the latest applied ``Office`` entry: the one that governs now."""
        return self._office

    def get(self, name: str) -> Lease | None:
        return self._leases.get(name)

    def blocked(self, name: str) -> Block | None:
        """The lock-delay block on ``name``, if the name is waiting for an ``Unblock``."""
        return self._blocks.get(name)

    def list(self, prefix: str = "") -> list[Lease]:
        """Current leases whose name starts with ``prefix``, sorted by name."""
        return [self._leases[n] for n in sorted(self._leases) if n.startswith(prefix)]

    def leases(self) -> Iterator[Lease]:
        """Every current lease, unsorted: in the order of the grants since the machine was
        made or restored (so the same on every run of the same history, never by hash)."""
        return iter(self._leases.values())

    def blocks(self) -> builtins.list[Block]:
        """Every name in lock-delay, sorted by name."""
        return [self._blocks[n] for n in sorted(self._blocks)]

    def holds(self) -> int:
        return len(self._leases)

    def holds_of(self, principal: str) -> int:
        """Current leases owned by ``principal``."""
        return self._holds_by_owner.get(principal, 0)

    def value_bytes(self) -> int:
        """Total bytes of the values of current leases."""
        return self._value_bytes

    def verify(self, name: str, token: int) -> Verification:
        lease = self._leases.get(name)
        current = None if lease is None else lease.token
        return Verification(current == token, current)

    def replay(self, command: AnyClientCommand) -> Result | None:
        """What the window answers for ``command`` without applying it (None: not in it).

        Lets the primary answer a retry of an already-applied command without a log write;
        a remembered result is a past fact, so returning it is always linearizable.
        """
        if command.request_id is None:
            return None
        entry = self._window.get(command)
        if entry is None:
            if self._window.evicted(command):
                return Refused("request_expired", subject_of(command),
                               message="the result of this request_id is no longer kept: "
                                       "read the current state before acting again")  # fmt: skip
            return None
        if entry.command != command:
            return Refused(
                "bad_request",
                subject_of(command),
                message="request_id was already used for a different request",
            )
        return entry.result

    def window_size(self) -> int:
        return len(self._window)

    # -- apply --------------------------------------------------------------------------------

    def apply(self, command: LeaseCommand) -> Result:
        """Apply one chosen command; the same sequence yields the same results everywhere."""
        if isinstance(command, Office):
            return self._take_office(command)
        reason = invalid_reason(command)
        if reason is not None:
            return Refused("bad_request", subject_of(command), message=reason)
        if not isinstance(command, Acquire | Release | Proclaim | Expire | Unblock):
            return Refused("bad_request", subject_of(command), message="not supported yet")
        if isinstance(command, Expire | Unblock) and self._deposed(command):
            return Ignored(command.name, command.token, deposed=True)
        match command:
            case Acquire() | Release() | Proclaim():
                replayed = self.replay(command)
                if replayed is not None:
                    return replayed
                result = self._apply_client(command)
                if command.request_id is not None:
                    self._window.remember(command, result)
                return result
            case Expire():
                return self._expire(command)
            case Unblock():
                return self._unblock(command)
            case _:
                assert_never(command)

    def _take_office(self, command: Office) -> InOffice:
        if command.ballot <= self._office:
            return InOffice(command.ballot, current=False)
        self._office = command.ballot
        return InOffice(command.ballot, current=True)

    def _deposed(self, decision: PrimaryDecision) -> bool:
        """A decision from under a ballot older than the one in office is a ghost."""
        return decision.ballot < self._office

    def _apply_client(self, command: ClientCommand) -> Result:
        match command:
            case Acquire():
                return self._acquire(command)
            case Release():
                return self._release(command)
            case Proclaim():
                return self._proclaim(command)
            case _:
                assert_never(command)

    def _acquire(self, command: Acquire) -> Lease | Refused:
        held = self._leases.get(command.name)
        if held is not None:
            return Refused("held", command.name, held.holder, held.token)
        block = self._blocks.get(command.name)
        if block is not None:
            return Refused("held", command.name, None, block.token, blocked=True)
        token = self._bump()
        assert token > self._last_token, "fencing tokens strictly increase"
        self._last_token = token
        lease = Lease(
            command.name,
            command.holder,
            token,
            token,
            command.ttl_s,
            command.value,
            command.lock_delay_s,
            command.principal,
        )
        self._put(lease)
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

    def _release(self, command: Release) -> Released | Refused:
        lease = self._matching(command)
        if isinstance(lease, Refused):
            return lease
        self._drop(command.name)
        return Released(command.name, lease.token, self._bump())

    def _proclaim(self, command: Proclaim) -> Lease | Refused:
        lease = self._matching(command)
        if isinstance(lease, Refused):
            return lease
        updated = msgspec.structs.replace(lease, value=command.value, revision=self._bump())
        self._drop(command.name)
        self._put(updated)
        self._check_name(command.name)
        return updated

    def _expire(self, command: Expire) -> Expired | Ignored:
        lease = self._leases.get(command.name)
        if lease is None or lease.token != command.token:
            return Ignored(command.name, command.token)
        self._drop(command.name)
        revision = self._bump()
        blocked = lease.lock_delay_s > 0
        if blocked:
            self._blocks[command.name] = Block(
                lease.name, lease.holder, lease.token, revision, lease.lock_delay_s
            )
        self._check_name(command.name)
        return Expired(lease.name, lease.holder, lease.token, revision, blocked)

    def _unblock(self, command: Unblock) -> Unblocked | Ignored:
        block = self._blocks.get(command.name)
        if block is None or block.token != command.token:
            return Ignored(command.name, command.token)
        del self._blocks[command.name]
        return Unblocked(command.name, command.token, self._revision)

    def _put(self, lease: Lease) -> None:
        """Add a lease, and count it for its owner and its value's bytes."""
        assert lease.name not in self._leases
        self._leases[lease.name] = lease
        self._holds_by_owner[lease.owner] = self._holds_by_owner.get(lease.owner, 0) + 1
        self._value_bytes += value_bytes(lease.value)

    def _drop(self, name: str) -> Lease:
        """Remove a lease, and its counts."""
        lease = self._leases.pop(name)
        left = self._holds_by_owner[lease.owner] - 1
        assert left >= 0 and self._value_bytes >= value_bytes(lease.value)
        if left:
            self._holds_by_owner[lease.owner] = left
        else:
            del self._holds_by_owner[lease.owner]
        self._value_bytes -= value_bytes(lease.value)
        return lease

    def _bump(self) -> int:
        before = self._revision
        self._revision += 1
        assert self._revision > before, "the revision never goes down"
        return self._revision

    def _check_name(self, name: str) -> None:
        """Negative space: a name is held by at most one grant, and never held while blocked."""
        assert not (name in self._leases and name in self._blocks), name
        lease = self._leases.get(name)
        assert lease is None or lease.token <= lease.revision <= self._revision, lease

    # -- snapshots ------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """msgpack of the whole state; equal states give equal bytes."""
        return _encoder.encode(
            _Snapshot(
                SNAPSHOT_VERSION,
                self._revision,
                self._last_token,
                self.window_per_holder,
                self.window_total,
                tuple(self.list()),
                tuple(self.blocks()),
                self._window.entries(),
                self._office,
                self._window.expired(),
            )
        )

    @classmethod
    def restore(cls, data: bytes) -> LeaseMachine:
        snap = _decoder.decode(data)
        if snap.version not in SNAPSHOT_VERSIONS_READ:
            raise ValueError(f"unsupported lease snapshot version {snap.version}")
        machine = cls(window_per_holder=snap.window_per_holder, window_total=snap.window_total)
        machine._revision = snap.revision
        machine._last_token = snap.last_token
        machine._office = snap.office
        for lease in snap.leases:
            machine._put(lease)
        machine._blocks = {block.name: block for block in snap.blocks}
        machine._window = Window.restore(snap.window_per_holder, snap.window_total,
                                         snap.window, snap.expired)  # fmt: skip
        machine._check_restored(snap)
        return machine

    def _check_restored(self, snap: _Snapshot) -> None:
        """Paired assertions: what ``apply`` checks before writing, checked again on reading."""
        assert len(self._leases) == len(snap.leases), "one lease per name"
        assert len(self._blocks) == len(snap.blocks), "one block per name"
        assert len(self._window) == len(snap.window), "one window entry per key"
        assert self._last_token <= self._revision
        for name in [*self._leases, *self._blocks]:
            self._check_name(name)
        for lease in self._leases.values():
            assert lease.token <= self._last_token
