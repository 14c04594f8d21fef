"""The primary's side of semaphores and read/write locks (DESIGN.md §7): the timers of unbound
holds and of the lock-delays after their expiry, and FIFO grants from the waiters' queues.

A part of ``LeaseKeeper``, sharing its ``Timers`` and ``Waiters`` (queue key ``(kind,
name)``). Decisions written down here:

- **FIFO without overtaking.** A newcomer is proposed at once only when nobody waits on its
  name and the machine would grant it (counting the acquires this keeper proposed and that
  are not applied yet). Otherwise it parks, or with ``wait == 0`` it is answered ``held`` at
  once with no log write when someone waits (so a reader arriving after a waiting writer
  never overtakes it); with nobody waiting the log answers it, as for a lease.
- **Grants from the head.** When holds end, waiters are proposed from the head while each is
  compatible: several readers at once, a writer only alone, a semaphore up to its limit. The
  first that must wait stops the walk (a writer at the head holds back the readers behind).
- **Limit mismatch** is the log's answer: a newcomer whose limit differs from the one in
  force is proposed at once (it cannot be granted, so it overtakes no one).
- **The grant rule is the machine's** (``shared_refusal``); the keeper adds only the
  acquires it has in flight (a semaphore's count, a writer alone, the first fixes a limit),
  so that an acquire proposed to wait no longer is never refused ``held`` by the log.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from paxlock.coordinator.core.ballot import Ballot
from paxlock.coordinator.core.coord_commands import (
    AcquireShared,
    ExpireShared,
    Freed,
    Permit,
    ReleaseShared,
    SharedExpired,
    SharedKind,
    SharedName,
    SharedReleased,
    SharedUnblocked,
    UnblockShared,
)
from paxlock.coordinator.core.keeper_effects import (
    AcquireRequest,
    KeeperReady,
    Propose,
    Reply,
    Unavailable,
)
from paxlock.coordinator.core.keeper_timers import Key, Kind, Timers
from paxlock.coordinator.core.lease_commands import Refused, Result
from paxlock.coordinator.core.leases import LeaseMachine
from paxlock.coordinator.core.waiters import Waiter, Waiters

Verdict = Literal["grant", "wait", "refuse"]
SHARED_KINDS: tuple[SharedKind, ...] = ("semaphore", "rwlock")


class SharedKeeper:
    def __init__(self, machine: Callable[[], LeaseMachine], clock: Timers,
                 waiters: Waiters[Key], session_left: Callable[[str, float], float | None]
                 ) -> None:  # fmt: skip
        """``machine``: the applied machine of the keeper in office; ``session_left``: seconds
        left of a session (a bound hold lives as long as its session)."""
        self._machine = machine
        self._clock = clock
        self._waiters = waiters
        self._session_left = session_left
        self._timed: dict[int, tuple[SharedKind, str, str]] = {}
        """Token -> (kind, name, holder) of every unbound hold (its timer keyed by token)."""
        self._blocks: dict[int, tuple[SharedKind, str]] = {}
        """Token -> (kind, name) of every lock-delay running."""
        self._reserved: dict[tuple[SharedKind, str], list[AcquireShared]] = {}
        """Acquires this keeper proposed, not yet applied or rejected. Each counts as a hold,
        even one proposed for the log to refuse (``wait == 0``): a release applied before it
        may let the log grant it, and a waiter proposed meanwhile must not then be refused."""

    def take_office(self, now: float) -> list[tuple[Key, int, float]]:
        """Every unbound hold's timer at its full ttl, every lock-delay at its full length."""
        starts: list[tuple[Key, int, float]] = []
        for kind in SHARED_KINDS:
            for view in self._machine().shared_list(kind, ""):
                for hold in view.holds:
                    if hold.session is None:
                        self._timed[hold.token] = (kind, view.name, hold.holder)
                        starts.append(((Kind.SHARED_EXPIRE, hold.token), hold.token,
                                       now + hold.ttl_s))  # fmt: skip
                for block in view.blocked:
                    self._blocks[block.token] = (kind, view.name)
                    starts.append(((Kind.SHARED_UNBLOCK, block.token), block.token,
                                   now + block.lock_delay_s))  # fmt: skip
        return starts

    # -- acquires -------------------------------------------------------------------------

    def acquire(self, request: AcquireRequest, now: float, ready: KeeperReady) -> None:
        """A new (validated, admitted, not replayed) acquire of a shared name."""
        command = request.command
        assert isinstance(command, AcquireShared)
        queue = (command.kind, command.name)
        verdict = self.verdict(command)
        waiting = self._waiters.first(queue) is not None
        if verdict == "refuse" or (verdict == "grant" and not waiting):
            self._propose(command, request, ready)
        elif request.wait_s == 0 and waiting:
            ready.replies.append(self.held_reply(request, now))
        elif request.wait_s == 0:
            self._propose(command, request, ready)  # the log answers (held, most likely)
        elif self._waiters.full(queue):
            ready.replies.append(Reply(request.key, Unavailable("too many waiters")))
        else:
            self._waiters.park(request, now + request.wait_s)

    def verdict(self, command: AcquireShared) -> Verdict:
        """Would the machine grant ``command`` once the acquires in flight are applied?
        ("refuse": it would refuse it for another reason than ``held``.)"""
        refused = self._machine().shared_refusal(command)
        if refused is not None:
            return "wait" if refused.code == "held" else "refuse"
        reserved = self._reserved.get((command.kind, command.name))
        if not reserved:
            return "grant"
        if any(r.holder == command.holder for r in reserved):
            return "wait"  # not reentrant: it waits for its own hold to end
        if command.kind == "semaphore":
            view = self._machine().shared(command.kind, command.name)
            if view is None and reserved[0].limit != command.limit:
                return "refuse"  # the first in flight fixes the limit
            taken = len(view.holds) + len(view.blocked) if view is not None else 0
            return "grant" if taken + len(reserved) < command.limit else "wait"
        writing = command.mode == "write" or any(r.mode == "write" for r in reserved)
        return "wait" if writing else "grant"

    def grant(self, queue: tuple[SharedKind, str], now: float, ready: KeeperReady) -> None:
        """Propose the waiters of ``queue`` from the head while each may be granted."""
        while (waiter := self._waiters.first(queue)) is not None:
            command = waiter.request.command
            assert isinstance(command, AcquireShared)
            if waiter.deadline <= now:
                self._waiters.unpark(waiter)
                ready.replies.append(self.held_reply(waiter.request, now))
                continue
            verdict = self.verdict(command)
            if verdict == "wait":
                return
            self._waiters.unpark(waiter)
            self._propose(command, waiter.request, ready)

    def wait_ran_out(self, waiter: Waiter, now: float, ready: KeeperReady) -> None:
        """A waiter left its queue (timed out, or its client went away): the ones behind it
        may be grantable now (a writer that gave up no longer holds back readers)."""
        ready.replies.append(self.held_reply(waiter.request, now))
        command = waiter.request.command
        assert isinstance(command, AcquireShared)
        self.grant((command.kind, command.name), now, ready)

    # -- the log ----------------------------------------------------------------------------

    def applied(self, command: AcquireShared | ReleaseShared | ExpireShared | UnblockShared,
                result: Result, now: float, ready: KeeperReady) -> None:  # fmt: skip
        machine = self._machine()
        match command, result:
            case AcquireShared(), Permit():
                self._unreserve(command)
                if machine.verify_shared(result.kind, result.name, result.token).current:
                    if result.session is None and result.token not in self._timed:
                        self._timed[result.token] = (result.kind, result.name, result.holder)
                        self._clock.start(Kind.SHARED_EXPIRE, result.token, result.token,
                                          now + result.ttl_s)  # fmt: skip
            case AcquireShared(), _:
                self._unreserve(command)
            case ReleaseShared(), SharedReleased():
                self._ended(result.token)
            case ExpireShared(), SharedExpired():
                self._ended(result.token)
                if result.blocked:
                    self._block(result.kind, result.name, result.token, now)
            case UnblockShared(), SharedUnblocked():
                self._clock.stop(Kind.SHARED_UNBLOCK, result.token)
                self._blocks.pop(result.token, None)
        if isinstance(command, AcquireShared) and command.request_id is not None:
            for waiter in self._waiters.unpark_retries(command):  # they get its answer
                ready.replies.append(Reply(waiter.request.key, result,
                                           self.reply_expires_in(result, now)))  # fmt: skip
        self.grant((command.kind, command.name), now, ready)

    def rejected(self, command: AcquireShared, now: float, ready: KeeperReady) -> None:
        self._unreserve(command)
        self.grant((command.kind, command.name), now, ready)

    def freed(self, freed: Freed, now: float, ready: KeeperReady) -> None:
        """A session's end freed this hold (kind semaphore or rwlock)."""
        assert freed.kind == "semaphore" or freed.kind == "rwlock", freed
        kind: SharedKind = freed.kind
        self._ended(freed.token)
        if freed.blocked:
            self._block(kind, freed.name, freed.token, now)
        self.grant((kind, freed.name), now, ready)

    def decision(self, kind: int, token: int, ballot: Ballot) -> ExpireShared | UnblockShared:
        """What the timer ``(kind, token)`` that ran out proposes."""
        if kind == Kind.SHARED_EXPIRE:
            shared_kind, name, holder = self._timed[token]
            return ExpireShared(shared_kind, name, holder, token, ballot)
        shared_kind, name = self._blocks[token]
        return UnblockShared(shared_kind, name, token, ballot)

    # -- renewals ---------------------------------------------------------------------------

    def hold(self, kind: SharedKind, name: str, holder: str) -> Permit | None:
        view = self._machine().shared(kind, name)
        return next((h for h in view.holds if h.holder == holder), None) if view else None

    def renew_refusal(self, kind: SharedKind, name: str, holder: str, token: int,
                      principal: str) -> Refused | None:  # fmt: skip
        """Why the hold ``token`` cannot be renewed now (a bound one: by renewing its session,
        which the caller checks)."""
        hold = self.hold(kind, name, holder)
        if hold is None or hold.token != token:
            return Refused("not_holder", name, message=f"{holder} holds no {kind} {name} "
                           f"under token {token}")  # fmt: skip
        if hold.owner != principal:
            return Refused("forbidden", name,
                           message=f"the {kind} hold on {name} belongs to another principal")
        if hold.session is None and not self._clock.running(Kind.SHARED_EXPIRE, token, token):
            return Refused("not_holder", name, message=f"the {kind} hold on {name} is expiring")
        return None

    def restart(self, kind: SharedKind, name: str, holder: str, token: int, now: float
                ) -> Permit | None:  # fmt: skip
        """A round renewed the unbound hold ``token``: its timer starts again at full ttl."""
        hold = self.hold(kind, name, holder)
        if hold is None or hold.token != token \
                or not self._clock.running(Kind.SHARED_EXPIRE, token, token):  # fmt: skip
            return None
        self._clock.start(Kind.SHARED_EXPIRE, token, token, now + hold.ttl_s)
        return hold

    # -- answers ----------------------------------------------------------------------------

    def hold_left(self, hold: Permit, now: float) -> float | None:
        if hold.session is not None:
            return self._session_left(hold.session, now)
        return self._clock.left(Kind.SHARED_EXPIRE, hold.token, now)

    def expires_in(self, kind: SharedKind, name: str, holder: str, now: float) -> float | None:
        hold = self.hold(kind, name, holder)
        return None if hold is None else self.hold_left(hold, now)

    def reply_expires_in(self, result: Result, now: float) -> float | None:
        """``expires_in`` for a reply carrying ``result`` (0 for a grant no longer current)."""
        if isinstance(result, Permit):
            hold = self.hold(result.kind, result.name, result.holder)
            return 0.0 if hold is None or hold.token != result.token else self.hold_left(hold, now)
        return None

    def held_reply(self, request: AcquireRequest, now: float) -> Reply:
        """``held`` without a log write: the oldest grant in the way, and its seconds left."""
        command = request.command
        assert isinstance(command, AcquireShared)
        refused = self._machine().shared_refusal(command)
        if refused is None or refused.code != "held":
            refused = Refused("held", command.name,
                              message="others wait for it ahead of this request")
        return Reply(request.key, refused, self._left(command, refused, now))

    # -- internals --------------------------------------------------------------------------

    def _left(self, command: AcquireShared, refused: Refused, now: float) -> float | None:
        """Seconds left of the grant (or lock-delay) a ``held`` refusal names."""
        if refused.token is None:
            return None
        if refused.blocked:
            return self._clock.left(Kind.SHARED_UNBLOCK, refused.token, now)
        view = self._machine().shared(command.kind, command.name)
        holds = view.holds if view is not None else ()
        hold = next((h for h in holds if h.token == refused.token), None)
        return None if hold is None else self.hold_left(hold, now)

    def _ended(self, token: int) -> None:
        """Hold ``token`` ended (released, expired or freed): its timer stops."""
        self._clock.stop(Kind.SHARED_EXPIRE, token)
        self._timed.pop(token, None)

    def _block(self, kind: SharedKind, name: str, token: int, now: float) -> None:
        """Start the lock-delay of the expired hold ``token``, if the machine blocks it."""
        view: SharedName | None = self._machine().shared(kind, name)
        block = next((b for b in view.blocked if b.token == token), None) if view else None
        if block is None:
            return
        self._blocks[token] = (kind, name)
        self._clock.start(Kind.SHARED_UNBLOCK, token, token, now + block.lock_delay_s)

    def _propose(self, command: AcquireShared, request: AcquireRequest, ready: KeeperReady
                 ) -> None:  # fmt: skip
        self._reserved.setdefault((command.kind, command.name), []).append(command)
        ready.proposals.append(Propose(command, request.key))

    def _unreserve(self, command: AcquireShared) -> None:
        queue = (command.kind, command.name)
        reserved = self._reserved.get(queue)
        if reserved is not None and command in reserved:
            reserved.remove(command)
            if not reserved:
                del self._reserved[queue]
