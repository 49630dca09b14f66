"""``Store.run``: one synchronous transaction function, the same on both
databases: committed whole, rolled back whole, and readable by the async side."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from gateway.store import open_store, schema, sqlite_writer
from tests.pki import NOW
from tests.storage_fixtures import store_fixture, store_url_fixture  # noqa: F401 -- fixtures


def _add(names):
    def work(conn):
        for name in names:
            conn.execute(schema.domains.insert().values(name=name, created_at=NOW))
        return len(names)

    return work


async def _count(store) -> int:
    async with store.engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(schema.domains)))


async def test_a_transaction_commits_whole(store):
    assert await store.run(_add(["a.test", "b.test"])) == 2
    assert await _count(store) == 2


async def test_a_failing_transaction_leaves_nothing(store):
    def work(conn):
        _add(["c.test"])(conn)
        raise RuntimeError("halfway")

    with pytest.raises(RuntimeError):
        await store.run(work)
    assert await _count(store) == 0


async def test_concurrent_transactions_all_land(store):
    await asyncio.gather(*(store.run(_add([f"d{i}.test"])) for i in range(20)))
    assert await _count(store) == 20


async def test_a_cancelled_caller_does_not_cut_the_transaction(store):
    task = asyncio.ensure_future(store.run(_add([f"e{i}.test" for i in range(50)])))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(100):
        if await _count(store) == 50:
            break
        await asyncio.sleep(0.02)
    assert await _count(store) == 50


# -- group commit: transactions asked for together are committed together,
#    and each still commits or rolls back as if it had run alone --


async def test_a_failing_transaction_among_others_is_rolled_back_alone(store):
    def fails(conn):
        _add(["bad.test"])(conn)
        raise RuntimeError("halfway")

    works = [_add([f"f{i}.test"]) for i in range(5)]
    outcomes = await asyncio.gather(*(store.run(w) for w in [*works[:2], fails, *works[2:]]),
                                    return_exceptions=True)
    assert [isinstance(o, RuntimeError) for o in outcomes] == [False, False, True, False, False, False]
    assert await _count(store) == 5


async def test_a_transaction_that_breaks_a_unique_constraint_does_not_undo_its_neighbours(store):
    await store.run(_add(["taken.test"]))
    outcomes = await asyncio.gather(store.run(_add(["g1.test"])), store.run(_add(["taken.test"])),
                                    store.run(_add(["g2.test"])), return_exceptions=True)
    assert outcomes[0] == 1 and outcomes[2] == 1
    assert isinstance(outcomes[1], Exception)
    assert await _count(store) == 3


async def test_when_the_commit_fails_no_transaction_of_its_batch_is_reported_done(tmp_path):
    """SQLite commits concurrent transactions together (PostgreSQL commits each on its own
    connection). A failing COMMIT (here a deferred foreign key, checked only at commit)
    fails every caller whose work it carried: none may be told 'stored' (no 250 for any)."""
    store = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'batch.db'}")
    try:
        await _commit_fails_whole(store)
    finally:
        await store.close()


async def _commit_fails_whole(store) -> None:
    def dangling(conn):
        conn.exec_driver_sql("PRAGMA defer_foreign_keys=ON")
        conn.execute(schema.anchors.insert().values(
            domain_id=999_999, direction="incoming", cert_der=b"x", sha256="ff", subject="CN=x", not_after=NOW,
            source="manual", added_at=NOW,
        ))
        return "dangling"

    outcomes = await asyncio.gather(store.run(_add(["h1.test"])), store.run(dangling), store.run(_add(["h2.test"])),
                                    return_exceptions=True)
    assert all(isinstance(o, Exception) for o in outcomes), outcomes
    assert await _count(store) == 0
    assert await store.run(_add(["after.test"])) == 1  # the writer is usable again


async def test_a_write_waits_for_another_process_holding_the_write_lock(tmp_path):
    """The CLI or a second worker may hold SQLite's write lock: the transaction waits for
    it (in the writer's thread, the event loop keeps running) and then commits."""
    store = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'locked.db'}")
    other = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)
    try:
        await store.run(_add(["first.test"]))  # the writer's connection is open
        other.execute("BEGIN IMMEDIATE")
        asyncio.get_running_loop().call_later(0.2, other.execute, "COMMIT")
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.ensure_future(tick())
        started = time.monotonic()
        assert await store.run(_add(["second.test"])) == 1
        ticker.cancel()
        assert time.monotonic() - started >= 0.15
        assert ticks >= 5  # the loop was not blocked while waiting
        assert await _count(store) == 2
    finally:
        other.close()
        await store.close()


async def test_a_write_gives_up_when_the_write_lock_stays_taken(tmp_path, monkeypatch):
    """Past the busy timeout the transaction fails as SQLite's own wait would ("database is
    locked"), nothing of it is written, and the writer works again once the lock is free."""
    monkeypatch.setattr(sqlite_writer, "SQLITE_BUSY_TIMEOUT_MS", 300)
    store = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'locked.db'}")
    other = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)
    try:
        await store.run(_add(["first.test"]))
        other.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        with pytest.raises(OperationalError, match="database is locked"):
            await store.run(_add(["second.test"]))
        assert 0.3 <= time.monotonic() - started < 5
        other.execute("COMMIT")
        assert await store.run(_add(["third.test"])) == 1
        assert await _count(store) == 2
    finally:
        other.close()
        await store.close()
