"""SQLite transactions for ``Store.run`` and ``Store.read``: group commit, statements on the event loop.

Measured under load (docs/receive.md): with each transaction run whole in a
writer thread, the thread was busy 98% of the time while the accepted
message's transaction cost about 1 ms of CPU and took 5 ms: every statement
gives the GIL up around SQLite's C call and then waits for it behind the
event loop's own work (opening the next message), so one writer thread
serialised everything behind GIL hand-offs, and each transaction paid its
own fsync.

So here only what waits goes to the thread: ``BEGIN IMMEDIATE`` (it may wait
for another process's write lock: the CLI, a second worker) and ``COMMIT``
(the fsync). The statements, which hold the GIL anyway, run on the event
loop between the two. Transactions asked for while one commits wait, and
then go together in the next: one BEGIN, each in its own SAVEPOINT (one that
raises is rolled back alone, as if it had run by itself), one COMMIT. A
batch starts as soon as the previous commit returns, never on a timer
(shared/PERFORMANCE.md: a timer cut a sequential sender to a quarter). Each
caller's result is handed over only after the COMMIT has returned: a 250
still means on disk.

Reads run on the event loop too, on a second connection (WAL gives it the
last committed snapshot without waiting for the writer).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import structlog
from sqlalchemy import Connection, Engine, RootTransaction, exc

from .dialects import BEGUN, SQLITE_BUSY_TIMEOUT_MS, WRITE, sqlite_writer_engine

T = TypeVar("T")

log = structlog.get_logger("directgw.store")

MAX_BATCH = 64
"""Transactions committed together at most: a bound on the loop time one batch takes."""


@dataclass(slots=True)
class _Asked:
    work: Callable[[Connection], Any]
    done: asyncio.Future[Any] = field(repr=False)


class SqliteWriter:
    """The process's one writing connection to a SQLite file, and a reading one."""

    def __init__(self, url: str) -> None:
        self._engine: Engine = sqlite_writer_engine(url)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="directgw-sqlite")
        self._writer: Connection | None = None
        self._reader: Connection | None = None
        self._asked: list[_Asked] = []
        self._flushing: asyncio.Task[None] | None = None

    async def write(self, work: Callable[[Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        asked = _Asked(work, loop.create_future())
        self._asked.append(asked)
        if self._flushing is None or self._flushing.done():
            self._flushing = loop.create_task(self._flush())
        result: T = await asked.done
        return result

    def read(self, work: Callable[[Connection], T]) -> T:
        if self._reader is None:
            self._reader = self._engine.connect().execution_options(**{WRITE: False})
        with self._reader.begin():
            return work(self._reader)

    async def _flush(self) -> None:
        while self._asked:
            batch, self._asked = self._asked[:MAX_BATCH], self._asked[MAX_BATCH:]
            try:
                await self._commit(batch)
            except BaseException as exc:  # the whole batch failed: nobody's work is on disk
                failure = exc if isinstance(exc, Exception) else RuntimeError("the store was closed")
                for asked in batch:
                    if not asked.done.done():
                        asked.done.set_exception(failure)
                if not isinstance(exc, Exception):
                    raise

    async def _commit(self, batch: list[_Asked]) -> None:
        loop = asyncio.get_running_loop()
        conn = self._writer
        if conn is None:
            conn = self._writer = await loop.run_in_executor(self._thread, self._connect)
        await self._lock(conn)
        transaction = conn.begin()  # SQLAlchemy's bookkeeping: BEGIN IMMEDIATE was said by _lock
        try:
            outcomes = _run_all(batch, conn)
            alone_failed = len(batch) == 1 and not outcomes[0][0]
            if not alone_failed:
                await loop.run_in_executor(self._thread, transaction.commit)
        except BaseException:
            await asyncio.shield(loop.run_in_executor(self._thread, self._abandon, transaction))
            raise
        if alone_failed:  # nothing of it to keep: rolled back, not committed
            await asyncio.shield(loop.run_in_executor(self._thread, self._abandon, transaction))
        for asked, (ok, value) in zip(batch, outcomes, strict=True):
            if asked.done.done():
                continue
            if ok:
                asked.done.set_result(value)
            else:
                asked.done.set_exception(value)

    def _abandon(self, transaction: RootTransaction) -> None:
        """Roll back (a failed COMMIT leaves SQLite's transaction open); if even that
        fails, the connection is given up and the next batch opens a new one."""
        try:
            transaction.rollback()
            driver = transaction.connection.connection.driver_connection
            if driver is not None and driver.in_transaction:  # SQLAlchemy skips it after a failed COMMIT
                driver.rollback()
        except Exception:
            log.warning("store.sqlite_connection_dropped", exc_info=True)  # the callers have their own error
            if self._writer is not None:
                self._writer.invalidate()
                self._writer.close()
            self._writer = None

    def _connect(self) -> Connection:
        conn = self._engine.connect().execution_options(**{WRITE: True, BEGUN: True})
        # _lock waits for the write lock itself: SQLite's own wait sleeps 1, 2, 5, 10 ...
        # up to 100 ms at a time, too coarse for two workers taking turns every millisecond.
        _driver(conn).execute("PRAGMA busy_timeout=0")
        return conn

    async def _lock(self, conn: Connection) -> None:
        """BEGIN IMMEDIATE: on the event loop when the write lock is free (the usual case,
        no thread hop), else in the thread, trying again every half millisecond or so
        until SQLITE_BUSY_TIMEOUT_MS."""
        driver = _driver(conn)
        if not _try_begin(driver):
            await asyncio.get_running_loop().run_in_executor(self._thread, _wait_for_lock, driver)

    async def close(self) -> None:
        if self._flushing is not None:
            await asyncio.gather(self._flushing, return_exceptions=True)
        loop = asyncio.get_running_loop()
        for conn in (self._writer, self._reader):
            if conn is not None:
                await loop.run_in_executor(self._thread, conn.close)
        self._thread.shutdown(wait=True)
        self._engine.dispose()


def _driver(conn: Connection) -> sqlite3.Connection:
    return cast(sqlite3.Connection, conn.connection.dbapi_connection)


def _try_begin(driver: sqlite3.Connection) -> bool:
    """BEGIN IMMEDIATE; False when another connection holds the write lock."""
    try:
        driver.execute("BEGIN IMMEDIATE")
        return True
    except sqlite3.OperationalError as error:
        if "locked" in str(error) or "busy" in str(error):
            return False
        raise exc.OperationalError("BEGIN IMMEDIATE", (), error) from error


def _wait_for_lock(driver: sqlite3.Connection) -> None:
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    pause = 0.0002
    while not _try_begin(driver):
        if time.monotonic() > deadline:
            locked = sqlite3.OperationalError("database is locked")
            raise exc.OperationalError("BEGIN IMMEDIATE", (), locked)
        time.sleep(pause)
        pause = min(pause * 2, 0.002)


def _run_all(batch: list[_Asked], conn: Connection) -> list[tuple[bool, Any]]:
    """Each work's (ok, result or exception). Several share the transaction, each in a
    SAVEPOINT said on the driver's cursor (SQLAlchemy's begin_nested() cost a tenth of a
    message's CPU under load, py-spy; no work here nests its own); one alone needs none."""
    if len(batch) == 1:
        return [_run(batch[0].work, conn)]
    outcomes = []
    cursor = _driver(conn).cursor()
    try:
        for asked in batch:
            cursor.execute("SAVEPOINT directgw_batch")
            ok, value = _run(asked.work, conn)
            if not ok:
                cursor.execute("ROLLBACK TO directgw_batch")
            cursor.execute("RELEASE directgw_batch")
            outcomes.append((ok, value))
    finally:
        cursor.close()
    return outcomes


def _run(work: Callable[[Connection], Any], conn: Connection) -> tuple[bool, Any]:
    try:
        return True, work(conn)
    except Exception as exc:
        return False, exc
