"""``LeaseService``: the lease operations of ``coordinator.leasing`` over the replicated log.

Every node applies the chosen log to its own ``LeaseMachine``. The primary alone runs a
``LeaseKeeper`` (timers, waiters, renewals) and answers writes; other nodes raise
``NotPrimary`` so that the edge forwards. Commands enter the log wrapped in a ``Proposal``
that names the proposing incarnation, so that the node that proposed a command — and only
it — answers the request waiting for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from typing import Any

import structlog

from paxlock.coordinator.core.keeper import (
    AcquireRequest,
    KeeperReady,
    LeaseKeeper,
    Reply,
    RequestKey,
)
from paxlock.coordinator.core.keeper import Unavailable as KeeperUnavailable
from paxlock.coordinator.core.lease_commands import (
    Acquire,
    Expired,
    Lease,
    LeaseCommand,
    Proclaim,
    Refused,
    Release,
    Released,
    Result,
    Unblocked,
)
from paxlock.coordinator.core.leases import LeaseMachine
from paxlock.coordinator.core.proposal import Proposal, decode_proposal, encode_proposal
from paxlock.coordinator.core.proposer import Role
from paxlock.coordinator.core.messages import Batch, ChosenEntry
from paxlock.coordinator.core.ready import BecamePrimary, CoreEvent, Rejection, SteppedDown
from paxlock.coordinator.errors import BadRequest, Held, NotFound, NotHolder, NotPrimary
from paxlock.coordinator.errors import Unavailable
from paxlock.coordinator.runtime import Replica
from paxlock.coordinator.views import LeaseView

log = structlog.get_logger("paxlock.service")

OFFICE_WAIT_S = 2.0
"""How long a request waits for a new primary to finish recovering before a 503."""


_encode = encode_proposal
_decode = decode_proposal


class LeaseService:
    def __init__(self, replica: Replica, machine: LeaseMachine, *, clock: Callable[[], float],
                 learn_mode: str, peer_urls: dict[str, str],
                 reachable: Callable[[str], bool], snapshot_every: int = 5000) -> None:  # fmt: skip
        self.replica = replica
        self.machine = machine
        self.keeper = LeaseKeeper()
        self.clock = clock
        self.learn_mode = learn_mode
        self.peer_urls = peer_urls
        self.reachable = reachable
        self.origin = f"{replica.id}/{os.urandom(4).hex()}"
        self._seq = 0
        self._next_key = 0
        self._waiting: dict[RequestKey, asyncio.Future[Reply]] = {}
        self._mine: dict[int, LeaseCommand] = {}
        self._reply_keys: dict[int, RequestKey] = {}
        """Proposal seq -> the request its applied result answers."""
        self._office_slot: int | None = None
        self._in_office = asyncio.Event()
        self._keeper_timer: asyncio.TimerHandle | None = None
        self._rounds: set[asyncio.Task[None]] = set()
        self._changes: dict[str, int] = {}
        self._watchers: dict[str, list[asyncio.Future[None]]] = {}
        self.snapshot_every = snapshot_every
        self.applied_slot = 0
        self._compaction_due = False
        self.on_applied: Callable[[LeaseCommand, Result], None] | None = None
        """Observer of every applied command (metrics)."""

    @property
    def node_id(self) -> str:
        return self.replica.id

    # -- wiring from the replica ---------------------------------------------------------------

    def apply(self, entry: ChosenEntry) -> None:
        """Apply one chosen slot, in order, on every node."""
        if isinstance(entry.value, Batch):
            now = self.clock()
            for raw in entry.value.commands:
                self._apply_one(_decode(raw), now)
        self.applied_slot = entry.slot
        if entry.slot % self.snapshot_every == 0 and not self._compaction_due:
            # Between steps, never inside the one that is applying this entry.
            self._compaction_due = True
            asyncio.get_running_loop().call_soon(self._compact)
        if self._office_slot is not None and entry.slot >= self._office_slot:
            self._take_office()

    def _compact(self) -> None:
        """Snapshot the machine at the slot it has applied, and let the log below it go."""
        self._compaction_due = False
        self.replica.compact(self.applied_slot, self.machine.snapshot())

    def install(self, slot: int, data: bytes) -> None:
        """Replace the machine with a snapshot (a restart, or catch-up from a peer)."""
        self.machine = LeaseMachine.restore(data)
        self.applied_slot = slot
        for name in list(self._watchers):  # observers re-read the new state
            self._changed(name, self._changes.get(name, 0))
        if self.keeper.in_office:  # rebuild the keeper's timers on the new machine
            for reply in self.keeper.step_down():
                self._resolve(reply)
            self._run(self.keeper.take_office(self.machine, self.clock()))
        log.info("snapshot_installed", node=self.node_id, slot=slot)

    def _apply_one(self, proposal: Proposal, now: float) -> None:
        command = proposal.command
        result = self.machine.apply(command)
        if isinstance(result, Lease | Released | Expired | Unblocked):
            self._changed(command.name, result.revision)
        if self.on_applied is not None:
            self.on_applied(command, result)
        if self.keeper.in_office:
            self._run(self.keeper.on_applied(command, result, now))
        if proposal.origin == self.origin and self._mine.pop(proposal.seq, None) is not None:
            key = self._reply_keys.pop(proposal.seq, None)
            if key is not None:
                expires_in = (self.keeper.expires_in(command.name, now)
                              if self.keeper.in_office else None)  # fmt: skip
                self._resolve(Reply(key, result, expires_in))

    def on_rejected(self, rejection: Rejection) -> None:
        proposal = _decode(rejection.command)
        if proposal.origin != self.origin or self._mine.pop(proposal.seq, None) is None:
            return
        if self.keeper.in_office:
            self._run(self.keeper.on_rejected(proposal.command, self.clock()))
        key = self._reply_keys.pop(proposal.seq, None)
        if key is not None:
            why = ("outcome unknown: retry with the same request_id" if rejection.maybe_chosen
                   else "not accepted by the primary")  # fmt: skip
            self._resolve(Reply(key, KeeperUnavailable(why)))

    def on_event(self, event: CoreEvent) -> None:
        if isinstance(event, BecamePrimary):
            self._office_slot = self.replica.node.proposer.next_slot - 1
            if self.replica.node.chosen_index >= self._office_slot:
                self._take_office()
        elif isinstance(event, SteppedDown):
            self._leave_office()

    def _take_office(self) -> None:
        """Lease timers start only once the log up to this ballot's start is applied."""
        self._office_slot = None
        if self.keeper.in_office or not self.replica.is_primary:
            return
        self._run(self.keeper.take_office(self.machine, self.clock()))
        self._in_office.set()
        log.info("lease_keeper_in_office", node=self.node_id, leases=len(self.machine.list()))

    def _leave_office(self) -> None:
        self._office_slot = None
        self._in_office.clear()
        if self.keeper.in_office:
            for reply in self.keeper.step_down():
                self._resolve(reply)
        if self._keeper_timer is not None:
            self._keeper_timer.cancel()
            self._keeper_timer = None

    # -- keeper effects --------------------------------------------------------------------------

    def _run(self, ready: KeeperReady) -> None:
        for proposal in ready.proposals:
            self._seq += 1
            self._mine[self._seq] = proposal.command
            if proposal.reply_to is not None:
                self._reply_keys[self._seq] = proposal.reply_to
            self.replica.submit(_encode(Proposal(self.origin, self._seq, proposal.command)))
        for reply in ready.replies:
            self._resolve(reply)
        if self.keeper.needs_confirmation():
            self._start_round()
        self._arm_keeper_timer(ready.deadline)

    def _arm_keeper_timer(self, deadline: float | None) -> None:
        if self._keeper_timer is not None:
            self._keeper_timer.cancel()
            self._keeper_timer = None
        if deadline is None or not self.keeper.in_office:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, deadline - self.clock())
        self._keeper_timer = loop.call_later(delay, self._keeper_tick)

    def _keeper_tick(self) -> None:
        self._keeper_timer = None
        if self.keeper.in_office:
            self._run(self.keeper.tick(self.clock()))

    def _start_round(self) -> None:
        round_id = self.keeper.start_round(self.clock())

        async def confirm() -> None:
            confirmed = await self.replica.confirm()
            if not self.keeper.in_office:
                return
            if confirmed:
                self._run(self.keeper.on_confirmed(round_id, self.clock()))
            else:
                self.keeper.on_round_failed(round_id)
                if self.keeper.needs_confirmation() and self.replica.is_primary:
                    self._start_round()

        task = asyncio.create_task(confirm())
        self._rounds.add(task)
        task.add_done_callback(self._rounds.discard)

    def _resolve(self, reply: Reply) -> None:
        future = self._waiting.pop(reply.to, None)
        if future is not None and not future.done():
            future.set_result(reply)

    async def close(self) -> None:
        self._leave_office()
        for task in list(self._rounds):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for future in self._waiting.values():
            if not future.done():
                future.set_result(Reply(RequestKey(-1), KeeperUnavailable("node stopping")))

    # -- requests ------------------------------------------------------------------------------

    async def _primary(self) -> None:
        """Return once this node is the primary with its keeper in office, else raise."""
        if not self.replica.is_primary:
            raise NotPrimary(self.replica.primary_hint)
        if not self._in_office.is_set():
            try:
                await asyncio.wait_for(self._in_office.wait(), OFFICE_WAIT_S)
            except TimeoutError:
                raise Unavailable("the primary is still recovering the log") from None
            if not self.replica.is_primary:
                raise NotPrimary(self.replica.primary_hint)

    def _request(self) -> tuple[RequestKey, asyncio.Future[Reply]]:
        self._next_key += 1
        key = RequestKey(self._next_key)
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._waiting[key] = future
        return key, future

    async def _answer(self, key: RequestKey, future: asyncio.Future[Reply]) -> Reply:
        try:
            reply = await future
        finally:
            self._waiting.pop(key, None)
        if isinstance(reply.outcome, KeeperUnavailable):
            raise Unavailable(reply.outcome.reason)
        return reply

    async def _propose(
        self, command: LeaseCommand,
        then: Callable[[Release, float], KeeperReady] | None = None,
    ) -> Reply:  # fmt: skip
        """Propose ``command`` for this request; ``then`` lets the keeper propose right
        behind it (the direct handoff of a released name to its first waiter)."""
        await self._primary()
        key, future = self._request()
        self._seq += 1
        self._mine[self._seq] = command
        self._reply_keys[self._seq] = key
        self.replica.submit(_encode(Proposal(self.origin, self._seq, command)))
        if then is not None and isinstance(command, Release):
            self._run(then(command, self.clock()))
        return await self._answer(key, future)

    async def acquire(self, name: str, *, holder: str, ttl: float, wait: float = 0.0,
                      value: str | None = None, lock_delay: float = 0.0,
                      request_id: str | None = None) -> LeaseView:  # fmt: skip
        await self._primary()
        command = Acquire(name, holder, ttl, value, lock_delay, request_id)
        key, future = self._request()
        self._run(self.keeper.acquire(AcquireRequest(key, command, wait), self.clock()))
        try:
            reply = await self._answer(key, future)
        except asyncio.CancelledError:  # the client went away while it waited
            if self.keeper.in_office:
                self._run(self.keeper.cancel(key))
            raise
        return self._lease_or_raise(name, reply)

    async def renew(self, name: str, *, holder: str, token: int) -> LeaseView:
        await self._primary()
        key, future = self._request()
        self._run(self.keeper.renew(name, holder, token, key, self.clock()))
        reply = await self._answer(key, future)
        return self._lease_or_raise(name, reply)

    async def release(self, name: str, *, holder: str, token: int,
                      request_id: str | None = None) -> None:  # fmt: skip
        command = Release(name, holder, token, request_id)
        replayed = self.machine.replay(command)
        if replayed is not None:  # a retry of an applied release: its first answer, no write
            await self._primary()
            reply = Reply(RequestKey(0), replayed)
        else:
            reply = await self._propose(command, then=self.keeper.release_requested)
        if not isinstance(reply.outcome, Released):
            self._lease_or_raise(name, reply)

    async def proclaim(self, name: str, *, holder: str, token: int, value: str | None,
                       request_id: str | None = None) -> LeaseView:  # fmt: skip
        command = Proclaim(name, holder, token, value, request_id)
        replayed = self.machine.replay(command)
        if replayed is not None:  # answered from the idempotency window, no write
            await self._primary()
            return self._lease_or_raise(name, Reply(RequestKey(0), replayed))
        return self._lease_or_raise(name, await self._propose(command))

    def _lease_or_raise(self, name: str, reply: Reply) -> LeaseView:
        outcome = reply.outcome
        if isinstance(outcome, Lease):
            return self._view(outcome, reply.expires_in_s)
        if isinstance(outcome, Refused):
            self._raise_refused(outcome)
        raise Unavailable(f"unexpected outcome for {name}: {type(outcome).__name__}")

    def _raise_refused(self, refused: Refused) -> None:
        now = self.clock()
        expires_in = self.keeper.expires_in(refused.name, now) if self.keeper.in_office else None
        if refused.code == "held":
            raise Held(
                refused.message or f"{refused.name} is held"
                + (" (lock-delay after an expiry)" if refused.blocked else ""),
                holder=refused.holder, expires_in=expires_in, token=refused.token,
            )  # fmt: skip
        if refused.code == "not_holder":
            raise NotHolder(refused.message or f"not the holder of {refused.name}",
                            holder=refused.holder, token=refused.token)  # fmt: skip
        raise BadRequest(refused.message or "bad request")

    def _view(self, lease: Lease, expires_in: float | None = None) -> LeaseView:
        if expires_in is None and self.keeper.in_office:
            expires_in = self.keeper.expires_in(lease.name, self.clock())
        return LeaseView(lease.name, lease.holder, lease.token, lease.revision, lease.ttl_s,
                         expires_in, lease.value, lease.lock_delay_s)  # fmt: skip

    # -- reads -----------------------------------------------------------------------------------

    async def _read_barrier(self, consistent: bool) -> None:
        """Linearizable reads: the primary, in office (so the log before its ballot is
        applied), confirms with one quorum round that no successor exists yet."""
        if not consistent:
            return
        await self._primary()
        if not await self.replica.confirm():
            raise Unavailable("could not confirm primary with a quorum")

    async def get(self, name: str, *, consistent: bool = True) -> LeaseView:
        await self._read_barrier(consistent)
        lease = self.machine.get(name)
        if lease is None:
            raise NotFound(f"no lease on {name}")
        return self._view(lease)

    async def list(self, prefix: str = "", *, consistent: bool = True) -> list[LeaseView]:
        await self._read_barrier(consistent)
        return [self._view(lease) for lease in self.machine.list(prefix)]

    async def verify(self, name: str, *, token: int) -> tuple[bool, int | None]:
        await self._read_barrier(True)
        current, current_token = self.machine.verify(name, token)
        return current, current_token

    def _changed(self, name: str, revision: int) -> None:
        if revision <= self._changes.get(name, 0):
            return  # a result replayed from the idempotency window changes nothing
        self._changes[name] = revision
        for future in self._watchers.pop(name, []):
            if not future.done():
                future.set_result(None)

    def _state(self, name: str) -> LeaseView:
        lease = self.machine.get(name)
        if lease is not None:
            view = self._view(lease)
            revision = max(lease.revision, self._changes.get(name, 0))
            return LeaseView(view.name, view.holder, view.token, revision, view.ttl,
                             view.expires_in, view.value, view.lock_delay)  # fmt: skip
        return LeaseView(name, None, None, self._changes.get(name, 0), None, None, None, 0.0)

    async def observe(self, name: str, *, after: int, timeout: float) -> LeaseView | None:
        """Served from this node's applied log (any node, no forwarding): it sees every change
        in log order, and an SDK that re-polls with the last revision misses nothing."""
        deadline = self.clock() + timeout
        while True:
            state = self._state(name)
            if state.revision > after:
                return state
            left = deadline - self.clock()
            if left <= 0:
                return None
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._watchers.setdefault(name, []).append(future)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(future, left)

    # -- cluster -------------------------------------------------------------------------------

    def known_primary(self) -> str | None:
        node = self.replica.node
        return None if node.role is Role.CANDIDATE else node.primary_hint

    def cluster(self) -> dict[str, Any]:
        described = self.replica.describe()
        return {
            "node": self.node_id,
            "primary": self.known_primary(),
            "ballot": described["ballot"],
            "learn_mode": self.learn_mode,
            "chosen_index": described["chosen_index"],
            "applied_index": described["chosen_index"],
            "members": [
                {
                    "id": member, "url": url,
                    "reachable": member == self.node_id or self.reachable(member),
                    "chosen_index": described["chosen_index"] if member == self.node_id
                    else None,
                }  # fmt: skip
                for member, url in sorted(self.peer_urls.items())
            ],
        }

    def readiness(self) -> tuple[bool, str]:
        if not self.replica.running:
            return False, "the replica has stopped"
        if self.replica.is_primary:
            return (True, "primary") if self._in_office.is_set() else (False, "recovering")
        if self.replica.primary_hint is None:
            return False, "no primary known"
        target = self.replica.node.catchup_target
        if target is not None and target[1] - self.replica.node.chosen_index > 1000:
            return False, "far behind the primary"
        return True, f"following {self.replica.primary_hint}"
