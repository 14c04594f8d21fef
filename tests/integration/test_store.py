"""SqliteStore semantics: what ``append`` and ``save_snapshot`` make durable, group commit,
and agreement with ``DurableState.apply`` (the one definition of what a record means)."""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paxlock.coordinator.core.ballot import Ballot, NodeId
from paxlock.coordinator.core.messages import (
    NOOP,
    AcceptRecord,
    Batch,
    ChosenRecord,
    PromiseRecord,
    Record,
    Value,
)
from paxlock.coordinator.core.ready import DurableState
from paxlock.persistence import sqlite_store
from paxlock.persistence import (
    SqliteStore,
    StoreClosed,
    StoreFailed,
    StoreOverloaded,
)

NODE, CLUSTER = "n1", "c1"


def value(text: str) -> Value:
    return Batch((text.encode(),))


def b(round_: int, node: str = "n1") -> Ballot:
    return Ballot(round_, node)


async def open_store(data_dir: Path, *, pending_records_max: int = 65536) -> SqliteStore:
    return await SqliteStore.open(
        data_dir, node_id=NODE, cluster_id=CLUSTER, pending_records_max=pending_records_max
    )


async def until(condition: Callable[[], bool], *, steps_max: int = 10_000) -> None:
    """Yield to the event loop until ``condition`` holds (bounded, never a timed sleep)."""
    for _ in range(steps_max):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


@contextmanager
def read_only(data_dir: Path) -> Iterator[sqlite3.Connection]:
    """A second, independent reader: sees exactly what is committed, nothing in flight."""
    uri = (data_dir / "paxlock.db").absolute().as_uri() + "?mode=ro"
    with closing(sqlite3.connect(uri, uri=True)) as db:
        yield db


async def test_a_new_store_is_empty_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    async with await open_store(tmp_path / "d") as store:
        loaded = store.load()
        assert loaded.durable == DurableState()
        assert (loaded.snapshot_slot, loaded.snapshot) == (0, None)
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["LOCK", "paxlock.db"]


async def test_a_creation_cut_short_by_a_crash_is_started_over(tmp_path: Path) -> None:
    """A store is built under a temporary name and renamed into place: a crash mid-way
    leaves only the temporary file, which the next open discards."""
    (tmp_path / "paxlock.db.new").write_bytes(b"half a database")
    (tmp_path / "paxlock.db.new-journal").write_bytes(b"its journal")
    async with await open_store(tmp_path) as store:
        assert store.load().durable == DurableState()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["LOCK", "paxlock.db"]


async def test_records_survive_a_reopen_as_durable_state_apply_defines(tmp_path: Path) -> None:
    records: list[Record] = [
        PromiseRecord(b(1)),
        AcceptRecord(1, b(1), value("x")),
        AcceptRecord(2, b(1), NOOP),
        ChosenRecord(1, value("x")),
        PromiseRecord(b(3, "n2")),
        AcceptRecord(2, b(3, "n2"), value("y")),  # a higher ballot replaces the slot's entry
        ChosenRecord(1, value("x")),  # learning a chosen value again changes nothing
    ]
    model = DurableState()
    for record in records:
        model.apply(record)
    async with await open_store(tmp_path) as store:
        await store.append(records[:4])
        await store.append(records[4:])
        assert store.load().durable == model
    async with await open_store(tmp_path) as store:
        assert store.load().durable == model
    with read_only(tmp_path) as db:
        assert db.execute("SELECT count(*) FROM promise").fetchone() == (1,)
        assert db.execute("SELECT count(*) FROM accepted").fetchone() == (2,)


async def test_the_file_is_wal_with_synchronous_full(tmp_path: Path) -> None:
    async with await open_store(tmp_path) as store:
        assert list(await store._db.execute_fetchall("PRAGMA synchronous")) == [(2,)]
        with read_only(tmp_path) as db:
            assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_group_commit_merges_appends_that_arrive_during_a_commit(tmp_path: Path) -> None:
    """One commit in flight; four appends arrive meanwhile: they share the next commit, and
    each caller resumes only once a separate reader can see its own record."""
    async with await open_store(tmp_path) as store:
        await store.append([PromiseRecord(b(1))])
        base = store.stats.commits

        async def accept(slot: int) -> None:
            await store.append([AcceptRecord(slot, b(1), value(f"v{slot}"))])
            with read_only(tmp_path) as db:
                row = db.execute("SELECT slot FROM accepted WHERE slot = ?", (slot,)).fetchone()
            assert row == (slot,), "append returned before its record was committed"

        first = asyncio.create_task(accept(1))
        await until(lambda: store._pending_records == 1)  # `first` submitted
        await until(lambda: not store._queue)  # the committer took it: its commit is in flight
        assert store._pending_records == 1
        await asyncio.gather(first, *(accept(slot) for slot in range(2, 6)))
        assert store.stats.commits - base == 2
        assert store.stats.appends == 6


async def test_many_concurrent_appenders_share_fsyncs(tmp_path: Path) -> None:
    async with await open_store(tmp_path) as store:
        await store.append([PromiseRecord(b(1))])

        async def appender(k: int) -> None:
            for i in range(10):
                slot = k * 10 + i + 1
                await store.append([AcceptRecord(slot, b(1), value(str(slot)))])

        await asyncio.gather(*(appender(k) for k in range(32)))
        assert store.stats.appends == 321
        assert store.stats.commits < 100
    async with await open_store(tmp_path) as store:
        assert len(store.load().durable.accepted) == 320


async def test_an_empty_append_waits_for_everything_appended_before(tmp_path: Path) -> None:
    async with await open_store(tmp_path) as store:
        pending = asyncio.create_task(store.append([PromiseRecord(b(7))]))
        await until(lambda: store._pending_records == 1)
        await store.append([])
        assert pending.done()
        with read_only(tmp_path) as db:
            assert db.execute("SELECT count(*) FROM promise").fetchone() == (1,)


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([PromiseRecord(b(1))], "a promise never goes down"),
        ([AcceptRecord(1, b(6), NOOP)], "accepted ballot never exceeds the promise"),
        ([ChosenRecord(1, value("other"))], "a chosen slot's value never changes"),
        ([AcceptRecord(2, b(4), NOOP)], "a slot's accepted ballot never goes down"),
        ([AcceptRecord(2, b(5), value("other"))], "one ballot carries one value per slot"),
        # all or nothing: the promise in the same call is not admitted either
        ([PromiseRecord(b(9)), PromiseRecord(b(8))], "a promise never goes down"),
    ],
)
async def test_records_that_break_an_invariant_are_refused_whole(
    tmp_path: Path, records: list[Record], message: str
) -> None:
    async with await open_store(tmp_path) as store:
        good: list[Record] = [
            PromiseRecord(b(5)),
            AcceptRecord(2, b(5), NOOP),
            ChosenRecord(1, value("x")),
        ]
        await store.append(good)
        with pytest.raises(AssertionError, match=message):
            await store.append(records)
        await store.append([ChosenRecord(3, NOOP)])  # the store goes on
        assert store.load().durable.promised == b(5)
    async with await open_store(tmp_path) as store:
        assert store.load().durable.promised == b(5)
        assert store.load().durable.accepted[2].value == NOOP


async def test_a_snapshot_compacts_in_the_same_transaction(tmp_path: Path) -> None:
    async with await open_store(tmp_path) as store:
        await store.append([PromiseRecord(b(1))])
        await store.append([AcceptRecord(s, b(1), NOOP) for s in range(1, 11)])
        await store.append([ChosenRecord(s, NOOP) for s in range(1, 11)])
        await store.save_snapshot(6, b"state at 6")
        await store.append([AcceptRecord(12, b(1), NOOP)])
        with pytest.raises(AssertionError, match="a snapshot never goes back"):
            await store.save_snapshot(5, b"older")
        expected = store.load()
    async with await open_store(tmp_path) as store:
        loaded = store.load()
    assert loaded == expected
    assert (loaded.snapshot_slot, loaded.snapshot) == (6, b"state at 6")
    assert sorted(loaded.durable.accepted) == [7, 8, 9, 10, 12]
    assert sorted(loaded.durable.chosen) == [7, 8, 9, 10]
    assert loaded.durable.promised == b(1)


async def test_close_commits_what_is_queued_then_refuses(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    tasks = [asyncio.create_task(store.append([PromiseRecord(b(r))])) for r in range(1, 20)]
    await until(lambda: store._pending_records == 19)
    await store.close()
    await asyncio.gather(*tasks)
    with pytest.raises(StoreClosed):
        await store.append([PromiseRecord(b(30))])
    await store.close()  # idempotent
    async with await open_store(tmp_path) as store:
        assert store.load().durable.promised == b(19)


class FailingCommit:
    """A sqlite3 connection whose COMMIT fails as a dying disk's would."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __getattr__(self, name: str) -> object:
        return getattr(self.conn, name)

    def execute(self, sql: str, *parameters: object) -> object:
        if sql == "COMMIT":
            raise sqlite3.OperationalError("disk I/O error")
        return self.conn.execute(sql, *parameters)


async def test_a_failed_commit_poisons_the_store_and_loses_nothing_acked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = await open_store(tmp_path)
    try:
        await store.append([PromiseRecord(b(1))])
        real = sqlite_store._transaction
        monkeypatch.setattr(sqlite_store, "_transaction",
                            lambda conn, *rest: real(FailingCommit(conn), *rest))  # type: ignore[arg-type]
        with pytest.raises(StoreFailed, match="reopen the store") as failed:
            await store.append([PromiseRecord(b(2))])
        assert "\n" not in str(failed.value)
        with pytest.raises(StoreFailed):
            await store.append([PromiseRecord(b(3))])
        monkeypatch.setattr(sqlite_store, "_transaction", real)
    finally:
        await store.close()
    async with await open_store(tmp_path) as store:
        assert store.load().durable.promised == b(1)


async def test_store_one_handoff_per_commit(tmp_path: Path) -> None:
    """A commit crosses to the connection's thread once, whatever it writes (each crossing
    cost more than the fsync under load): a promise, accepted and chosen rows together."""
    async with await open_store(tmp_path) as store:
        handoffs = 0
        real = store._db._execute

        def counting(fn: object, *args: object) -> object:
            nonlocal handoffs
            handoffs += 1
            return real(fn, *args)

        store._db._execute = counting  # type: ignore[method-assign]
        await store.append([PromiseRecord(b(1)), AcceptRecord(1, b(1), value("a")),
                            ChosenRecord(1, value("a"))])  # fmt: skip
        assert handoffs == 1
    async with await open_store(tmp_path) as store:
        durable = store.load().durable
        assert durable.promised == b(1) and 1 in durable.chosen


async def test_too_many_waiting_records_are_shed(tmp_path: Path) -> None:
    async with await open_store(tmp_path, pending_records_max=4) as store:
        first = asyncio.create_task(store.append([PromiseRecord(b(1)), PromiseRecord(b(2))]))
        second = asyncio.create_task(store.append([PromiseRecord(b(3)), PromiseRecord(b(4))]))
        await until(lambda: store._pending_records == 4)  # both submitted, none committed
        with pytest.raises(StoreOverloaded):
            await store.append([PromiseRecord(b(5))])
        await asyncio.gather(first, second)
        await store.append([PromiseRecord(b(5))])


# --- differential check against DurableState.apply ------------------------------------------

step = st.tuples(
    st.sampled_from(["promise", "accept", "accept", "chosen", "snapshot"]),
    st.integers(1, 12),  # slot (relative to the snapshot for a snapshot step)
    st.integers(0, 2),  # how far a promise jumps
    st.sampled_from(["a", "b", "c"]),
)


def to_records(
    kind: str, slot: int, jump: int, node: str, model: DurableState, tag: str
) -> list[Record]:
    """Turn a drawn step into records an acceptor could legally emit against ``model``
    (like ``Acceptor.on_accept``, a new accept in a slot holding the promised ballot first
    raises the promise)."""
    out: list[Record] = []
    previous = model.accepted.get(slot)
    if (
        kind == "promise"
        or model.promised.round == 0
        or (kind == "accept" and previous is not None and previous.ballot == model.promised)
    ):
        ballot = Ballot(model.promised.round + jump, node)
        if ballot <= model.promised:
            ballot = model.promised.successor(NodeId(node))
        out.append(PromiseRecord(ballot))
        model.apply(out[-1])
    if kind == "accept":
        out.append(AcceptRecord(slot, model.promised, value(tag)))
        model.apply(out[-1])
    elif kind == "chosen":
        out.append(ChosenRecord(slot, model.chosen.get(slot, value(tag))))
        model.apply(out[-1])
    return out


def compact(model: DurableState, upto: int) -> None:
    model.accepted = {s: e for s, e in model.accepted.items() if s > upto}
    model.chosen = {s: v for s, v in model.chosen.items() if s > upto}


@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(groups=st.lists(st.lists(step, min_size=1, max_size=6), min_size=1, max_size=12))
def test_the_store_agrees_with_durable_state_apply(
    tmp_path: Path, groups: list[list[tuple[str, int, int, str]]]
) -> None:
    """Random legal histories, appended by concurrent callers (each group at once): the store,
    before and after a reopen, equals the model built with ``DurableState.apply``."""

    async def run(data_dir: Path) -> None:
        model, snapshot_slot = DurableState(), 0
        async with await open_store(data_dir) as store:
            for g, group in enumerate(groups):
                calls = []
                for i, (kind, slot, jump, node) in enumerate(group):
                    if kind == "snapshot":
                        snapshot_slot += slot
                        compact(model, snapshot_slot)
                        calls.append(store.save_snapshot(snapshot_slot, b"%d" % snapshot_slot))
                    else:
                        slot += snapshot_slot
                        records = to_records(kind, slot, jump, node, model, f"{g}.{i}")
                        calls.append(store.append(records))
                await asyncio.gather(*calls)
                assert store.load().durable == model
        async with await open_store(data_dir) as store:
            loaded = store.load()
        assert loaded.durable == model
        assert loaded.snapshot_slot == snapshot_slot

    with tempfile.TemporaryDirectory(dir=tmp_path) as data_dir:
        asyncio.run(run(Path(data_dir)))
