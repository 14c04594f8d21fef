"""``LeaseService``: the lease operations of ``coordinator.leasing`` at the asyncio edge.

All the logic lives in the pure ``LeaseReplica`` (the same object the simulator drives);
this module only turns requests into replica steps and replies into answers: futures,
waiting for a new primary's office, typed errors, views, and observe.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from typing import Any

from paxlock.coordinator.core.keeper_effects import NotPrimary as NotPrimaryOutcome
from paxlock.coordinator.core.keeper_effects import ReadConfirmed, Recovering, Reply, RequestKey
from paxlock.coordinator.core.keeper_effects import TooMany as TooManyOutcome
from paxlock.coordinator.core.keeper_effects import Unavailable as UnavailableOutcome
from paxlock.coordinator.core.lease_commands import (
    Acquire,
    Expired,
    Lease,
    Proclaim,
    Refused,
    Release,
    Released,
    Unblocked,
)
from paxlock.coordinator.core.messages import Configuration, Member
from paxlock.coordinator.core.proposer import Role
from paxlock.coordinator.core.replica_io import (
    AcquireOp,
    ProclaimOp,
    ReadOp,
    ReleaseOp,
    RenewOp,
    ReplicaReady,
    RequestOp,
)
from paxlock.coordinator.core.coord_commands import SessionEnded
from paxlock.coordinator.cluster_view import PrimaryChanges, member_views, primary_ballot
from paxlock.coordinator.coordination import Coordination
from paxlock.coordinator.errors import (
    BadRequest, Exists, Forbidden, Held, LeaseError, LimitMismatch, NotEmpty, NotFound,
    NotHolder, NotMember, NotPrimary, RequestExpired, TooMany, Unavailable,
)  # fmt: skip
from paxlock.coordinator.members import Membership
from paxlock.coordinator.relay import MARGIN_S, RELAYED, Relay, RelayRequest, relayed, request_op
from paxlock.coordinator.runtime import Runtime
from paxlock.coordinator.views import LeaseView
from paxlock.coordinator.watch import Revisions, WaitingAcquires, Watches

_REFUSALS: dict[str, type[LeaseError]] = {
    "not_found": NotFound, "not_member": NotMember, "exists": Exists, "not_empty": NotEmpty,
    "limit_mismatch": LimitMismatch,
}  # fmt: skip
"""Refusal codes of sessions, shared names and groups (an acquire naming an unknown session
or a group leader's lease of an unknown group is ``not_found``)."""
OFFICE_WAIT_S = 2.0
"""How long a request waits for a new primary to take office before a 503."""
LIMIT_RETRY_AFTER_S = (1.0, 3.0)
"""A 429's ``retry_after_s`` is drawn from this range, so refused clients spread their
retries instead of returning together (a hold is freed by a release or an expiry, which
no one can predict here)."""


class LeaseService:
    def __init__(self, runtime: Runtime, *, learn_mode: str, peer_urls: dict[str, str],
                 reachable_window_s: float, waiters_per_name_max: int = 1000,
                 wall_clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        """A member is reachable when this node heard from it, directly or through the
        primary, within ``reachable_window_s`` (twice the election timeout: the window in
        which a primary must hear from a majority to stay primary). ``wall_clock`` only
        stamps the primary changes shown to people."""
        assert reachable_window_s > 0
        self.runtime = runtime
        self.replica = runtime.replica
        self.clock = runtime.clock
        self.learn_mode = learn_mode
        self.peer_urls = peer_urls
        self.reachable_window_s = reachable_window_s
        self._next_key = 0
        self._waiting: dict[RequestKey, asyncio.Future[Reply]] = {}
        self._in_office = asyncio.Event()
        self.watches = Watches(self._current, self.clock)
        self.waiting = WaitingAcquires(waiters_per_name_max)
        self.revisions = Revisions(lambda: self.replica.machine.revision, self.clock)
        self.wall_clock = wall_clock
        self.primary_changes = PrimaryChanges(self.known_primary(), None, wall_clock())
        self.on_limit: list[Callable[[str], None]] = []
        """Called with the limit's name for each request refused at a limit (metrics)."""
        self.relay: Relay | None = None
        """Set by the node: this follower's lease requests go to the primary over the peer
        channel (``coordinator.relay``); None: they are forwarded by HTTP (``NotPrimary``)."""
        self._relayed_recovering: list[tuple[RequestKey, float]] = []
        """Requests relayed here while this primary was not in office yet (key, deadline):
        asked again once it is (as ``_ask`` waits for its own), else 503 after
        ``OFFICE_WAIT_S``."""
        self._relayed_primary: str | None = None
        self.cluster_id: str | None = None
        """The cluster id (``membership.cluster_id_of``), set by the node once it knows it."""
        self.members = Membership(
            self.ask, self.replica.status, lambda: self.replica.schedule,
            lambda urls: member_views(self.replica.status(), urls, self.clock(),
                                      self.reachable_window_s),
            lambda: self.cluster_id,
        )  # fmt: skip
        self.coordination = Coordination(self)
        """Sessions, semaphores, read/write locks and groups (``coordinator.coordination``)."""
        runtime.sinks.append(self._on_ready)

    @property
    def node_id(self) -> str:
        return self.replica.id

    # -- what each replica step reports ------------------------------------------------------

    def _on_ready(self, ready: ReplicaReady) -> None:
        if self.replica.keeper.in_office:  # one source of truth: the replica's keeper
            self._in_office.set()
        else:
            self._in_office.clear()
        if ready.installed is not None:
            self.watches.reread_all()
        for applied in ready.applied:
            result = applied.result
            if isinstance(result, Lease | Released | Expired | Unblocked):
                self.watches.changed(result.name, result.revision)
            elif isinstance(result, SessionEnded):
                for freed in result.freed:
                    if freed.kind == "lease":
                        self.watches.changed(freed.name, result.revision)
            self.coordination.on_applied(applied)
        self.coordination.on_ready_done(ready.installed is not None)
        self.revisions.check()
        primary = self.known_primary()
        changes = self.primary_changes
        if primary != changes.primary:  # the ballot's text only when it moved, or is unknown
            changes.saw(primary, primary_ballot(self.replica.node, primary), self.wall_clock())
        elif changes.ballot_unknown:
            changes.learned_ballot(primary_ballot(self.replica.node, primary))
        relay = self.relay
        for reply in ready.replies:
            future = self._waiting.pop(reply.to, None)
            if future is not None:
                if not future.done():
                    future.set_result(reply)
            elif relay is not None and reply.to in relay.served:
                self._answer_relayed(reply)
        if relay is not None:
            self._check_relays(relay)

    # -- relayed requests (``coordinator.relay``) ----------------------------------------------

    def serve_relayed(self, origin: str, message: RelayRequest) -> None:
        """A follower relayed a request here: step it as this node's own."""
        assert self.relay is not None
        self._next_key += 1
        key = RequestKey(self._next_key)
        op = request_op(message)
        self.relay.register(key, origin, message.seq, op)
        if isinstance(op, AcquireOp) and op.wait_s > 0:
            self.waiting.relayed(key, op.command.name)
        self.runtime.request(key, op)

    def cancel_relayed(self, origin: str, seq: int) -> None:
        key = self.relay.withdraw(origin, seq) if self.relay is not None else None
        if key is not None:
            self.waiting.relayed_done(key)
            self.runtime.cancel(key)

    def _answer_relayed(self, reply: Reply) -> None:
        """Send a relayed request's reply back, with the seconds left of a lease that
        refused it; one that found this primary still taking office waits for it."""
        assert self.relay is not None
        outcome = reply.outcome
        if isinstance(outcome, Recovering):
            self._relayed_recovering.append((reply.to, self.clock() + OFFICE_WAIT_S))
            return
        if isinstance(outcome, Refused) and reply.expires_in_s is None:
            reply = Reply(reply.to, outcome, self.replica.expires_in(outcome.name, self.clock()))
        self.relay.answered(reply.to, reply)
        self.waiting.relayed_done(reply.to)

    def _check_relays(self, relay: Relay) -> None:
        """Fail the requests relayed to a primary that is not the one known any more; ask
        again those relayed here while this primary was taking office."""
        primary = self.replica.node.primary_hint
        if primary != self._relayed_primary:
            if self._relayed_primary is not None:
                now = f"{primary} is the primary now" if primary else "an election is on"
                relay.fail(self._relayed_primary, f"it is not the primary any more ({now})")
            self._relayed_primary = primary
        waiting = self._relayed_recovering
        if waiting and (self.replica.keeper.in_office or waiting[0][1] < self.clock()):
            self._relayed_recovering = []
            asyncio.get_running_loop().call_soon(self._ask_relayed_again, waiting)

    def _ask_relayed_again(self, waiting: list[tuple[RequestKey, float]]) -> None:
        relay = self.relay
        assert relay is not None
        for key, _ in waiting:
            served = relay.served.get(key)
            if served is None:
                continue  # cancelled meanwhile
            if self.replica.keeper.in_office:
                self.runtime.request(key, served.op)
            else:
                relay.answered(key, Reply(key, UnavailableOutcome(
                    "the primary is still recovering the log")))  # fmt: skip
                self.waiting.relayed_done(key)

    async def close(self) -> None:
        if self.relay is not None:
            self.relay.close()
        for future in self._waiting.values():
            if not future.done():
                future.set_result(Reply(RequestKey(-1), UnavailableOutcome("node stopping")))

    # -- requests ------------------------------------------------------------------------------

    async def ask(self, op: RequestOp) -> Reply:
        """One request to the replica; waits (up to ``OFFICE_WAIT_S``) while a new primary is
        still taking office, and turns every non-result into its typed error."""
        deadline = self.clock() + OFFICE_WAIT_S
        while True:
            self._next_key += 1
            key = RequestKey(self._next_key)
            future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
            self._waiting[key] = future
            try:
                self.runtime.request(key, op)
                reply = await future
            except asyncio.CancelledError:  # the client went away (e.g. while it waited)
                if self.runtime.failure is None:
                    self.runtime.cancel(key)
                raise
            finally:
                self._waiting.pop(key, None)
            outcome = reply.outcome
            if isinstance(outcome, NotPrimaryOutcome) and self._relays_to(outcome.primary_hint, op):
                assert self.relay is not None and outcome.primary_hint is not None
                wait_s = op.wait_s if isinstance(op, AcquireOp) else 0.0
                reply = await self.relay.ask(outcome.primary_hint, op, wait_s + MARGIN_S)
                if isinstance(reply.outcome, UnavailableOutcome):
                    raise Unavailable(reply.outcome.reason, primary=outcome.primary_hint)
            match reply.outcome:
                case NotPrimaryOutcome(primary_hint=hint):
                    raise NotPrimary(hint)
                case UnavailableOutcome(reason=reason):
                    raise Unavailable(reason)
                case TooManyOutcome(limit=limit, reason=reason):
                    for callback in self.on_limit:
                        callback(limit)
                    raise TooMany(reason, random.uniform(*LIMIT_RETRY_AFTER_S), limit=limit)
                case Recovering():
                    left = deadline - self.clock()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._in_office.wait(), max(0.0, left))
                    if not self._in_office.is_set():
                        raise Unavailable("the primary is still recovering the log")
                case _:
                    return reply

    def _relays_to(self, primary: str | None, op: RequestOp) -> bool:
        """Whether ``op`` goes to ``primary`` as a message (else by HTTP: ``NotPrimary``)."""
        return (self.relay is not None and primary is not None and primary != self.node_id
                and primary in self.peer_urls and relayed(op))  # fmt: skip

    async def acquire(self, name: str, *, holder: str, ttl: float, wait: float = 0.0,
                      value: str | None = None, lock_delay: float = 0.0,
                      request_id: str | None = None, principal: str = "",
                      session: str | None = None) -> LeaseView:  # fmt: skip
        """``session``: bound to it (``ttl`` is then ignored: give 0)."""
        command = Acquire(name, holder, ttl, value, lock_delay, request_id, principal, session)
        with self.waiting.waiting(name) if wait > 0 else contextlib.nullcontext():
            reply = await self.ask(AcquireOp(command, wait))
        return self._lease_or_raise(name, reply)  # out of the count: not a waiter any more

    async def renew(self, name: str, *, holder: str, token: int,
                    principal: str = "") -> LeaseView:  # fmt: skip
        reply = await self.ask(RenewOp(name, holder, token, principal))
        return self._lease_or_raise(name, reply)

    async def release(self, name: str, *, holder: str, token: int,
                      request_id: str | None = None, principal: str = "") -> None:  # fmt: skip
        reply = await self.ask(ReleaseOp(Release(name, holder, token, request_id, principal)))
        if not isinstance(reply.outcome, Released):
            self._lease_or_raise(name, reply)

    async def proclaim(self, name: str, *, holder: str, token: int, value: str | None,
                       request_id: str | None = None, principal: str = "") -> LeaseView:  # fmt: skip
        command = Proclaim(name, holder, token, value, request_id, principal)
        return self._lease_or_raise(name, await self.ask(ProclaimOp(command)))

    def _lease_or_raise(self, name: str, reply: Reply) -> LeaseView:
        outcome = reply.outcome
        if isinstance(outcome, Lease):
            return self._view(outcome, reply.expires_in_s)
        if isinstance(outcome, Refused):
            self.raise_refused(outcome, reply.expires_in_s if reply.to == RELAYED else
                                self.replica.expires_in(outcome.name, self.clock()))
        raise Unavailable(f"unexpected outcome for {name}: {type(outcome).__name__}")

    def raise_refused(self, refused: Refused, expires_in: float | None) -> None:
        """``expires_in``: the seconds left of the lease that refused (the primary's)."""
        if refused.code == "held":
            raise Held(
                refused.message or f"{refused.name} is held"
                + (" (lock-delay after an expiry)" if refused.blocked else ""),
                holder=refused.holder, expires_in=expires_in, token=refused.token,
            )  # fmt: skip
        if refused.code == "not_holder":
            raise NotHolder(refused.message or f"not the holder of {refused.name}",
                            holder=refused.holder, token=refused.token)  # fmt: skip
        if refused.code == "request_expired":
            raise RequestExpired(refused.message)
        if refused.code == "forbidden":
            raise Forbidden(refused.message or f"the lease on {refused.name} is another's")
        kind = _REFUSALS.get(refused.code, BadRequest)
        raise kind(refused.message or f"{refused.code}: {refused.name}")

    def _view(self, lease: Lease, expires_in: float | None = None) -> LeaseView:
        if expires_in is None:
            now = self.clock()
            expires_in = (self.replica.expires_in(lease.name, now) if lease.session is None
                          else self.replica.session_expires_in(lease.session, now))  # fmt: skip
        return LeaseView(lease.name, lease.holder, lease.token, lease.revision, lease.ttl_s,
                         expires_in, lease.value, lease.lock_delay_s, lease.session,
                         self.waiting.count(lease.name))  # fmt: skip

    # -- reads -----------------------------------------------------------------------------------

    async def read_barrier(self, consistent: bool) -> None:
        """Linearizable reads: the primary, in office (so the log before its ballot is
        applied), confirms with one quorum round that no successor exists yet."""
        if consistent:
            reply = await self.ask(ReadOp())
            assert isinstance(reply.outcome, ReadConfirmed), reply

    async def get(self, name: str, *, consistent: bool = True) -> LeaseView:
        await self.read_barrier(consistent)
        lease = self.replica.machine.get(name)
        if lease is None:
            raise NotFound(f"no lease on {name}")
        return self._view(lease)

    async def list(self, prefix: str = "", *, consistent: bool = True) -> list[LeaseView]:
        await self.read_barrier(consistent)
        return [self._view(lease) for lease in self.replica.machine.list(prefix)]

    async def verify(self, name: str, *, token: int) -> tuple[bool, int | None]:
        await self.read_barrier(True)
        current, current_token = self.replica.machine.verify(name, token)
        return current, current_token

    def _current(self, name: str) -> LeaseView | None:
        lease = self.replica.machine.get(name)
        return None if lease is None else self._view(lease)

    async def observe(self, name: str, *, after: int, timeout: float) -> LeaseView | None:
        return await self.watches.observe(name, after=after, timeout=timeout)

    async def changes(self, *, after: int, timeout: float) -> int | None:
        return await self.revisions.after(after, timeout=timeout)

    # -- cluster -------------------------------------------------------------------------------

    # -- membership (``coordinator.members``) ------------------------------------------------

    def membership(self) -> dict[str, Any]:
        return self.members.view()

    async def add_member(self, member: Member) -> Configuration:
        """Add ``member`` as a learner (it votes once promoted)."""
        return await self.members.add(member)

    async def promote_member(self, member_id: str) -> Configuration:
        return await self.members.promote(member_id)

    async def remove_member(self, member_id: str) -> Configuration:
        return await self.members.remove(member_id)

    def known_primary(self) -> str | None:
        """Read on every answer (``X-Paxlock-Primary``): two fields, not ``status()``."""
        node = self.replica.node
        return None if node.role is Role.CANDIDATE else node.primary_hint

    def cluster(self) -> dict[str, Any]:
        status = self.replica.status()
        return {
            "node": self.node_id,
            "primary": self.known_primary(),
            "ballot": str(status.ballot) if status.role is not Role.FOLLOWER else None,
            "learn_mode": self.learn_mode,
            "chosen_index": status.chosen_index,
            "applied_index": status.applied_index,
            "revision": self.replica.machine.revision,
            "members": member_views(status, self.peer_urls, self.clock(),
                                    self.reachable_window_s),  # fmt: skip
            "primary_changes": self.primary_changes.as_json(),
        }

    def readiness(self) -> tuple[bool, str]:
        if not self.runtime.running:
            return False, "the replica has stopped"
        status = self.replica.status()
        if status.role is Role.PRIMARY:
            return (True, "primary") if status.in_office else (False, "recovering")
        if status.primary_hint is None:
            return False, "no primary known"
        target = status.catchup_target
        if target is not None and target[1] - status.chosen_index > 1000:
            return False, "far behind the primary"
        return True, f"following {status.primary_hint}"
