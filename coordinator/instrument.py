"""Wires a node's parts to its ``Metrics``: the core's events, the runtime's flushes, the
transport's messages and the state machine's changes. The core itself never counts: it
returns events, and this module turns them into samples.

Lease events (grants, releases, expiries) count when the primary's keeper applies them in
office (``Applied.in_office``), and only when they changed the machine (``Applied.changed``:
a retry answered from the idempotency window, or a stale expiry, is no event). Each is then
counted once in the cluster, so a dashboard may sum members; and a restarted member, which
re-applies its whole log before it can take office, counts none of it again. The price: the
few commands a new primary applies from its predecessor's last moments, before its own
office entry, are counted by the predecessor only if it applied them itself.
"""

from __future__ import annotations

from collections.abc import Sequence

from paxlock._logs import get_logger
from paxlock.coordinator.core.lease_commands import Expired, Lease, Released
from paxlock.coordinator.core.messages import Accept, Accepted, Batch, Chosen, ChosenEntry, Envelope
from paxlock.coordinator.core.proposer import Role
from paxlock.coordinator.core.ready import BecamePrimary, Phase1Started, SteppedDown
from paxlock.coordinator.core.replica_io import (
    Applied,
    Renewed,
    ReplicaEvent,
    ReplicaReady,
    TookOffice,
)
from paxlock.coordinator.metrics import Metrics
from paxlock.coordinator.ports import Clock, Transport
from paxlock.coordinator.runtime import Runtime

log = get_logger("paxlock.consensus")

PHASE2_SLOTS_MAX = 4096
"""Slots whose phase 2 is being timed at once (the proposer keeps far fewer in flight)."""


class CountingTransport:
    """A transport that counts what it carries (learn messages, phase-2 rounds)."""

    def __init__(self, inner: Transport, metrics: Metrics, peers: int) -> None:
        self.inner = inner
        self.metrics = metrics
        self.peers = max(1, peers)

    def send(self, envelopes: Sequence[Envelope]) -> None:
        learn = accepts = 0
        for envelope in envelopes:
            if isinstance(envelope.msg, Accepted | Chosen):
                learn += 1
            elif isinstance(envelope.msg, Accept):
                accepts += 1
        if learn:
            self.metrics.learn_messages.inc(learn)
        if accepts:
            self.metrics.phase2_rounds.inc(accepts / self.peers)
        self.metrics.peer_messages_sent.inc(len(envelopes))
        self.inner.send(envelopes)


class Instrumentation:
    def __init__(self, metrics: Metrics, clock: Clock) -> None:
        self.metrics = metrics
        self.clock = clock
        self._phase1_started: float | None = None
        self._phase2_started: dict[int, float] = {}
        """Slot -> when this primary proposed it (the step with its first Accept)."""
        self._dropped: dict[str, int] = {}
        self._dropped_seen: dict[str, int] = {}

    def attach(self, runtime: Runtime) -> None:
        """Gauges read the replica's ``status()``; counters follow every step's effects."""
        m = self.metrics
        status = runtime.replica.status
        m.is_primary.set_function(lambda: 1.0 if status().role is Role.PRIMARY else 0.0)
        m.chosen_index.set_function(lambda: float(status().chosen_index))
        m.applied_index.set_function(lambda: float(status().applied_index))
        m.ballot_round.set_function(lambda: float(status().highest_round))
        m.leases_held.set_function(lambda: float(status().leases))
        m.waiters.set_function(lambda: float(status().waiters))

        def flushed(records: int, messages: int, seconds: float) -> None:
            if records:
                m.fsync_latency.observe(seconds)
                m.fsync_records.observe(records)

        runtime.on_flush = flushed
        runtime.sinks.append(self.on_ready)
        self._dropped = runtime.replica.node.dropped

    def _count_dropped(self) -> None:
        """The core counts the messages it did not believe (``Node.dropped``, cumulative);
        the counter follows it by the difference."""
        for reason, count in self._dropped.items():
            seen = self._dropped_seen.get(reason, 0)
            if count != seen:
                self.metrics.peer_messages_dropped.labels(reason=reason).inc(count - seen)
                self._dropped_seen[reason] = count

    def on_ready(self, ready: ReplicaReady) -> None:
        if self._dropped:
            self._count_dropped()
        if ready.installed is not None:
            log.info("snapshot_installed", slot=ready.installed[0])
        self._time_phase2(ready)
        for entry in ready.learned:
            self.on_entry(entry)
        for applied in ready.applied:
            self.on_applied(applied)
        for event in ready.events:
            self.on_event(event)

    def _time_phase2(self, ready: ReplicaReady) -> None:
        """Phase 2 as the primary sees it: from the step that sent a slot's first Accept to
        the step that learned the slot chosen. Only a primary sends Accepts; a slot it never
        learns (it stepped down, or a snapshot covered it) is forgotten, not observed."""
        started = self._phase2_started
        if ready.installed is not None:
            for slot in [s for s in started if s <= ready.installed[0]]:
                del started[slot]
        if not ready.messages and not ready.learned:
            return
        now = self.clock()
        for envelope in ready.messages:
            msg = envelope.msg
            if isinstance(msg, Accept) and len(started) < PHASE2_SLOTS_MAX:
                started.setdefault(msg.slot, now)
        for entry in ready.learned:
            sent = started.pop(entry.slot, None)
            if sent is not None:
                self.metrics.phase2_latency.observe(now - sent)

    def on_entry(self, entry: ChosenEntry) -> None:
        self.metrics.slots_chosen.inc()
        if isinstance(entry.value, Batch):
            self.metrics.batch_size.observe(len(entry.value.commands))

    def on_applied(self, applied: Applied) -> None:
        """Lease events, counted by the primary in office (see the module docstring)."""
        if not (applied.in_office and applied.changed):
            return
        m, result = self.metrics, applied.result
        if isinstance(result, Lease) and result.token == result.revision:
            m.grants.inc()
        elif isinstance(result, Released):
            m.releases.inc()
        elif isinstance(result, Expired):
            m.expiries.inc()

    def on_event(self, event: ReplicaEvent) -> None:
        """Count the core's events and log the ones an operator wants to see, bound with the
        ballot and slot they concern (the node id is bound by ``configure_logging``)."""
        m = self.metrics
        if isinstance(event, Renewed):
            m.renewals.inc(event.count)
        elif isinstance(event, Phase1Started):
            self._phase2_started.clear()
            m.phase1_rounds.inc()
            self._phase1_started = self.clock()
            log.info("phase1_started", ballot=str(event.ballot), slot=event.from_slot)
        elif isinstance(event, BecamePrimary):
            m.primary_changes.inc()
            if self._phase1_started is not None:
                m.phase1_latency.observe(self.clock() - self._phase1_started)
                self._phase1_started = None
            log.info("became_primary", ballot=str(event.ballot), reproposed=event.reproposed)
        elif isinstance(event, TookOffice):
            log.info("lease_keeper_in_office", ballot=str(event.ballot), slot=event.slot)
        elif isinstance(event, SteppedDown):
            self._phase2_started.clear()
            m.primary_changes.inc()
            log.warning("stepped_down", ballot=str(event.ballot),
                        higher=str(event.higher) if event.higher else None,
                        reason="higher ballot" if event.higher else "lost the majority")  # fmt: skip
