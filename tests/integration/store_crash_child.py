"""Fork server for ``test_store_crash``: imports paxlock once, then forks one worker per run.

Protocol on stdin/stdout, one line each (every line is written with a single ``os.write``
below PIPE_BUF, so lines from the server and its workers never interleave mid-line):

    parent -> server   run DATA_DIR SEED RUN_ID
    worker -> parent   START PID                      before the store is opened
                       OPEN                           the store is open and loaded
                       I BID HEX(msgpack [records])   an append is about to be called
                       S BID SLOT                     a snapshot is about to be saved
                       K BID                          that call returned: the moment a reply
                                                      would leave the node
    server -> parent   EXIT PID WAIT_STATUS           the worker is dead and reaped

Forking a warm interpreter makes a run cost milliseconds instead of an interpreter start,
which is what lets the test afford hundreds of SIGKILLs. The server forks before any event
loop or thread exists, so the fork is safe.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import sys

import msgspec

from paxlock.coordinator.core.ballot import ZERO_BALLOT, Ballot
from paxlock.coordinator.core.messages import (
    AcceptRecord,
    Batch,
    ChosenRecord,
    PromiseRecord,
    Record,
)
from paxlock.coordinator.core.ready import DurableState
from paxlock.persistence import SqliteStore

NODE_ID = "n1"
CLUSTER_ID = "crash"
CONCURRENCY = 8
SLOT_SPAN = 40
BATCHES_PER_APPENDER_MAX = 2000
"""A worker nobody kills stops on its own (a bound, not an expected path)."""


def say(line: str) -> None:
    data = (line + "\n").encode()
    assert len(data) < 4096, "one line must be one atomic pipe write"
    os.write(1, data)


class Generator:
    """Draws valid records: the model is advanced in the same synchronous step in which the
    store admits them, so concurrent appenders never present records out of order."""

    def __init__(self, durable: DurableState, snapshot_slot: int, run_id: str) -> None:
        self.run_id = run_id
        self.model = durable
        self.snapshot_slot = snapshot_slot

    def _raise_promise(self, rng: random.Random) -> PromiseRecord:
        """A higher ballot whose node part names the run, so that a ballot never repeats in a
        data dir: a visible promise then names the one call that made it."""
        promised, node = self.model.promised, f"{rng.choice('abc')}.{self.run_id}"
        ballot = Ballot(promised.round + rng.randint(0, 2), node)
        if ballot <= promised:
            ballot = Ballot(promised.round + 1, node)
        return PromiseRecord(ballot)

    def records(self, rng: random.Random, bid: str) -> list[Record]:
        out: list[Record] = []
        for i in range(rng.randint(1, 4)):
            kind = rng.choices(("promise", "accept", "chosen"), weights=(1, 5, 2))[0]
            slot = self.snapshot_slot + rng.randint(1, SLOT_SPAN)
            batch: list[Record]
            if kind == "promise" or self.model.promised == ZERO_BALLOT:
                batch = [self._raise_promise(rng)]
            elif kind == "accept":
                batch = []
                previous = self.model.accepted.get(slot)
                if previous is not None and previous.ballot == self.model.promised:
                    batch.append(self._raise_promise(rng))  # like Acceptor.on_accept
                    self.model.apply(batch[0])
                ballot = self.model.promised
                batch.append(AcceptRecord(slot, ballot, Batch((f"{bid}#{i}".encode(),))))
                self.model.apply(batch[-1])
                out.extend(batch)
                continue
            else:  # the first choice of a slot names its call; a repeat keeps the value
                value = self.model.chosen.get(slot, Batch((f"{bid}#{i}".encode(),)))
                batch = [ChosenRecord(slot, value)]
            for record in batch:
                self.model.apply(record)
            out.extend(batch)
        return out

    def compact(self, slot: int) -> None:
        self.snapshot_slot = slot
        self.model.accepted = {s: e for s, e in self.model.accepted.items() if s > slot}
        self.model.chosen = {s: v for s, v in self.model.chosen.items() if s > slot}


async def workload(data_dir: str, seed: int, run_id: str) -> None:
    store = await SqliteStore.open(data_dir, node_id=NODE_ID, cluster_id=CLUSTER_ID)
    loaded = store.load()
    gen = Generator(loaded.durable, loaded.snapshot_slot, run_id)
    encoder = msgspec.msgpack.Encoder()
    counter = itertools.count()
    say("OPEN")

    async def appender(rng: random.Random) -> None:
        for _ in range(BATCHES_PER_APPENDER_MAX):
            bid = f"{run_id}.{next(counter)}"
            if rng.random() < 0.03:
                slot = gen.snapshot_slot + rng.randint(1, 5)
                say(f"S {bid} {slot}")
                gen.compact(slot)
                await store.save_snapshot(slot, f"snap-{slot}".encode())
            else:
                records = gen.records(rng, bid)
                say(f"I {bid} {encoder.encode(records).hex()}")
                await store.append(records)
            say(f"K {bid}")

    try:
        await asyncio.gather(
            *(appender(random.Random(seed * 1000 + i)) for i in range(CONCURRENCY))
        )
    finally:
        await store.close()


def worker(data_dir: str, seed: int, run_id: str) -> int:
    say(f"START {os.getpid()}")
    try:
        asyncio.run(workload(data_dir, seed, run_id))
    except BaseException:
        import traceback

        traceback.print_exc()
        return 1
    return 0


def main() -> None:
    say("READY")
    while line := sys.stdin.readline():
        command, *args = line.split()
        if command != "run":
            break
        data_dir, seed, run_id = args[0], int(args[1]), args[2]
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = worker(data_dir, seed, run_id)
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        say(f"EXIT {pid} {status}")


if __name__ == "__main__":
    main()
