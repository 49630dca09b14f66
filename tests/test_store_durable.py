"""``Store.run(work, durable=False)`` on SQLite: the outbound queue's bookkeeping commits
on the event loop without an fsync, and is on disk with the next durable commit or within
``SYNC_WITHIN`` seconds (gateway/store/sqlite_writer.py). What a power cut would lose cannot
be shown here; what can: where each COMMIT runs and under which pragmas, that the work is
committed for every other connection at once, and when the WAL is fsync'd."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest

from gateway.store import open_store, schema, sqlite_writer
from tests.pki import NOW


def _add(name):
    def work(conn):
        conn.execute(schema.domains.insert().values(name=name, created_at=NOW))
        return name

    return work


@pytest.fixture
async def store(tmp_path):
    store = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'durable.db'}")
    await store.run(_add("first.test"))  # the writer's connection is open
    yield store
    await store.close()


@pytest.fixture
def commits(store):
    """(pragmas in force, thread) at each COMMIT of the store's writing connection."""
    driver = store._sqlite._writer.connection.dbapi_connection
    seen: list[tuple[str, str, bool]] = []
    mode = {"synchronous": "FULL", "autocheckpoint": "1000"}

    def trace(sql: str) -> None:
        if sql.startswith("PRAGMA synchronous="):
            mode["synchronous"] = sql.partition("=")[2]
        elif sql.startswith("PRAGMA wal_autocheckpoint="):
            mode["autocheckpoint"] = sql.partition("=")[2]
        elif sql == "COMMIT":
            seen.append((mode["synchronous"], mode["autocheckpoint"], threading.current_thread() is loop_thread))

    loop_thread = threading.current_thread()
    driver.set_trace_callback(trace)
    return seen


@pytest.fixture
def syncs(monkeypatch):
    """The WAL files the writer fdatasync'd itself (the real call, counted)."""
    done: list[str] = []
    real = sqlite_writer._fdatasync

    def counted(path):
        real(path)
        done.append(path.name)

    monkeypatch.setattr(sqlite_writer, "_fdatasync", counted)
    return done


def _names(tmp_path) -> set[str]:
    with sqlite3.connect(tmp_path / "durable.db") as other:
        return {r[0] for r in other.execute("SELECT name FROM domains")}


@pytest.mark.parametrize(
    ("durable", "committed_as"),
    [
        (True, ("FULL", "1000", False)),  # in the writer's thread, fsync'd, checkpoints allowed
        (False, ("NORMAL", "0", True)),  # on the event loop, written, no fsync, no checkpoint
    ],
)
async def test_where_and_how_a_transaction_commits(store, commits, tmp_path, durable, committed_as):
    assert await store.run(_add("x.test"), durable=durable) == "x.test"
    assert commits == [committed_as]
    assert "x.test" in _names(tmp_path)  # committed for every other connection at once


async def test_a_batch_holding_one_durable_transaction_commits_durably(store, commits, tmp_path):
    await asyncio.gather(store.run(_add("light.test"), durable=False), store.run(_add("heavy.test")))
    assert commits == [("FULL", "1000", False)]
    assert {"light.test", "heavy.test"} <= _names(tmp_path)


async def test_the_durable_mode_comes_back_after_bookkeeping(store, commits):
    await store.run(_add("a.test"), durable=False)
    await store.run(_add("b.test"), durable=False)
    await store.run(_add("c.test"))
    assert commits == [("NORMAL", "0", True), ("NORMAL", "0", True), ("FULL", "1000", False)]


async def test_a_durable_commit_covers_the_bookkeeping_before_it(store, syncs, monkeypatch):
    monkeypatch.setattr(sqlite_writer, "SYNC_WITHIN", 0.05)
    writer = store._sqlite
    await store.run(_add("a.test"), durable=False)
    assert writer.unsynced
    await store.run(_add("b.test"))  # its fsync is of the whole WAL, written in order
    assert not writer.unsynced
    await asyncio.sleep(0.15)
    assert syncs == []  # nothing left for the writer to sync on its own


async def test_bookkeeping_alone_is_fsynced_within_the_bound(store, syncs, monkeypatch):
    monkeypatch.setattr(sqlite_writer, "SYNC_WITHIN", 0.05)
    writer = store._sqlite
    for name in ("a.test", "b.test", "c.test"):
        await store.run(_add(name), durable=False)
    assert writer.unsynced and syncs == []
    for _ in range(100):
        if not writer.unsynced and syncs:
            break
        await asyncio.sleep(0.01)
    assert syncs == ["durable.db-wal"]  # one fdatasync for the three
    assert not writer.unsynced


async def test_closing_the_store_syncs_what_is_unsynced(tmp_path, syncs):
    store = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'durable.db'}")
    await store.run(_add("a.test"), durable=False)
    await store.close()  # well before SYNC_WITHIN
    assert syncs == ["durable.db-wal"]
    assert "a.test" in _names(tmp_path)


async def test_failing_bookkeeping_leaves_nothing_and_the_writer_goes_on(store, tmp_path):
    def work(conn):
        _add("half.test")(conn)
        raise RuntimeError("halfway")

    results = await asyncio.gather(store.run(work, durable=False), store.run(_add("ok.test"), durable=False),
                                   return_exceptions=True)
    assert isinstance(results[0], RuntimeError) and results[1] == "ok.test"
    assert await store.run(_add("after.test"), durable=False) == "after.test"
    assert _names(tmp_path) == {"first.test", "ok.test", "after.test"}
