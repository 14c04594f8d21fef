"""The primary's side of leases, sessions and shared names (DESIGN.md §3, §7): expiry and
lock-delay timers, renewals that cost one quorum round instead of a log write, and FIFO
waiters.

Only the current primary runs a keeper, and its state is volatile: a new primary rebuilds
it from the applied ``LeaseMachine`` in ``take_office``. Pure like the rest of the core:
every entry point takes ``now`` (monotonic seconds) and returns a ``KeeperReady`` with the
commands to propose, the replies to deliver and when to call ``tick`` next.

The runtime's side of the contract (proposals, replies, confirmation rounds) is written in
``keeper_effects``; the queues of parked acquires are kept by ``waiters.Waiters``, all timers
by ``keeper_timers.Timers`` in one heap. Sessions are ``session_keeper``'s part, semaphores
and read/write locks ``shared_keeper``'s, renewals ``keeper_renewing``'s; this class takes
office for all of them and hands on what a session's end freed (one entry: every freed
lease and shared name goes to its first waiter(s), a blocked one after its lock-delay).
"""

from __future__ import annotations

import math
from typing import assert_never

from paxlock.coordinator.core import quotas
from paxlock.coordinator.core.ballot import ZERO_BALLOT, Ballot
from paxlock.coordinator.core.coord_commands import (
    AcquireShared,
    CloseSession,
    CreateGroup,
    DeleteGroup,
    ExpireSession,
    ExpireShared,
    JoinGroup,
    LeaveGroup,
    OpenSession,
    ReleaseShared,
    SessionEnded,
    UnblockShared,
    UpdateCapabilities,
)
from paxlock.coordinator.core.deadlines import Deadlines
from paxlock.coordinator.core.keeper_renewing import Renewing
from paxlock.coordinator.core.keeper_timers import Key, Kind, Timer, Timers
from paxlock.coordinator.core.keeper_effects import (
    AcquireRequest,
    KeeperConfig,
    KeeperReady,
    Propose,
    Reply,
    RequestKey,
    TooMany,
    Unavailable,
)
from paxlock.coordinator.core.lease_commands import (
    Acquire,
    AnyClientCommand,
    Expire,
    Expired,
    Lease,
    LeaseCommand,
    Office,
    Proclaim,
    Refused,
    Release,
    Released,
    Result,
    Unblock,
    Unblocked,
    invalid_reason,
)
from paxlock.coordinator.core.leases import LeaseMachine
from paxlock.coordinator.core.renewals import Renewals
from paxlock.coordinator.core.session_keeper import SessionKeeper
from paxlock.coordinator.core.shared_keeper import SharedKeeper
from paxlock.coordinator.core.waiters import Waiter, Waiters

__all__ = [  # the effect types are re-exported: callers need only this module
    "AcquireRequest", "KeeperConfig", "KeeperReady", "LeaseKeeper",
    "Propose", "Reply", "RequestKey", "TooMany", "Unavailable",
]


class LeaseKeeper(Renewing):
    def __init__(self, config: KeeperConfig | None = None) -> None:
        self.config = config or KeeperConfig()
        self._renewals = Renewals(self.config.renewals_max, self.config.confirm_timeout_s)
        """Kept across terms in office (its arrival numbers are never reused)."""
        self._reset()

    def _reset(self) -> None:
        self._machine: LeaseMachine | None = None
        self._ballot = ZERO_BALLOT
        """The ballot this keeper is in office under: stamped on every decision it makes."""
        self._deadlines: Deadlines[Key] = Deadlines()
        self._clock = Timers(self._deadlines)
        self._timers = self._clock.by_key
        self._waiters = Waiters(self.config.waiters_per_name_max, self.config.waiters_max,
                                self._deadlines, lambda wid: (Kind.WAIT, wid))  # fmt: skip
        self._reserved: dict[str, Acquire] = {}
        """Names with an Acquire proposed by this keeper and not yet applied."""
        self._sessions = SessionKeeper(lambda: self.machine, self._clock)
        self._shared = SharedKeeper(lambda: self.machine, self._clock, self._waiters,
                                    self._sessions.left)  # fmt: skip

    # -- office ---------------------------------------------------------------------------

    @property
    def in_office(self) -> bool:
        return self._machine is not None

    @property
    def machine(self) -> LeaseMachine:
        assert self._machine is not None, "the keeper runs only on the primary"
        return self._machine

    @property
    def ballot(self) -> Ballot:
        return self._ballot

    def take_office(self, machine: LeaseMachine, now: float, ballot: Ballot) -> KeeperReady:
        """Restart every lease, session and unbound permit timer at the full TTL and every
        lock-delay at its full length: the old primary's timers are unknown, so a grant may
        outlive its TTL, never end early. (Bound holds have no timer: their session's runs.)

        Called once the ``Office`` entry of ``ballot`` is applied: ``machine`` then holds
        everything chosen before this ballot, and it names ``ballot`` as the one in office."""
        assert self._machine is None, "take_office twice without step_down"
        self._machine = machine
        self._ballot = ballot
        starts: list[tuple[Key, int, float]] = []
        for lease in machine.leases():  # O(n) with no sort: 100k leases take office at once
            if lease.session is None:  # a bound lease lives as long as its session
                starts.append(((Kind.EXPIRE, lease.name), lease.token, now + lease.ttl_s))
        for block in machine.blocks():
            starts.append(((Kind.UNBLOCK, block.name), block.token, now + block.lock_delay_s))
        starts += self._sessions.take_office(now)
        starts += self._shared.take_office(now)
        self._clock.start_all(starts)
        return self._ready()

    def step_down(self) -> list[Reply]:
        """Forget everything; parked waiters and waiting renewals are answered 503."""
        gone = Unavailable("no longer primary")
        replies = [Reply(w.request.key, gone) for w in self._waiters]
        replies += [Reply(key, gone) for key in self._renewals.clear()]
        replies += [Reply(w.request.key, gone) for w in self._waiters.handoffs()]
        self._reset()
        return replies

    # -- client requests ------------------------------------------------------------------

    def acquire(self, request: AcquireRequest, now: float) -> KeeperReady:
        """Propose the Acquire when the name is free, else park it FIFO for ``wait_s``.

        With ``wait_s == 0`` a contended acquire is still proposed: the log orders it and the
        state machine answers (and remembers) the exact result. (An ``AcquireShared`` goes
        by the rules of ``shared_keeper``.)"""
        assert math.isfinite(request.wait_s) and request.wait_s >= 0, request
        command, key = request.command, request.key
        reason = invalid_reason(command)
        if reason is not None:
            refused = Refused("bad_request", command.name, message=reason)
            return self._ready(replies=[Reply(key, refused)])
        replayed = self.machine.replay(command)
        if replayed is not None:
            return self._ready(replies=[self._reply(key, command, replayed, now)])
        too_many = self.admit(command)
        if too_many is not None:
            return self._ready(replies=[Reply(key, too_many)])
        ready = KeeperReady()
        if command.request_id is not None \
                and self._waiters.supersede(request, now, ready.replies):  # fmt: skip
            return self._ready(replies=ready.replies)
        if isinstance(command, AcquireShared):
            self._shared.acquire(request, now, ready)
        elif self._free(command.name) and self._waiters.first(command.name) is None:
            self._reserved[command.name] = command
            ready.proposals.append(Propose(command, key))
        elif request.wait_s == 0:
            ready.proposals.append(Propose(command, key))
        elif self._waiters.full(command.name):
            ready.replies.append(Reply(key, Unavailable("too many waiters")))
        else:
            self._waiters.park(request, now + request.wait_s)
        return self._ready(ready.proposals, ready.replies)

    def admit(self, command: AnyClientCommand) -> TooMany | None:
        """The limits of ``quotas``, for a request about to be proposed (not a replay)."""
        return quotas.refusal(self.machine, self.config, command)

    def release_requested(self, release: Release, now: float) -> KeeperReady:
        """Direct handoff in one log round: when the holder asks to release a name that has
        waiters, the first waiter's Acquire is proposed right behind the Release (the next
        slot, pipelined), instead of after the Release is applied. Call it after proposing
        the Release. Should the Release fail, the Acquire is refused ``held`` and the waiter
        goes back to the head of its queue, unanswered."""
        name = release.name
        waiter = self._waiters.first(name)
        if waiter is None or name in self._reserved or self._waiters.handing_off(name):
            return self._ready()
        if not self._renewable(name, release.holder, release.token, release.principal):
            return self._ready()
        if waiter.deadline <= now:
            return self._ready()
        command = waiter.request.command
        assert isinstance(command, Acquire)
        self._waiters.hand_off(waiter)
        self._reserved[name] = command
        return self._ready([Propose(command, None)])

    def cancel(self, key: RequestKey, now: float) -> KeeperReady:
        """The request ``key`` went away (its client disconnected): a parked waiter leaves
        its queue, so the name is never granted to nobody. (One already proposed stands:
        its grant is remembered for a retry with the same request id.)"""
        waiter = self._waiters.cancel(key)
        ready = KeeperReady()
        command = waiter.request.command if waiter is not None else None
        if isinstance(command, AcquireShared):  # those behind it may go now
            self._shared.grant((command.kind, command.name), now, ready)
        return self._ready(ready.proposals, ready.replies)

    @property
    def waiters(self) -> int:
        return len(self._waiters)

    @property
    def renewals_waiting(self) -> int:
        return len(self._renewals)

    # -- the log --------------------------------------------------------------------------

    def on_applied(self, command: LeaseCommand, result: Result, now: float) -> KeeperReady:
        """Start and stop timers after a chosen command was applied; a name that became free
        goes straight to its first waiter(s)."""
        ready = KeeperReady()
        match command:
            case Acquire():
                self._acquire_applied(command, result, now, ready.replies)
            case Release():
                timer = self._timers.get((Kind.EXPIRE, command.name))
                # Only the grant it released: a retried Release answered from the
                # idempotency window must not stop the timer of the name's next holder.
                if isinstance(result, Released) and timer is not None \
                        and timer.token == command.token:  # fmt: skip
                    self._stop(Kind.EXPIRE, command.name)
            case Proclaim():
                pass
            case Expire():
                if isinstance(result, Expired):
                    lease_timer = self._stop(Kind.EXPIRE, command.name)
                    assert lease_timer is None or lease_timer.token == command.token
                    if result.blocked:
                        self._block(command.name, command.token, now)
            case Unblock():
                if isinstance(result, Unblocked):
                    self._stop(Kind.UNBLOCK, command.name)
            case AcquireShared() | ReleaseShared() | ExpireShared() | UnblockShared():
                self._shared.applied(command, result, now, ready)
                return self._ready(ready.proposals, ready.replies)
            case OpenSession() | CloseSession() | ExpireSession():
                ended = self._sessions.applied(command, result, now)
                if ended is not None:
                    self._hand_on(ended, now, ready)
                return self._ready(ready.proposals, ready.replies)
            case Office():
                return self._ready()
            case CreateGroup() | DeleteGroup() | JoinGroup() | LeaveGroup() \
                    | UpdateCapabilities():  # fmt: skip
                return self._ready()  # nothing timed, nobody waits
            case _:
                assert_never(command)
        ready.proposals += self._grant_next(command.name, now, ready.replies)
        return self._ready(ready.proposals, ready.replies)

    def _hand_on(self, ended: SessionEnded, now: float, ready: KeeperReady) -> None:
        """A session's end (one entry) freed these holds: each freed name goes to its first
        waiter(s), and a freed hold now in lock-delay gets its Unblock timer."""
        for freed in ended.freed:
            if freed.kind == "lease":
                timer = self._timers.get((Kind.EXPIRE, freed.name))
                if timer is not None and timer.token == freed.token:
                    self._stop(Kind.EXPIRE, freed.name)
                if freed.blocked:
                    self._block(freed.name, freed.token, now)
                ready.proposals += self._grant_next(freed.name, now, ready.replies)
            elif freed.kind != "member":
                self._shared.freed(freed, now, ready)

    def _block(self, name: str, token: int, now: float) -> None:
        """Start the lock-delay timer of the expired grant ``token`` on ``name``."""
        block = self.machine.blocked(name)
        if block is not None and block.token == token:
            self._start(Kind.UNBLOCK, block.name, block.token, now + block.lock_delay_s)

    def on_rejected(self, command: LeaseCommand, now: float) -> KeeperReady:
        """A proposal that will not enter the log: free its reservation. (Decisions need
        nothing: their timers propose them again.)"""
        ready = KeeperReady()
        if isinstance(command, AcquireShared):
            self._shared.rejected(command, now, ready)
        if not isinstance(command, Acquire):
            return self._ready(ready.proposals, ready.replies)
        if self._reserved.get(command.name) == command:
            del self._reserved[command.name]
        if (handoff := self._waiters.handoff_over(command)) is not None:
            gone = Unavailable("not accepted by the primary")
            ready.replies.append(Reply(handoff.request.key, gone))
        return self._ready(self._grant_next(command.name, now, ready.replies), ready.replies)

    def tick(self, now: float) -> KeeperReady:
        ready = KeeperReady()
        for key in self._deadlines.pop_due(now):
            self._fire(key, now, ready)
        self._renewals.give_up_late_round(now)
        return self._ready(ready.proposals, ready.replies)

    # -- internals ------------------------------------------------------------------------

    def _acquire_applied(
        self, command: Acquire, result: Result, now: float, replies: list[Reply]
    ) -> None:
        if self._reserved.get(command.name) == command:
            del self._reserved[command.name]
        handoff = self._waiters.handoff_over(command)
        if handoff is not None:
            if isinstance(result, Refused) and result.code == "held":  # the Release failed
                self._waiters.park(handoff.request, handoff.deadline, front=True)
            else:
                replies.append(self._reply(handoff.request.key, command, result, now))
        if isinstance(result, Lease) and result.session is None \
                and self.machine.verify(result.name, result.token).current:  # fmt: skip
            timer = self._timers.get((Kind.EXPIRE, result.name))
            if timer is None or timer.token != result.token:  # a grant, not a replay of it
                self._start(Kind.EXPIRE, result.name, result.token, now + result.ttl_s)
        if command.request_id is not None:  # parked retries of it get the same answer
            for waiter in self._waiters.unpark_retries(command):
                replies.append(self._reply(waiter.request.key, command, result, now))

    def _grant_next(self, name: str, now: float, replies: list[Reply]) -> list[Propose]:
        """Give a free name to its first live waiter: one proposal, no thundering herd."""
        proposals = []
        while (waiter := self._waiters.first(name)) is not None and self._free(name):
            self._waiters.unpark(waiter)
            if waiter.deadline <= now:
                replies.append(self._wait_ran_out(waiter, now))
                continue
            command = waiter.request.command
            assert isinstance(command, Acquire)
            self._reserved[name] = command
            proposals.append(Propose(command, waiter.request.key))
        return proposals

    def _fire(self, key: Key, now: float, ready: KeeperReady) -> None:
        kind, ident = key
        if kind == Kind.WAIT:
            assert isinstance(ident, int)
            waiter = self._waiters.timed_out(ident)
            if waiter is None:
                return
            if isinstance(waiter.request.command, AcquireShared):
                self._shared.wait_ran_out(waiter, now, ready)
            else:
                ready.replies.append(self._wait_ran_out(waiter, now))
            return
        token = self._clock.fired(key, now + self.config.retry_s).token  # until applied
        ballot = self._ballot
        command: LeaseCommand
        if kind == Kind.SESSION:
            assert isinstance(ident, str)
            command = ExpireSession(ident, token, ballot)
        elif isinstance(ident, int):
            command = self._shared.decision(kind, ident, ballot)
        else:
            command = (Expire(ident, token, ballot) if kind == Kind.EXPIRE
                       else Unblock(ident, token, ballot))  # fmt: skip
        ready.proposals.append(Propose(command, None))

    def _start(self, kind: int, ident: str | int, token: int, deadline: float) -> None:
        self._clock.start(kind, ident, token, deadline)

    def _stop(self, kind: int, ident: str | int) -> Timer | None:
        return self._clock.stop(kind, ident)

    def _free(self, name: str) -> bool:
        machine = self.machine
        return (
            machine.get(name) is None
            and machine.blocked(name) is None
            and name not in self._reserved
        )

    def _held(self, name: str) -> Refused:
        lease = self.machine.get(name)
        if lease is not None:
            return Refused("held", name, lease.holder, lease.token)
        block = self.machine.blocked(name)
        if block is not None:
            return Refused("held", name, None, block.token, blocked=True)
        return Refused("held", name)  # a grant to another request is on its way

    def _wait_ran_out(self, waiter: Waiter, now: float) -> Reply:
        """A waiter whose wait ran out learns who holds the name and for how long."""
        assert isinstance(waiter.request.command, Acquire)
        name = waiter.request.command.name
        return Reply(waiter.request.key, self._held(name), self.expires_in(name, now))

    def _reply(self, key: RequestKey, command: Acquire | AcquireShared, result: Result,
               now: float) -> Reply:  # fmt: skip
        if isinstance(command, AcquireShared):
            return Reply(key, result, self.reply_expires_in(command, result, now))
        machine = self.machine
        if isinstance(result, Lease) and machine.verify(result.name, result.token).current:
            return Reply(key, result, self.expires_in(result.name, now))
        if isinstance(result, Refused) and result.code == "held":
            return Reply(key, result, self.expires_in(result.name, now))
        return Reply(key, result, 0.0 if isinstance(result, Lease) else None)

    def _next_deadline(self) -> float | None:
        deadlines = [self._deadlines.next(), self._renewals.deadline()]
        return min((d for d in deadlines if d is not None), default=None)

    def _ready(
        self, proposals: list[Propose] | None = None, replies: list[Reply] | None = None
    ) -> KeeperReady:
        return KeeperReady(proposals or [], replies or [], self._next_deadline())
