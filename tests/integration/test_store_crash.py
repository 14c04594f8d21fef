"""kill -9 at random moments: every acknowledged record survives, nothing half-written shows.

A fork server (``store_crash_child.py``) runs workers that append random promise / accept /
chosen records and snapshots through the real ``SqliteStore`` from several concurrent tasks
(so group commit merges them), acknowledging each call on stdout only after it returned. The
test SIGKILLs each worker after a random number of acknowledgements, reopens the store and
checks every acknowledgement ever made in that data dir, plus atomicity of every call whose
effect is visible at all.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import sys
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import pytest

from paxlock.coordinator.core.messages import (
    AcceptRecord,
    Batch,
    ChosenRecord,
    PromiseRecord,
    Record,
    Value,
)
from paxlock.persistence import LoadedState, SqliteStore

CHILD = Path(__file__).with_name("store_crash_child.py")
KILLS = int(os.environ.get("PAXLOCK_CRASH_KILLS", "200"))
RUNS_PER_DATA_DIR = 25
LINE_TIMEOUT_S = 30.0
RUN_TIME_S_MAX = 600.0
"""A hang guard only: the test takes seconds (about 5 s for 200 kills on 2 cores)."""
SEED = int(os.environ.get("PAXLOCK_CRASH_SEED", "20240611"))

_records = msgspec.msgpack.Decoder(list[Record])


@dataclass
class Ledger:
    """What the workers said about one data dir: every call's content (``I``/``S``) and the
    calls that were acknowledged (``K``)."""

    intents: dict[str, list[Record] | int] = field(default_factory=dict)
    acked: list[str] = field(default_factory=list)

    def read(self, line: str) -> None:
        kind, bid, *rest = line.split()
        if kind == "I":
            self.intents[bid] = _records.decode(bytes.fromhex(rest[0]))
        elif kind == "S":
            self.intents[bid] = int(rest[0])
        elif kind == "K":
            assert bid in self.intents, f"ack for unknown call {bid}"
            self.acked.append(bid)


def holds(call: list[Record] | int, state: LoadedState) -> str | None:
    """Why the effect of ``call`` is not in ``state`` (None if it is, or was superseded)."""
    durable, compacted = state.durable, state.snapshot_slot
    if isinstance(call, int):
        return None if compacted >= call else f"snapshot {call} lost (have {compacted})"
    for record in call:
        match record:
            case PromiseRecord(ballot=ballot):
                if durable.promised < ballot:
                    return f"promise {ballot} lost (have {durable.promised})"
            case AcceptRecord(slot=slot, ballot=ballot, value=value):
                entry = durable.accepted.get(slot)
                if slot > compacted and not (
                    entry is not None
                    and (entry.ballot > ballot or (entry.ballot == ballot and entry.value == value))
                ):
                    return f"accept {slot}@{ballot} lost (have {entry})"
            case ChosenRecord(slot=slot, value=value):
                if slot > compacted and durable.chosen.get(slot) != value:
                    return f"chosen {slot} lost (have {durable.chosen.get(slot)})"
    return None


async def verify(data_dir: Path, ledger: Ledger) -> None:
    db_path = data_dir / "paxlock.db"
    if not db_path.exists():  # killed before the store was ever created
        assert not ledger.acked
        return
    with closing(sqlite3.connect(db_path.absolute().as_uri() + "?mode=ro", uri=True)) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    # The real open path: quick_check, identity, and every row decoded with its type.
    async with await SqliteStore.open(data_dir, node_id="n1", cluster_id="crash") as store:
        state = store.load()
    for bid in ledger.acked:
        problem = holds(ledger.intents[bid], state)
        assert problem is None, f"acknowledged call {bid}: {problem}"
    if state.snapshot is not None:
        assert state.snapshot == f"snap-{state.snapshot_slot}".encode()
    # All or nothing: any visible effect of a call implies every effect of that call. The
    # promise, each accepted value and each chosen value name the call that wrote them.
    visible = [call_of(entry.value) for entry in state.durable.accepted.values()]
    visible += [call_of(value) for value in state.durable.chosen.values()]
    visible += [
        bid
        for bid, call in ledger.intents.items()
        if not isinstance(call, int) and PromiseRecord(state.durable.promised) in call
    ]
    for bid in visible:
        assert bid in ledger.intents, f"the store holds a value nobody appended ({bid})"
        problem = holds(ledger.intents[bid], state)
        assert problem is None, f"call {bid} half-written: {problem}"


def call_of(value: Value) -> str:
    assert isinstance(value, Batch)
    return value.commands[0].decode().partition("#")[0]


class ForkServer:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.live_pid: int | None = None

    async def line(self) -> str:
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), LINE_TIMEOUT_S)
        assert raw.endswith(b"\n"), "fork server died (see child.err)"
        return raw.decode().rstrip("\n")

    def kill_worker(self) -> None:
        if self.live_pid is not None:
            try:
                os.kill(self.live_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


async def one_run(server: ForkServer, data_dir: Path, ledger: Ledger, run: int) -> bool:
    """Start a worker, SIGKILL it at a random point, wait until it is reaped.
    Returns whether it died by our SIGKILL."""
    rng = random.Random(SEED * 7919 + run)
    trigger = rng.choices(("start", "open", "acks"), weights=(1, 1, 8))[0]
    acks_before_kill = rng.randint(1, 40)
    assert server.proc.stdin is not None
    server.proc.stdin.write(f"run {data_dir} {SEED + run} r{run}\n".encode())
    await server.proc.stdin.drain()
    acks, killed = 0, False
    while True:
        line = await server.line()
        kind = line.split(maxsplit=1)[0]
        if kind == "START":
            server.live_pid = int(line.split()[1])
        elif kind == "EXIT":
            _, pid, status = line.split()
            assert int(pid) == server.live_pid
            server.live_pid = None
            died_by_kill = os.WIFSIGNALED(int(status)) and (
                os.WTERMSIG(int(status)) == signal.SIGKILL
            )
            assert died_by_kill or os.waitstatus_to_exitcode(int(status)) == 0, (
                f"worker failed on its own (status {status}); see child.err"
            )
            return killed and died_by_kill
        elif kind in ("I", "S", "K"):
            ledger.read(line)
            acks += kind == "K"
        if not killed and (
            (trigger == "start" and kind == "START")
            or (trigger == "open" and kind == "OPEN")
            or (trigger == "acks" and acks >= acks_before_kill)
        ):
            server.kill_worker()
            killed = True


@pytest.mark.slow
async def test_acknowledged_records_survive_kill_9(tmp_path: Path) -> None:
    started = time.monotonic()
    with open(tmp_path / "child.err", "wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(CHILD),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
        )
    server = ForkServer(proc)
    kills = runs = 0
    try:
        assert await server.line() == "READY"
        ledger = Ledger()
        data_dir = tmp_path
        while kills < KILLS:
            assert runs < 2 * KILLS, "workers keep ending before they are killed"
            assert time.monotonic() - started < RUN_TIME_S_MAX, f"only {kills} kills so far"
            if runs % RUNS_PER_DATA_DIR == 0:
                data_dir, ledger = tmp_path / f"data{runs // RUNS_PER_DATA_DIR}", Ledger()
            kills += await one_run(server, data_dir, ledger, runs)
            runs += 1
            await verify(data_dir, ledger)
    except BaseException:
        sys.stderr.write((tmp_path / "child.err").read_text()[-4000:])
        raise
    finally:
        server.kill_worker()
        proc.kill()
        await proc.wait()
    elapsed = time.monotonic() - started
    print(f"{kills} kills in {runs} runs, {elapsed:.1f}s")
    assert kills >= KILLS
