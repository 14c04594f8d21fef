"""A follower's lease requests relayed to the primary over the peer channel, as messages.

A client may reach any member (SDKs and curl users spread over endpoints, as etcd's
clients do). Before, a follower proxied such a request as a second HTTP request; now it sends
the request's operation over the WebSocket it already holds to the primary (etcd forwards a
follower's proposals inside raft the same way): no second HTTP parse, no proxy task, and the
relayed requests of one moment share a frame with the Paxos messages.

The follower has done everything of the edge already (parsing, authentication, the principal,
the rate limit); what crosses is the operation (``AcquireOp``, ``RenewOp``, ``ReleaseOp``,
``ProclaimOp``: commands that carry their principal) with a sequence number, and what comes
back is the replica's outcome, which the follower shapes exactly as its own. A relayed request
is never relayed again: a member that is not the primary any more answers ``not_primary``,
and the follower answers 503 (clients retry). A request the primary does not answer — it
died, the link broke, another member became primary — fails with 503 at once when the
follower notices, else after the request's own wait and a margin.

Reads, observe streams and membership changes still go by HTTP (``api.server.app``): they
are not on the hot path, and a read must be served where the barrier ran.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, NamedTuple, TypeAlias

import msgspec

from paxlock.coordinator.core.keeper_effects import NotPrimary, Recovering, Reply, RequestKey
from paxlock.coordinator.core.keeper_effects import TooMany, Unavailable
from paxlock.coordinator.core.lease_commands import Acquire, Proclaim, Release, Result
from paxlock.coordinator.core.messages import Seq
from paxlock.coordinator.core.replica_io import (
    AcquireOp, ProclaimOp, ReleaseOp, RenewOp, RequestOp,
)  # fmt: skip

MARGIN_S = 5.0
"""How long beyond its own ``wait`` a relayed request may take: the primary's log round."""
WAIT_S_MAX = 3600.0
Text = Annotated[str, msgspec.Meta(max_length=4096)]


class RelayAcquire(msgspec.Struct, frozen=True, tag="relay_acquire"):
    seq: Seq
    command: Acquire
    wait_s: Annotated[float, msgspec.Meta(ge=0, le=WAIT_S_MAX)] = 0.0


class RelayRenew(msgspec.Struct, frozen=True, tag="relay_renew"):
    seq: Seq
    name: Text
    holder: Text
    token: int
    """Any int64, like a ``Release``'s: not a ``Seq`` (at most 2^62), or a renew with a
    larger token (the HTTP API takes up to 2^63-1) was dropped by the primary's decoder and
    the follower answered 503 after its forwarding timeout, not 409 ``not_holder``."""
    principal: Text = ""


class RelayRelease(msgspec.Struct, frozen=True, tag="relay_release"):
    seq: Seq
    command: Release


class RelayProclaim(msgspec.Struct, frozen=True, tag="relay_proclaim"):
    seq: Seq
    command: Proclaim


class RelayCancel(msgspec.Struct, frozen=True, tag="relay_cancel"):
    """The client went away (a parked acquire): take the request out of the queue."""

    seq: Seq


class RelayReply(msgspec.Struct, frozen=True, tag="relay_reply"):
    """The primary's outcome: ``result``, or ``error`` (``unavailable``, ``too_many``,
    ``not_primary``) with its ``reason`` (and ``limit`` for ``too_many``)."""

    seq: Seq
    result: Result | None = None
    error: Text | None = None
    reason: Text = ""
    limit: Text = ""
    expires_in_s: Annotated[float, msgspec.Meta(ge=0, le=1e9)] | None = None


RelayRequest: TypeAlias = RelayAcquire | RelayRenew | RelayRelease | RelayProclaim
RelayMessage: TypeAlias = RelayRequest | RelayCancel | RelayReply

Send = Callable[[str, RelayMessage], None]
"""Queue one message for a peer (the peer transport; never blocks, may lose it)."""


class Served(NamedTuple):
    """A request relayed to this node: who sent it, its number there, and what it asks."""

    origin: str
    seq: int
    op: RequestOp


RELAYED = RequestKey(-1)
"""The key of every ``Reply`` made from a ``RelayReply`` (``reply_of``)."""


def relayed(op: RequestOp) -> bool:
    """Whether ``op`` goes to the primary as a message (the others go by HTTP)."""
    return isinstance(op, AcquireOp | RenewOp | ReleaseOp | ProclaimOp)


def request_message(seq: int, op: RequestOp) -> RelayRequest | None:
    """The relay message of ``op``, or None for an operation that is not relayed."""
    match op:
        case AcquireOp(command=command, wait_s=wait_s):
            return RelayAcquire(seq, command, min(float(wait_s), WAIT_S_MAX))
        case RenewOp(name=name, holder=holder, token=token, principal=principal):
            return RelayRenew(seq, name, holder, token, principal)
        case ReleaseOp(command=command):
            return RelayRelease(seq, command)
        case ProclaimOp(command=command):
            return RelayProclaim(seq, command)
    return None


def request_op(message: RelayRequest) -> RequestOp:
    match message:
        case RelayAcquire(command=command, wait_s=wait_s):
            return AcquireOp(command, wait_s)
        case RelayRenew(name=name, holder=holder, token=token, principal=principal):
            return RenewOp(name, holder, token, principal)
        case RelayRelease(command=command):
            return ReleaseOp(command)
        case RelayProclaim(command=command):
            return ProclaimOp(command)
    raise AssertionError(f"not a relayed request: {message!r}")


def reply_message(seq: int, reply: Reply) -> RelayReply:
    outcome = reply.outcome
    match outcome:
        case Unavailable(reason=reason):
            return RelayReply(seq, error="unavailable", reason=reason)
        case TooMany(limit=limit, reason=reason):
            return RelayReply(seq, error="too_many", reason=reason, limit=limit)
        case NotPrimary() | Recovering():
            return RelayReply(seq, error="not_primary", reason="relayed to a member that "
                                                             "is not the primary in office")
    assert isinstance(outcome, Result), f"{type(outcome).__name__} is never relayed"
    expires_in = reply.expires_in_s
    return RelayReply(seq, result=outcome,
                      expires_in_s=None if expires_in is None else max(0.0, expires_in))


def reply_of(message: RelayReply) -> Reply:
    """The follower's ``Reply`` for a relayed outcome (``not_primary`` becomes
    ``Unavailable``: a relayed request is never relayed again)."""
    key = RELAYED
    if message.result is not None:
        return Reply(key, message.result, message.expires_in_s)
    if message.error == "too_many":
        return Reply(key, TooMany(message.limit, message.reason))
    return Reply(key, Unavailable(message.reason or "the primary did not answer"))


class Relay:
    """Both halves: ``ask`` (a follower relaying a request) and ``serve`` (the primary
    answering one, through the callbacks the service gives it)."""

    def __init__(self, send: Send, count: Callable[[str], None] | None = None,
                 describe: Callable[[str], str] = lambda peer: f"the primary {peer}") -> None:  # fmt: skip
        self.send = send
        self.describe = describe
        """A member as 503 messages name it (``the primary n1 at http://...``)."""
        self.count = count
        """Called with ``ok`` or ``unreachable`` per relayed request (metrics)."""
        self._seq = 0
        self._pending: dict[int, tuple[str, asyncio.Future[Reply]]] = {}
        """Relayed requests waiting for their reply: seq -> (primary, future)."""
        self.served: dict[RequestKey, Served] = {}
        """Requests relayed *to* this node: the service's key -> (follower, its seq)."""
        self.by_origin: dict[tuple[str, int], RequestKey] = {}

    @property
    def pending_to(self) -> set[str]:
        return {primary for primary, _ in self._pending.values()}

    async def ask(self, primary: str, op: RequestOp, timeout_s: float) -> Reply:
        """Send ``op`` (``relayed(op)``) to ``primary`` and wait for its reply
        (``Unavailable`` after ``timeout_s``, or when ``fail`` is called for ``primary``)."""
        self._seq += 1
        seq = self._seq
        message = request_message(seq, op)
        assert message is not None, f"{type(op).__name__} is not relayed"
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending[seq] = (primary, future)
        timer = asyncio.get_running_loop().call_later(
            timeout_s, _settle, future,
            Unavailable(f"{self.describe(primary)} did not answer within {timeout_s:g} s"),
        )  # fmt: skip
        try:
            self.send(primary, message)
            reply = await future
        except asyncio.CancelledError:
            if not future.done() or future.cancelled():
                self.send(primary, RelayCancel(seq))
            raise
        finally:
            timer.cancel()
            self._pending.pop(seq, None)
        if self.count is not None:
            self.count("unreachable" if isinstance(reply.outcome, Unavailable) else "ok")
        return reply

    def on_reply(self, src: str, message: RelayReply) -> None:
        """A reply counts only from the member the request was relayed to."""
        pending = self._pending.get(message.seq)
        if pending is not None and pending[0] == src and not pending[1].done():
            pending[1].set_result(reply_of(message))

    def fail(self, primary: str, why: str) -> None:
        """Every request relayed to ``primary`` gets 503 now (it is gone or deposed):
        ``{describe(primary)} did not answer: {why}``."""
        for target, future in list(self._pending.values()):
            if target == primary:
                _settle(future, Unavailable(f"{self.describe(primary)} did not answer: {why}"))

    def close(self) -> None:
        for _, future in self._pending.values():
            _settle(future, Unavailable("node stopping"))

    # -- the primary's half ------------------------------------------------------------------

    def register(self, key: RequestKey, origin: str, seq: int, op: RequestOp) -> None:
        self.served[key] = Served(origin, seq, op)
        self.by_origin[origin, seq] = key

    def withdraw(self, origin: str, seq: int) -> RequestKey | None:
        """The key of a request ``origin`` cancelled, no longer served (None: unknown)."""
        key = self.by_origin.pop((origin, seq), None)
        if key is not None:
            self.served.pop(key, None)
        return key

    def answered(self, key: RequestKey, reply: Reply) -> bool:
        """Send ``reply`` back if ``key`` is a relayed request; False when it is not."""
        served = self.served.pop(key, None)
        if served is None:
            return False
        self.by_origin.pop((served.origin, served.seq), None)
        self.send(served.origin, reply_message(served.seq, reply))
        return True


def _settle(future: asyncio.Future[Reply], outcome: Unavailable) -> None:
    if not future.done():
        future.set_result(Reply(RELAYED, outcome))
