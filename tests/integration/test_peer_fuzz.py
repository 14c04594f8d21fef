"""A fuzzer over the peer channel (issue 12, item 0): arbitrary messages of every type of the
``Message`` union — extreme ballot rounds (around 2^62, 2^63, 2^64), slots at 0 and huge,
empty and huge strings, batches of lease commands with odd names, snapshots of garbage —
and raw byte garbage, sent as frames through a real ``/internal/ws`` to a real 3-member
cluster, which must come out unharmed (``peer_attack.assert_unharmed``).

Two attackers. With a cluster token configured, one without it: every handshake is refused
(401, counted), so no frame of any shape reaches a member. Without a token, one naming a
member (any member id but the target's own is accepted: a claim, not a proof): its frames
meet the decoder's bounds — every frame that breaks one is dropped and counted — and then
the core's own rules (``core.admission``: a catch-up reply only as an answer, a Chosen only
from the learner a member follows, slots and rounds near what it knows). Before those rules,
an unasked CatchupReply with a forged snapshot, seen here, replaced the state of every
member, and a Prepare at round 2^62 left no successor round that could be encoded.

Hypothesis runs derandomized with a bounded number of examples, so the run is the same
every time and takes seconds.
"""

from __future__ import annotations

import runpy
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paxlock.api.server.peer import decode_batch
from paxlock.coordinator.core import messages as m
from paxlock.coordinator.core.ballot import Ballot
from paxlock.coordinator.core import lease_commands as lc
from paxlock.coordinator.core.proposal import Proposal, encode_proposal

harness = sys.modules["paxlock_test_harness"]  # registered by tests/conftest.py
attack = SimpleNamespace(**runpy.run_path(str(Path(__file__).with_name("peer_attack.py"))))

TOKEN = "fuzz-cluster-token"
MEMBERS = ("n1", "n2", "n3")
EXAMPLES = 100

# -- values at and around every bound ---------------------------------------------------------

EDGES = [0, 1, 2**31, 2**32, 2**53, 2**62 - 1, 2**62, 2**62 + 1, 2**63 - 1, 2**63, 2**64 - 1]
ints = st.one_of(st.sampled_from(EDGES + [-1, -(2**63)]), st.integers(0, 50),
                 st.integers(-(2**63), 2**64 - 1))  # fmt: skip
"""What msgpack can carry: every int in [-2^63, 2^64 - 1]; the decoder bounds the rest."""
texts = st.one_of(st.sampled_from(["", "n1", "n2", "n3", "zz", "\x00", "../../etc", "a:b"]),
                  st.sampled_from([256, 257, 100_000]).map(lambda n: "x" * n),
                  st.text(max_size=40))  # fmt: skip
floats = st.floats(allow_nan=True, allow_infinity=True)
ballots = st.builds(Ballot, ints, texts)
names = st.one_of(texts, st.sampled_from(["a/b", "/", "é", "x:y", "a" * 256, "a" * 257]))
commands = st.one_of(
    st.builds(lc.Acquire, names, texts, floats, st.none() | texts, floats, st.none() | texts),
    st.builds(lc.Release, names, texts, ints, st.none() | texts),
    st.builds(lc.Proclaim, names, texts, ints, st.none() | texts, st.none() | texts),
    st.builds(lc.Expire, names, ints, ballots),
    st.builds(lc.Unblock, names, ints, ballots),
    st.builds(lc.Office, ballots),
)  # fmt: skip
raw_commands = st.one_of(
    st.builds(lambda o, s, c: encode_proposal(Proposal(o, s, c)), texts, ints, commands),
    st.binary(max_size=64),
)  # fmt: skip
values = st.one_of(st.just(m.NOOP), st.builds(m.Batch, st.lists(raw_commands, max_size=4)
                                              .map(tuple)))  # fmt: skip
snapshots = st.builds(m.Snapshot, ints, st.binary(max_size=256))
small = st.integers(0, 3)


def _tuples(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[tuple[Any, ...]]:
    return st.lists(strategy, max_size=3).map(tuple)


MESSAGES: dict[type, st.SearchStrategy[Any]] = {
    m.Prepare: st.builds(m.Prepare, ballots, ints),
    m.Promise: st.builds(m.Promise, ballots, ints,
                         _tuples(st.builds(m.AcceptedEntry, ints, ballots, values)), ints),
    m.Accept: st.builds(m.Accept, ballots, ints, values, ints),
    m.Accepted: st.builds(m.Accepted, ballots, ints, values),
    m.Nack: st.builds(m.Nack, ballots, ballots),
    m.Chosen: st.builds(m.Chosen, ints, values),
    m.Heartbeat: st.builds(m.Heartbeat, ballots, ints, ints,
                           _tuples(st.builds(m.HeardFrom, texts, floats, st.none() | ints))),
    m.HeartbeatAck: st.builds(m.HeartbeatAck, ballots, ints, st.none() | ints),
    m.Handover: st.builds(m.Handover, ballots, texts),
    m.PreVote: st.builds(m.PreVote, ints),
    m.PreVoteReply: st.builds(m.PreVoteReply, ints, st.booleans()),
    m.CatchupRequest: st.builds(m.CatchupRequest, ints),
    m.CatchupReply: st.builds(m.CatchupReply, _tuples(st.builds(m.ChosenEntry, ints, values)),
                              ints, st.none() | snapshots),
}  # fmt: skip


def _encodable(messages: list[Any]) -> bytes:
    """Encoded unchecked, as a forger's encoder would (only decoding checks bounds)."""
    return msgspec.msgpack.encode(messages)


frames = st.one_of(
    st.lists(st.one_of(*MESSAGES.values()), min_size=1, max_size=4).map(_encodable),
    st.binary(max_size=512),
    st.builds(lambda head, tail: head + tail,
              st.lists(st.one_of(*MESSAGES.values()), min_size=1, max_size=2).map(_encodable),
              st.binary(min_size=1, max_size=8)),  # a valid frame with trailing bytes
)  # fmt: skip


def test_every_message_type_of_the_union_is_fuzzed() -> None:
    union = m.Message.__args__
    assert set(MESSAGES) == set(union), set(union) ^ set(MESSAGES)


FUZZ = settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])  # fmt: skip


@pytest.fixture(scope="module")
def open_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with harness.running_cluster(tmp_path_factory.mktemp("open")) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def token_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with attack.cluster_with_token(tmp_path_factory.mktemp("token"), TOKEN) as cluster:
        yield cluster


def test_without_the_token_no_fuzzed_frame_gets_past_the_handshake(token_cluster: Any) -> None:
    cluster = token_cluster
    token = attack.assert_unharmed(cluster, "before")
    attempts = {node: 0 for node in MEMBERS}

    @FUZZ
    @given(frame=frames, target=st.sampled_from(MEMBERS),
           claimed=st.none() | st.sampled_from(MEMBERS + ("zz",)))  # fmt: skip
    def send(frame: bytes, target: str, claimed: str | None) -> None:
        attempts[target] += 1
        status = attack.send_frames(cluster.url(target), [frame], claimed=claimed)
        assert status == 401, status

    send()
    attack.assert_unharmed(cluster, "after", token)
    for node, count in attempts.items():
        refused = cluster.metric(node, "paxlock_peer_refused_total", '{reason="token"}')
        assert refused == count, (node, refused, count)
        assert cluster.metric(node, "paxlock_peer_messages_received_total") is not None


def _breaks_a_bound(frame: bytes) -> bool:
    try:
        decode_batch(frame)
    except msgspec.DecodeError:
        return True
    return False


def test_fuzzed_frames_that_break_a_bound_are_dropped_and_counted(open_cluster: Any) -> None:
    """A claimed member's frames that fail decoding: each one dropped and counted where it
    arrived, nothing of it reaching the core."""
    cluster = open_cluster
    token = attack.assert_unharmed(cluster, "bounds-before")
    invalid = '{reason="invalid"}'
    before = {n: cluster.metric(n, "paxlock_peer_frames_dropped_total", invalid) for n in MEMBERS}
    sent = {n: 0 for n in MEMBERS}

    @FUZZ
    @given(frame=frames.filter(_breaks_a_bound), target=st.sampled_from(MEMBERS), other=small)
    def send(frame: bytes, target: str, other: int) -> None:
        claimed = [n for n in MEMBERS if n != target][other % 2]
        assert attack.send_frames(cluster.url(target), [frame], claimed=claimed) is None
        sent[target] += 1

    send()
    attack.assert_unharmed(cluster, "bounds-after", token)
    for node in MEMBERS:
        after = cluster.metric(node, "paxlock_peer_frames_dropped_total", invalid)
        assert after == before[node] + sent[node], (node, before[node], sent[node], after)


def test_fuzzed_frames_from_a_claimed_member_leave_the_cluster_unharmed(cluster: Any) -> None:
    """Every frame, within the bounds or not, from a member id the target accepts as a claim
    (no token): the bounds drop what breaks them, the core must refuse the rest."""
    token = attack.assert_unharmed(cluster, "before")

    @FUZZ
    @given(frame=frames, target=st.sampled_from(MEMBERS), other=small)
    def send(frame: bytes, target: str, other: int) -> None:
        claimed = [n for n in MEMBERS if n != target][other % 2]
        assert attack.send_frames(cluster.url(target), [frame], claimed=claimed) is None

    send()
    attack.assert_unharmed(cluster, "after", token)
