"""The per-principal and total limits of the replicated state (DESIGN.md §8), checked by the
primary when it admits a client request, before anything is proposed.

Why here and not in ``LeaseMachine.apply``: ``apply`` runs on every member, and a limit
there would make the result of a chosen command depend on each member's flags — members
started with different limits would diverge. At admission a flag changes only what one
primary accepts; the log stays the one truth. The price is precision: commands already
admitted (in flight, or parked waiting for a name) are not counted, so a count may pass its
limit by that many (bounded by the waiter and in-flight bounds).
"""

from __future__ import annotations

from paxlock.coordinator.core.coord_commands import (
    AcquireShared,
    JoinGroup,
    UpdateCapabilities,
)
from paxlock.coordinator.core.keeper_effects import KeeperConfig, TooMany
from paxlock.coordinator.core.lease_commands import (
    Acquire,
    AnyClientCommand,
    Proclaim,
    value_bytes,
)
from paxlock.coordinator.core.leases import LeaseMachine


def refusal(machine: LeaseMachine, config: KeeperConfig, command: AnyClientCommand
            ) -> TooMany | None:  # fmt: skip
    """Why admitting ``command`` would pass a limit, or None. Only growth is refused: a
    release, or a proclaim that does not grow the total bytes, is always admitted.

    A hold is a lease, a permit, a read/write hold or a group membership (sessions are not
    counted: a session holds nothing by itself). Member capabilities count as value bytes."""
    if isinstance(command, Acquire | AcquireShared | JoinGroup):
        held = machine.holds_of(command.principal)
        if held >= config.holds_per_principal_max:
            who = f"principal {command.principal!r}" if command.principal else "this principal"
            return TooMany("holds_per_principal", f"{who} holds {held} leases, permits and "
                           f"memberships, the limit (--max-holds-per-principal "
                           f"{config.holds_per_principal_max})")  # fmt: skip
        if machine.holds() >= config.holds_max:
            return TooMany("holds", f"the cluster holds {machine.holds()} leases, permits and "
                           f"memberships, the limit (--max-holds {config.holds_max})")  # fmt: skip
        if isinstance(command, AcquireShared):
            return None
        grows = (value_bytes(command.value) if isinstance(command, Acquire)
                 else len(command.capabilities))  # fmt: skip
    elif isinstance(command, Proclaim):
        lease = machine.get(command.name)
        if lease is None or lease.owner != command.principal:
            return None  # the log refuses it (not_holder, forbidden): no limit to speak of
        grows = value_bytes(command.value) - value_bytes(lease.value)
    elif isinstance(command, UpdateCapabilities):
        group = machine.group(command.group)
        member = next((m for m in group.members if m.member == command.member), None) \
            if group is not None else None  # fmt: skip
        if member is None or member.owner != command.principal:
            return None  # the log refuses it
        grows = len(command.capabilities) - len(member.capabilities)
    else:
        return None
    if grows > 0 and machine.value_bytes() + grows > config.value_bytes_max:
        return TooMany("value_bytes", f"the values of current leases and members take "
                       f"{machine.value_bytes()} bytes; {grows} more would pass the limit "
                       f"(--max-value-bytes {config.value_bytes_max})")  # fmt: skip
    return None
