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

Not every transaction needs the disk before it returns. ``write(work,
durable=False)`` is for bookkeeping whose loss in a power cut only repeats
work: the outbound queue's claims and outcomes (a lost claim is a job still
due; a lost "sent" sends the message again, as a crash between the peer's 250
and the commit always could). A batch of only such transactions commits on
the event loop with ``synchronous=NORMAL``: written to the WAL, no fsync, no
hop to the thread (a hop and an fsync cost about 0.2 ms of CPU here; the
sending gateway's CPU per message fell by a tenth, docs/outbound.md). The
next durable commit's fsync covers it, since the WAL is one file written in
order; without one, the WAL is fsync'd in the thread within ``SYNC_WITHIN``
seconds, and at close. A ``kill -9`` loses none of it either way: the
kernel holds what was written. Checkpoints stay off the loop: automatic
checkpoints run only at durable commits. One fsync can still happen on the
loop: SQLite syncs the WAL's header at the first commit that reuses the WAL
after a checkpoint, whatever the synchronous setting (once per WAL of pages).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import structlog
from sqlalchemy import Connection, Engine, RootTransaction, exc

from .dialects import BEGUN, SQLITE_BUSY_TIMEOUT_MS, WRITE, sqlite_file, sqlite_writer_engine

T = TypeVar("T")

log = structlog.get_logger("directgw.store")

MAX_BATCH = 64
"""Transactions committed together at most: a bound on the loop time one batch takes."""

SYNC_WITHIN = 1.0
"""Seconds a commit of ``durable=False`` work may wait for the fsync a durable commit
would give it, before the writer gives it one of its own."""

WAL_AUTOCHECKPOINT = 1000
"""SQLite's default: a checkpoint once the WAL holds this many pages, at a durable commit
(in the thread); a commit on the event loop runs none (``PRAGMA wal_autocheckpoint=0``)."""


@dataclass(slots=True)
class _Asked:
    work: Callable[[Connection], Any]
    done: asyncio.Future[Any] = field(repr=False)
    durable: bool = True


class SqliteWriter:
    """The process's one writing connection to a SQLite file, and a reading one."""

    def __init__(self, url: str) -> None:
        self._engine: Engine = sqlite_writer_engine(url)
        file = sqlite_file(url)
        self._wal = None if file is None else Path(f"{file}-wal")
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="directgw-sqlite")
        self._writer: Connection | None = None
        self._reader: Connection | None = None
        self._asked: list[_Asked] = []
        self._flushing: asyncio.Task[None] | None = None
        self._durable_mode = True  # the writer connection's pragmas: synchronous=FULL, checkpoints on
        self._unsynced = False  # a commit on the loop that no fsync has covered yet
        self._sync_timer: asyncio.TimerHandle | None = None
        self._syncing: asyncio.Task[None] | None = None

    @property
    def unsynced(self) -> bool:
        """Whether a ``durable=False`` commit is not on disk yet (at most ``SYNC_WITHIN`` seconds)."""
        return self._unsynced

    async def write(self, work: Callable[[Connection], T], *, durable: bool = True) -> T:
        loop = asyncio.get_running_loop()
        asked = _Asked(work, loop.create_future(), durable)
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
            self._durable_mode = True  # a new connection starts with the engine's pragmas
        durable = any(asked.durable for asked in batch)
        self._mode(conn, durable)
        await self._lock(conn)
        transaction = conn.begin()  # SQLAlchemy's bookkeeping: BEGIN IMMEDIATE was said by _lock
        try:
            outcomes = _run_all(batch, conn)
            alone_failed = len(batch) == 1 and not outcomes[0][0]
            if not alone_failed and durable:
                await loop.run_in_executor(self._thread, transaction.commit)
                self._unsynced = False  # the WAL fsync'd, with every commit before this one
            elif not alone_failed:
                transaction.commit()  # written, not fsync'd: see the module docstring
                self._written_unsynced(loop)
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

    def _mode(self, conn: Connection, durable: bool) -> None:
        """The writer's pragmas for the next commit (between transactions, on the loop: no I/O)."""
        if durable == self._durable_mode:
            return
        driver = _driver(conn)
        driver.execute("PRAGMA synchronous=FULL" if durable else "PRAGMA synchronous=NORMAL")
        driver.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT if durable else 0}")
        self._durable_mode = durable

    def _written_unsynced(self, loop: asyncio.AbstractEventLoop) -> None:
        self._unsynced = True
        if self._sync_timer is None:
            self._sync_timer = loop.call_later(SYNC_WITHIN, self._sync_due)

    def _sync_due(self) -> None:
        self._sync_timer = None
        if not self._unsynced:
            return  # a durable commit has covered it
        loop = asyncio.get_running_loop()
        if self._syncing is not None and not self._syncing.done():
            self._sync_timer = loop.call_later(SYNC_WITHIN, self._sync_due)  # after the one under way
            return
        self._syncing = loop.create_task(self._sync())

    async def _sync(self) -> None:
        """fdatasync the WAL in the thread: what ``synchronous=FULL`` does at a commit."""
        self._unsynced = False  # a commit on the loop after this point schedules its own
        if self._wal is not None:
            try:
                await asyncio.get_running_loop().run_in_executor(self._thread, _fdatasync, self._wal)
            except OSError:
                log.warning("store.sqlite_wal_sync_failed", exc_info=True)
                self._written_unsynced(asyncio.get_running_loop())  # tried again, or covered by a durable commit

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
        if self._sync_timer is not None:
            self._sync_timer.cancel()
            self._sync_timer = None
        if self._syncing is not None:
            await asyncio.gather(self._syncing, return_exceptions=True)
        if self._unsynced:
            await self._sync()
        loop = asyncio.get_running_loop()
        for conn in (self._writer, self._reader):
            if conn is not None:
                await loop.run_in_executor(self._thread, conn.close)
        self._thread.shutdown(wait=True)
        self._engine.dispose()


def _driver(conn: Connection) -> sqlite3.Connection:
    return cast(sqlite3.Connection, conn.connection.dbapi_connection)


def _fdatasync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:  # no WAL (yet, or any more): nothing written is outside the database
        return
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


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
