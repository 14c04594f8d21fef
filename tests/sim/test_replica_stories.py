"""Issue 10's two lease-layer faults, scripted step by step on three real ``LeaseReplica``s
joined by an in-memory network (deterministic: no election, no clock, no randomness that
matters). Each story runs against the shipped replica, where it must be safe and live, and
against the code as it stood before office entries (``NoOfficeEntry``) and a machine that
ignores decision ballots (``TrustsEveryDecision``), where it must show the fault — so the
story is known to reach the faulty state at all.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from paxlock.coordinator.core.ballot import Ballot
from paxlock.coordinator.core.config import CoreConfig
from paxlock.coordinator.core.keeper_effects import Reply, RequestKey, Unavailable
from paxlock.coordinator.core.lease_commands import (
    Acquire,
    Expire,
    Ignored,
    Lease,
    Proclaim,
    Refused,
)
from paxlock.coordinator.core.leases import LeaseMachine
from paxlock.coordinator.core.messages import Envelope
from paxlock.coordinator.core.ready import DurableState
from paxlock.coordinator.core.replica import LeaseReplica
from paxlock.coordinator.core.replica_io import (
    AcquireOp,
    ProclaimOp,
    RenewOp,
    ReplicaReady,
    RequestOp,
)
from lease_plants import NoOfficeEntry, TrustsEveryDecision

MEMBERS = ("n1", "n2", "n3")
TTL_S = 1.0
MARGIN = 0.1


class Net:
    """Three replicas and the messages between them; ``cut`` members hear nothing and are
    heard by nobody (a partition, or a crash when they are never healed)."""

    def __init__(self, *, snapshot_every: int = 1000, election: bool = False,
                 replica: Callable[..., LeaseReplica] = LeaseReplica,
                 machine: Callable[[], LeaseMachine] = LeaseMachine) -> None:  # fmt: skip
        """With ``election`` on, its timers (10 s and more) never run out within a story,
        but stickiness applies: a member that heard a live primary ignores other phase 1s."""
        self.replicas = {
            m: replica(CoreConfig(m, MEMBERS, election=election, election_timeout_s=10.0,
                                  heartbeat_s=0.05, retry_s=0.05),
                       DurableState(), random.Random(m), origin=f"{m}/1",
                       snapshot_every=snapshot_every, machine_factory=machine)
            for m in MEMBERS
        }  # fmt: skip
        self.queue: list[Envelope] = []
        self.cut: set[str] = set()
        self.replies: dict[RequestKey, Reply] = {}
        self.applied: dict[str, list[Any]] = {m: [] for m in MEMBERS}
        self.next_key = 0
        for member, r in self.replicas.items():
            self.take(member, r.start(0.0))

    def take(self, member: str, ready: ReplicaReady) -> None:
        self.queue += ready.messages
        for reply in ready.replies:
            self.replies[reply.to] = reply
        self.applied[member] += ready.applied

    def settle(self, now: float) -> None:
        """Deliver every message (and what it causes) that the partition lets through."""
        for _ in range(10_000):
            if not self.queue:
                return
            envelope = self.queue.pop(0)
            if envelope.src != envelope.dst and ({envelope.src, envelope.dst} & self.cut):
                continue
            self.take(envelope.dst,
                      self.replicas[envelope.dst].receive(envelope.src, envelope.msg, now))
        raise AssertionError("the network never settled")

    def tick(self, member: str, now: float) -> None:
        self.take(member, self.replicas[member].tick(now))
        self.settle(now)

    def elect(self, member: str, now: float) -> None:
        self.take(member, self.replicas[member].run_phase1(now))
        self.settle(now)

    def ask(self, member: str, op: RequestOp, now: float) -> Reply | None:
        self.next_key += 1
        key = RequestKey(self.next_key)
        self.take(member, self.replicas[member].request(key, op, now))
        self.settle(now)
        return self.replies.get(key)


def acquire(holder: str, name: str = "L") -> AcquireOp:
    return AcquireOp(Acquire(name, holder, TTL_S, request_id=f"{holder}/{name}"))


# --- fault 1: a deposed primary's expiry ends a renewed lease early ----------------------------


def deposed_expiry_story(**parts: Any) -> tuple[Net, Reply | None, float]:
    """n1 grants L to H; n1 is cut off and goes on proposing (M, then its timer's Expire of
    L) into slots only it accepts; n2 takes office with n3 and renews H's lease at t=0.6, so
    H trusts L until 1.5; n2 crashes; n3 runs phase 1 with {n1, n3}, recovers n1's slots by
    P2c(b) and applies them. Returns the net, C's acquire of L at 1.25, and H's trust."""
    net = Net(**parts)
    net.elect("n1", 0.0)
    granted = net.ask("n1", acquire("H"), 0.05)
    assert granted is not None and isinstance(granted.outcome, Lease)
    token = granted.outcome.token
    net.cut = {"n1"}
    net.ask("n1", acquire("X", "M"), 0.2)  # a slot that only n1 accepts
    net.elect("n2", 0.5)
    renewed = net.ask("n2", RenewOp("L", "H", token), 0.6)
    assert renewed is not None and isinstance(renewed.outcome, Lease), renewed
    trusted_until = 0.6 + TTL_S * (1 - MARGIN)
    net.tick("n1", 1.06)  # n1's timer for L (granted at 0.05) ran out: it proposes Expire
    net.cut = {"n2"}  # n2 crashes; n1 is heard again
    net.elect("n3", 1.2)
    contender = net.ask("n3", acquire("C"), 1.25)
    return net, contender, trusted_until


def ghost_expiries(net: Net, member: str) -> list[Any]:
    return [a for a in net.applied[member] if isinstance(a.command, Expire)]


def test_a_deposed_primarys_expire_recovered_by_p2cb_is_a_no_op() -> None:
    """DESIGN §2: "the state machine applies it only when that ballot is not below the latest
    applied office entry's; otherwise the command is a no-op"."""
    net, contender, _ = deposed_expiry_story()
    expiries = ghost_expiries(net, "n3")
    assert expiries, "the story must bring n1's Expire into the log"
    assert all(e.command.ballot == Ballot(1, "n1") for e in expiries)
    assert all(isinstance(e.result, Ignored) and e.result.deposed for e in expiries)
    lease = net.replicas["n3"].machine.get("L")
    assert lease is not None and lease.holder == "H"
    assert contender is not None and isinstance(contender.outcome, Refused)
    assert contender.outcome.code == "held" and contender.outcome.holder == "H"


def test_the_deposed_expiry_story_breaks_the_code_before_office_entries() -> None:
    """Fault 1 as it stood: C is granted L at 1.25 while H trusts it until 1.5."""
    _, contender, trusted_until = deposed_expiry_story(replica=NoOfficeEntry)
    assert contender is not None and isinstance(contender.outcome, Lease)
    assert contender.outcome.holder == "C" and 1.25 < trusted_until


def test_the_deposed_expiry_story_breaks_a_machine_that_ignores_decision_ballots() -> None:
    """Office entries alone do not make the ghost harmless: the ballot rule does."""
    _, contender, _ = deposed_expiry_story(machine=TrustsEveryDecision)
    assert contender is not None and isinstance(contender.outcome, Lease)


# --- fault 2: a primary that catches up by snapshot never takes office -------------------------


def snapshot_catchup_story(**parts: Any) -> tuple[Net, Reply | None]:
    """n3 is down while n1 writes and the log is compacted right at its chosen index (idle
    after compaction); n1 goes down; n3 comes back and runs phase 1 with n2. It is behind,
    so it catches up by snapshot transfer. Returns C's acquire through n3 afterwards."""
    net = Net(snapshot_every=2, **parts)
    net.cut = {"n3"}
    net.elect("n1", 0.0)
    index = 0
    while (chosen := net.replicas["n1"].status().chosen_index) < 4 or chosen % 2:
        reply = net.ask("n1", acquire(f"H{index}", f"L{index}"), 0.1 + index / 100)
        assert reply is not None and isinstance(reply.outcome, Lease)
        index += 1
    for member in ("n1", "n2"):  # idle right after compaction
        status = net.replicas[member].status()
        assert status.chosen_index == status.snapshot_index == chosen, status
    net.cut = {"n1"}
    net.elect("n3", 1.0)
    for step in range(1, 6):  # catch-up runs from the node's timer
        now = 1.0 + step / 10
        for member in ("n2", "n3"):
            net.tick(member, now)
    return net, net.ask("n3", acquire("C", "fresh"), 2.0)


def test_a_primary_that_catches_up_by_snapshot_takes_office() -> None:
    """DESIGN §2: "its keeper takes office only once that entry is applied (so it always
    applies at least one entry, even right after a snapshot install)"."""
    net, reply = snapshot_catchup_story()
    status = net.replicas["n3"].status()
    assert status.in_office and status.snapshot_index >= 4, status
    assert reply is not None and isinstance(reply.outcome, Lease), reply
    assert net.replicas["n3"].machine.get("L0") is not None  # the snapshot's leases are there


def test_the_snapshot_catchup_story_breaks_the_code_before_office_entries() -> None:
    """Fault 2 as it stood: primary, caught up, and "still recovering" for ever."""
    net, reply = snapshot_catchup_story(replica=NoOfficeEntry)
    status = net.replicas["n3"].status()
    assert status.snapshot_index >= 4 and not status.in_office, status
    assert reply is not None and type(reply.outcome).__name__ == "Recovering"


# --- idempotency: a retry whose result was evicted ---------------------------------------------


def test_a_retry_whose_result_was_evicted_is_answered_request_expired() -> None:
    """DESIGN §3: never treated as new. Through the replica, as the service sees it: the
    retried acquire is not granted again and not refused ``held`` by its own grant."""
    net = Net(machine=lambda: LeaseMachine(window_per_holder=1, window_total=1))
    net.elect("n1", 0.0)
    first = net.ask("n1", acquire("H"), 0.1)
    assert first is not None and isinstance(first.outcome, Lease)
    net.ask("n1", acquire("H", "other"), 0.2)  # evicts H's first request id
    retry = net.ask("n1", acquire("H"), 0.3)
    assert retry is not None and isinstance(retry.outcome, Refused)
    assert retry.outcome.code == "request_expired", retry


# --- an unknown outcome tells the caller what is safe -------------------------------------------


def unknown_outcome(request_id: str | None) -> Reply | None:
    """n1 proposes a proclaim that its peers never see; n2 takes office; n1 hears of the
    higher ballot and steps down with the proclaim in flight: it may yet be chosen."""
    net = Net()
    net.elect("n1", 0.0)
    granted = net.ask("n1", acquire("H"), 0.1)
    assert granted is not None and isinstance(granted.outcome, Lease)
    net.cut = {"n1"}
    net.next_key += 1
    key = RequestKey(net.next_key)
    command = Proclaim("L", "H", granted.outcome.token, "v", request_id)
    net.take("n1", net.replicas["n1"].request(key, ProclaimOp(command), 0.2))
    net.settle(0.2)
    net.elect("n2", 0.3)
    net.cut = set()
    net.tick("n2", 0.4)  # n2's heartbeat deposes n1
    return net.replies.get(key)


def test_an_unknown_outcome_with_a_request_id_says_retry_with_it() -> None:
    reply = unknown_outcome("r1")
    assert reply is not None and isinstance(reply.outcome, Unavailable), reply
    assert "retry with the same request_id" in reply.outcome.reason


def test_an_unknown_outcome_without_a_request_id_does_not_mention_one() -> None:
    reply = unknown_outcome(None)
    assert reply is not None and isinstance(reply.outcome, Unavailable), reply
    assert "request_id" not in reply.outcome.reason
    assert "read before retrying" in reply.outcome.reason


# --- graceful hand-over ----------------------------------------------------------------------


def test_a_primary_that_hands_over_is_succeeded_at_once_with_its_leases() -> None:
    """No election timeout runs out: the target runs phase 1 on the Handover, the others
    answer it although they heard the old primary a moment ago (stickiness follows the
    hand-over), and the successor takes office with the grants as they were."""
    net = Net(election=True)
    net.elect("n1", 0.0)
    granted = net.ask("n1", acquire("H"), 0.1)
    assert granted is not None and isinstance(granted.outcome, Lease)
    net.tick("n1", 0.2)  # a heartbeat round, so that n1 knows who is fresh
    net.take("n1", net.replicas["n1"].hand_over(0.25))
    net.settle(0.25)
    successors = [m for m, r in net.replicas.items() if r.status().in_office]
    assert len(successors) == 1 and successors[0] != "n1", successors
    status = net.replicas["n1"].status()
    assert status.primary_hint == successors[0] and not status.in_office
    lease = net.replicas[successors[0]].machine.get("L")
    assert lease is not None and lease.token == granted.outcome.token
    again = net.ask(successors[0], acquire("C"), 0.3)
    assert again is not None and isinstance(again.outcome, Refused)  # still H's


def test_stickiness_still_ignores_a_phase_1_that_no_hand_over_announced() -> None:
    """The contrast: without the Handover, the same phase 1 right after a heartbeat is
    ignored by the member that heard the primary (DESIGN §2, no disruption)."""
    net = Net(election=True)
    net.elect("n1", 0.0)
    net.tick("n1", 0.2)
    net.elect("n2", 0.25)
    assert net.replicas["n1"].status().in_office
    assert not net.replicas["n2"].status().in_office
