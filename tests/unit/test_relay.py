"""``coordinator.relay.Relay``, the follower's half, without a network: a reply counts only
from the member the request went to; a primary that is gone fails its requests at once; a
request nobody answers fails after its timeout; a cancelled one tells the primary."""

from __future__ import annotations

import asyncio

from paxlock.api.server.peer import decode_batch, encode_batch
from paxlock.api.server.wire import TOKEN_MAX
from paxlock.coordinator.core.keeper_effects import Unavailable
from paxlock.coordinator.core.lease_commands import Lease, Release
from paxlock.coordinator.core.replica_io import ReleaseOp, RenewOp
from paxlock.coordinator.relay import RelayCancel, RelayReply, Relay, request_message

OP = ReleaseOp(Release("x", "h", 7))
LEASE = Lease("x", "h", 7, 7, 5.0, None, 0.0)


def relay() -> tuple[Relay, list[tuple[str, object]]]:
    sent: list[tuple[str, object]] = []
    return Relay(lambda peer, message: sent.append((peer, message))), sent


async def test_a_reply_counts_only_from_the_member_the_request_was_relayed_to() -> None:
    r, sent = relay()
    asked = asyncio.ensure_future(r.ask("n1", OP, 5.0))
    await asyncio.sleep(0)
    (peer, message), = sent
    assert peer == "n1"
    r.on_reply("n3", RelayReply(message.seq, result=LEASE))  # type: ignore[attr-defined]
    await asyncio.sleep(0)
    assert not asked.done()
    r.on_reply("n1", RelayReply(message.seq, result=LEASE, expires_in_s=4.0))  # type: ignore[attr-defined]
    reply = await asyncio.wait_for(asked, 5)
    assert reply.outcome == LEASE and reply.expires_in_s == 4.0


async def test_a_primary_that_is_gone_fails_its_requests_at_once_and_only_its_own() -> None:
    r, _ = relay()
    to_n1 = asyncio.ensure_future(r.ask("n1", OP, 60.0))
    to_n2 = asyncio.ensure_future(r.ask("n2", OP, 60.0))
    await asyncio.sleep(0)
    r.fail("n1", "connection refused")
    reply = await asyncio.wait_for(to_n1, 5)
    assert reply.outcome == Unavailable("the primary n1 did not answer: connection refused")
    assert not to_n2.done()
    to_n2.cancel()


async def test_an_unanswered_request_fails_after_its_timeout_and_a_cancelled_one_says_so() -> None:
    r, sent = relay()
    reply = await asyncio.wait_for(r.ask("n1", OP, 0.05), 5)
    assert reply.outcome == Unavailable("the primary n1 did not answer within 0.05 s")
    asked = asyncio.ensure_future(r.ask("n1", OP, 60.0))
    await asyncio.sleep(0)
    asked.cancel()
    await asyncio.gather(asked, return_exceptions=True)
    assert isinstance(sent[-1][1], RelayCancel) and sent[-1][1].seq == sent[-2][1].seq  # type: ignore[attr-defined]


def test_a_relayed_renew_carries_any_token_the_http_api_takes() -> None:
    """Regression (schemathesis, issue 16): a renew with a token above 2^62 sent to a
    follower was dropped by the primary's frame decoder (``RelayRenew.token`` was a ``Seq``),
    and the follower answered 503 after its 5 s forwarding timeout instead of 409."""
    message = request_message(3, RenewOp("x", "h", TOKEN_MAX, ""))
    assert message is not None
    assert decode_batch(encode_batch([message])) == [message]
