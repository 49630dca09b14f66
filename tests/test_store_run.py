"""``Store.run``: one synchronous transaction function, the same on both
databases: committed whole, rolled back whole, and readable by the async side."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from gateway.store import schema
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
