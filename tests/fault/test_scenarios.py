"""Jepsen-style scenarios (issue 6): real ``paxlock serve`` processes, real faults, and a
history of concurrent clients checked for linearizability, fencing and validity intervals.

Each test is one run of ``runner.run_scenario``, bounded to 60 s (plus ``PAXLOCK_SOAK_S``);
its report is printed (``pytest -s``) and written beside its history under
``$TMPDIR/paxlock-fault/`` (see ``conftest.artifacts_root``).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from cluster import FaultCluster, wait_until
from runner import DurabilityProbe, Nemesis, run_scenario
from workload import WorkloadConfig

pytestmark = pytest.mark.fault

PAUSE_S = 1.5
"""SIGSTOP length: five election timeouts (0.3 s), shorter than a client's request timeout
(2.5 s in that scenario), so that requests queued at the paused primary are answered — or
not — after it resumes."""
FAULT_S = 2.0
"""How long a partition lasts once the survivors have a new primary."""

ClusterFactory = Callable[..., FaultCluster]


def _others(nemesis: Nemesis, *nodes: str) -> list[str]:
    return [n for n in nemesis.ids if n not in nodes]


def test_primary_kill(fault_cluster: ClusterFactory, artifacts: Path) -> None:
    """SIGKILL the primary; the others elect a successor; the dead one restarts and catches up."""

    async def cycle(nemesis: Nemesis) -> None:
        old = await nemesis.primary()
        at = await nemesis.kill(old)
        await nemesis.failover(f"kill -9 {old}", at, old, among=_others(nemesis, old))
        await nemesis.hold(FAULT_S)
        await nemesis.start(old)
        await nemesis.caught_up()

    run_scenario(fault_cluster(3), "primary_kill", cycle, artifacts, cycles=3).assert_ok()


def test_primary_pause_longer_than_election_timeout(fault_cluster: ClusterFactory,
                                                     artifacts: Path) -> None:  # fmt: skip
    """SIGSTOP the primary for five election timeouts; a successor takes office; SIGCONT.
    The old primary must neither grant nor renew anything asked of it after its successor
    took office (``Deposed``), and the history must stay linearizable. Besides the random
    workload, a probe takes a grant from the successor during the pause and sends a renewal,
    a read and a rival acquire of it to the paused primary, answered once it resumes."""

    async def cycle(nemesis: Nemesis) -> None:
        old = await nemesis.primary()
        at = await nemesis.pause(old)
        new = await nemesis.failover(f"SIGSTOP {old}", at, old, among=_others(nemesis, old))
        deposed = await nemesis.depose(old, nemesis.now())
        probe = f"pause{len(nemesis.deposed)}"
        nemesis.background(_ask_the_paused(nemesis, probe, old, new))
        await nemesis.hold(max(0.0, PAUSE_S - (nemesis.now() - at)))
        await nemesis.resume(old)
        await nemesis.settled(deposed)

    config = WorkloadConfig(timeout_s=2.5, seed=2)
    run_scenario(fault_cluster(3), "primary_pause", cycle, artifacts, workload=config,
                 cycles=4).assert_ok()  # fmt: skip


async def _ask_the_paused(nemesis: Nemesis, name: str, paused: str, primary: str) -> None:
    """Grant ``name`` through the new primary, then ask the paused one about it."""
    patient = 3 * PAUSE_S
    async with nemesis.workload.probe_client(f"{name}-holder") as holder, \
            nemesis.workload.probe_client(f"{name}-rival") as rival:  # fmt: skip
        grant = await holder.acquire(name, primary, ttl=30.0, wait=0.0)
        if grant.type != "ok" or grant.lease is None:
            return
        token = grant.lease.token
        await asyncio.gather(
            holder.renew(name, paused, token, timeout_s=patient),
            rival.read(name, paused, timeout_s=patient),
            rival.acquire(name, paused, ttl=30.0, wait=0.0, timeout_s=patient),
            rival.acquire(name, paused, ttl=30.0, wait=0.2, timeout_s=patient),
        )  # fmt: skip
        await holder.release(name, primary, token)


def test_primary_pauses_around_the_election_timeout(fault_cluster: ClusterFactory,
                                                    artifacts: Path) -> None:  # fmt: skip
    """SIGSTOP the primary for 0.5 to 3 election timeouts, again and again: it resumes before,
    during or after its succession — the races between an old primary's queued renewals,
    reads and proposals and a new primary's phase 1 and first lease timers."""

    async def cycle(nemesis: Nemesis) -> None:
        rng = random.Random(9)
        for _ in range(8):
            old = await nemesis.primary()
            pause_s = rng.uniform(0.15, 0.9)
            at = await nemesis.pause(old)
            await nemesis.hold(pause_s)
            await nemesis.resume(old)
            await nemesis.failover(f"SIGSTOP {old} for {pause_s:.2f}s", at, old,
                                   exclude_old=False)  # fmt: skip
            await nemesis.hold(rng.uniform(0.2, 0.6))

    config = WorkloadConfig(clients=8, seed=9)
    run_scenario(fault_cluster(3), "primary_short_pauses", cycle, artifacts, workload=config
                 ).assert_ok()  # fmt: skip


def test_primary_isolated_by_symmetric_partition(fault_cluster: ClusterFactory,
                                                 artifacts: Path) -> None:  # fmt: skip
    """Cut every link to and from the primary (clients still reach it); the majority elects a
    successor; the isolated primary must stop granting and renewing; heal."""

    async def cycle(nemesis: Nemesis) -> None:
        old = await nemesis.primary()
        at = await nemesis.partition([old])
        await nemesis.failover(f"isolate {old}", at, old, among=_others(nemesis, old))
        deposed = await nemesis.depose(old, nemesis.now())
        await nemesis.hold(FAULT_S)
        await nemesis.heal()
        await nemesis.settled(deposed)

    config = WorkloadConfig(seed=3)
    run_scenario(fault_cluster(3), "primary_isolated", cycle, artifacts, workload=config,
                 cycles=3).assert_ok()  # fmt: skip


def test_minority_partition(fault_cluster: ClusterFactory, artifacts: Path) -> None:
    """Five members. First the primary and one follower are cut off from the other three (a
    failover in the majority); then two followers are (the primary keeps serving: writes
    must go on during the partition)."""

    async def cycle(nemesis: Nemesis) -> None:
        old = await nemesis.primary()
        follower = _others(nemesis, old)[0]
        at = await nemesis.partition([old, follower])
        await nemesis.failover(f"partition {old},{follower} from the rest", at, old,
                               among=_others(nemesis, old, follower))  # fmt: skip
        deposed = await nemesis.depose(old, nemesis.now())
        await nemesis.hold(FAULT_S)
        await nemesis.heal()
        await nemesis.settled(deposed)
        primary = await nemesis.primary()
        minority = _others(nemesis, primary)[:2]
        at = await nemesis.partition(minority)
        await nemesis.ok_write_since(at)  # the majority with the primary keeps serving
        await nemesis.hold(FAULT_S)
        await nemesis.heal()

    config = WorkloadConfig(clients=8, seed=4)
    run_scenario(fault_cluster(5), "minority_partition", cycle, artifacts, workload=config,
                 cycles=2).assert_ok()  # fmt: skip


def test_one_way_partitions(fault_cluster: ClusterFactory, artifacts: Path) -> None:
    """Each directed link is its own connection, so cutting one proxy is a one-way partition:
    (1) the primary cannot send, but hears everyone; (2) the primary cannot hear, but its
    heartbeats still arrive; (3) one follower cannot reach the other."""

    async def cycle(nemesis: Nemesis) -> None:
        old = await nemesis.primary()
        others = _others(nemesis, old)
        out = [(old, n) for n in others]
        at = await nemesis.cut(out)
        await nemesis.failover(f"cut {old} -> others", at, old, among=others)
        deposed = await nemesis.depose(old, nemesis.now())
        await nemesis.hold(FAULT_S)
        await nemesis.heal_links(out)
        await nemesis.settled(deposed)

        old = await nemesis.primary()
        others = _others(nemesis, old)
        inbound = [(n, old) for n in others]
        at = await nemesis.cut(inbound)
        await nemesis.failover(f"cut others -> {old}", at, old, among=others)
        deposed = await nemesis.depose(old, nemesis.now())
        await nemesis.hold(FAULT_S)
        await nemesis.heal_links(inbound)
        await nemesis.settled(deposed)

        primary = await nemesis.primary()
        a, b = _others(nemesis, primary)
        at = await nemesis.cut([(a, b)])
        await nemesis.ok_write_since(at)
        await nemesis.hold(FAULT_S)
        await nemesis.heal_links([(a, b)])

    config = WorkloadConfig(seed=5)
    run_scenario(fault_cluster(3), "one_way_partitions", cycle, artifacts, workload=config
                 ).assert_ok()  # fmt: skip


def test_flapping_links(fault_cluster: ClusterFactory, artifacts: Path) -> None:
    """Five members; for a while, every few hundred milliseconds a random directed link is cut
    (black hole or reset) or healed, and random links get up to 100 ms of latency."""

    async def cycle(nemesis: Nemesis) -> None:
        rng = random.Random(6)
        links = nemesis.cluster.net.links
        flap_until = nemesis.now() + 8.0
        while nemesis.now() < flap_until:
            pair = rng.choice(links)
            roll = rng.random()
            if roll < 0.45:
                await nemesis.cut([pair], mode=rng.choice(["drop", "refuse"]))
            elif roll < 0.8:
                await nemesis.heal_links([pair])
            else:
                await nemesis.delay([pair], rng.choice([0.0, 0.02, 0.05, 0.1]))
            await nemesis.hold(rng.uniform(0.1, 0.5))
        await nemesis.heal()

    config = WorkloadConfig(clients=8, seed=6)
    run_scenario(fault_cluster(5), "flapping_links", cycle, artifacts, workload=config
                 ).assert_ok()  # fmt: skip


def test_slow_and_jittery_links(fault_cluster: ClusterFactory, artifacts: Path) -> None:
    """Every peer link gets 30 to 130 ms of latency, redrawn every half second (round trips
    close to the election timeout: spurious step-downs and elections, slow confirmation
    rounds, expiries that take a while to reach the log); then the primary is killed."""

    async def cycle(nemesis: Nemesis) -> None:
        rng = random.Random(10)
        links = nemesis.cluster.net.links
        until = nemesis.now() + 6.0
        while nemesis.now() < until:
            for pair in links:
                nemesis.cluster.net.delay(*pair, rng.uniform(0.03, 0.13))
            nemesis.note("latency redrawn on every link (30-130 ms)")
            await nemesis.hold(0.5)
        old = await nemesis.primary()
        at = await nemesis.kill(old)
        await nemesis.failover(f"kill -9 {old} (slow links)", at, old,
                               among=_others(nemesis, old))  # fmt: skip
        await nemesis.hold(FAULT_S)

    config = WorkloadConfig(seed=10)
    run_scenario(fault_cluster(3), "slow_links", cycle, artifacts, workload=config
                 ).assert_ok()  # fmt: skip


def test_lagging_member_catches_up_from_a_snapshot_then_leads(
    fault_cluster: ClusterFactory, artifacts: Path,
) -> None:
    """Five members compacting their logs every 20 slots. One follower is cut off (a black
    hole: what is sent to it is lost, not queued) while the workload goes on, so the slots it
    misses are compacted away: healed, it must catch up by installing a peer's snapshot.
    Then it is made the only possible successor (the other followers cannot reach each
    other) and the primary is killed: the member rebuilt from the snapshot serves it all."""

    async def cycle(nemesis: Nemesis) -> None:
        primary = await nemesis.primary()
        lagging = _others(nemesis, primary)[0]
        await nemesis.partition([lagging])
        await _progress(nemesis, primary, slots=3 * SNAPSHOT_EVERY)  # compacted meanwhile
        await nemesis.heal()
        await nemesis.caught_up([lagging])
        installs = _snapshot_installs(nemesis.cluster, lagging)
        nemesis.checks[f"snapshots installed by {lagging} (slots)"] = installs
        assert installs, f"{lagging} caught up without installing a peer's snapshot"

        old = await nemesis.primary()
        rest = _others(nemesis, old, lagging)
        await nemesis.cut([(a, b) for a in rest for b in rest if a != b])
        at = await nemesis.kill(old)
        new = await nemesis.failover(f"kill -9 {old} ({lagging} the only possible successor)",
                                     at, old, among=[lagging, *rest])  # fmt: skip
        assert new == lagging, f"{new} took office, not {lagging}"
        await nemesis.hold(FAULT_S)

    config = WorkloadConfig(clients=8, seed=11)
    cluster = fault_cluster(5, extra_args=["--snapshot-every", str(SNAPSHOT_EVERY)])
    run_scenario(cluster, "snapshot_catch_up", cycle, artifacts, workload=config).assert_ok()


SNAPSHOT_EVERY = 20


async def _progress(nemesis: Nemesis, node: str, slots: int, timeout_s: float = 20.0) -> None:
    """Wait until ``node`` has chosen ``slots`` more slots than now."""
    view = await nemesis.probe.view(node)
    assert view is not None, f"{node} does not answer"
    target = view["chosen_index"] + slots

    async def reached() -> bool:
        now = await nemesis.probe.view(node)
        return now is not None and now["chosen_index"] >= target

    await wait_until(reached, timeout_s, f"{node} to choose slot {target}")


def _snapshot_installs(cluster: FaultCluster, node: str) -> list[int]:
    """Slots of the snapshots ``node`` installed since it last started (from its log)."""
    import json

    text = cluster.members[node].log_path.read_text(errors="replace")
    installed = []
    for line in text.rsplit("=== start", 1)[-1].splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "snapshot_installed":
            installed.append(int(event["slot"]))
    return installed


def test_rolling_restarts(fault_cluster: ClusterFactory, artifacts: Path) -> None:
    """Restart every member in turn (followers first, SIGKILL and SIGTERM alternately), each
    waiting for the cluster to agree on a primary and catch up; acknowledged grants and
    releases from before are still there after."""

    async def cycle(nemesis: Nemesis) -> None:
        probe = DurabilityProbe(nemesis)
        await probe.write()
        primary = await nemesis.primary()
        order = [*_others(nemesis, primary), primary]
        for i, node in enumerate(order):
            at = await nemesis.restart(node, clean=bool(i % 2))
            if node == primary:
                await nemesis.failover(f"restart {node}", at, node, exclude_old=False)
            await nemesis.primary()
            await nemesis.caught_up()
        assert not await probe.verify(), nemesis.checks["durability"]

    run_scenario(fault_cluster(3), "rolling_restarts", cycle, artifacts,
                 workload=WorkloadConfig(seed=7), cycles=2).assert_ok()  # fmt: skip


def test_majority_killed_and_restarted(fault_cluster: ClusterFactory, artifacts: Path) -> None:
    """SIGKILL the primary and one follower (no quorum: nothing may succeed), restart them;
    then SIGKILL all three and restart. Acknowledged grants and releases survive both."""

    async def cycle(nemesis: Nemesis) -> None:
        probe = DurabilityProbe(nemesis)
        await probe.write()
        old = await nemesis.primary()
        majority = [old, _others(nemesis, old)[0]]
        at = await nemesis.kill(*majority)
        down = nemesis.now()
        await nemesis.hold(FAULT_S)
        up = await nemesis.start(*majority)
        succeeded = [op for op in nemesis.recorder.history.ops
                     if op.type == "ok" and down < op.inv and op.end < up]  # fmt: skip
        nemesis.checks["no quorum, no success"] = f"{len(succeeded)} ok ops while 2 of 3 down"
        assert not succeeded, f"ok without a quorum: {succeeded[:3]}"
        await nemesis.failover(f"kill -9 {','.join(majority)}", at, None)
        assert not await probe.verify(), nemesis.checks["durability"]
        at = await nemesis.kill(*nemesis.ids)
        await nemesis.hold(1.0)
        await nemesis.start(*nemesis.ids)
        await nemesis.failover("full restart", at, None)
        assert not await probe.verify(), nemesis.checks["durability"]

    run_scenario(fault_cluster(3), "majority_killed", cycle, artifacts,
                 workload=WorkloadConfig(seed=8)).assert_ok()  # fmt: skip
