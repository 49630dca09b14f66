"""Opening the database and bringing its schema to the current version.

``open_store(url)`` is the one way in: it creates the engine (dialect quirks
in ``dialects``), runs the Alembic migrations shipped in this package up to
head, and hands back a ``Store``. Alembic's API is synchronous, so it runs
inside ``AsyncConnection.run_sync`` on the async engine's own connection: one
code path, no second (blocking) driver, and the migration commits or rolls
back as one transaction on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.util import greenlet_spawn

from .dialects import (
    WRITE,
    create_engine,
    lock_for_migration,
    prepare,
    sqlite_file,
)
from .errors import StoreError, StoreProblem
from .permissions import protect_sqlite_file
from .prepared import discard_later, done_reading, flush_last, flush_on_use, reading_first
from .sqlite_writer import SqliteWriter

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


T = TypeVar("T")


class Store:
    """The database: an async engine with a transaction helper. Built once at
    the composition root and passed to the stores that use it."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        if engine.dialect.name != "sqlite":
            flush_on_use(engine.sync_engine)  # Prepared.later's writes: before the next statement, at COMMIT
        self._sqlite: SqliteWriter | None = None
        self._inflight: set[asyncio.Future[Any]] = set()

    async def read(self, work: Callable[[Connection], T]) -> T:
        """``work`` in a read transaction (the hot path's lookups at RCPT and DATA go
        this way): on SQLite, on the event loop over its own connection (WAL
        serves it the last committed snapshot, no waiting for the writer)."""
        return await self._in_transaction(work, write=False)

    async def run(self, work: Callable[[Connection], T], *, durable: bool = True) -> T:
        """``work`` in one write transaction, as a synchronous function over
        SQLAlchemy Core, committed when it returns, rolled back if it raises.

        The same function serves both databases: on SQLite its statements run
        on the event loop over the process's one writing connection, BEGIN and
        COMMIT in a thread, and transactions asked for while one commits are
        committed together (sqlite_writer.py: group commit); on PostgreSQL it
        runs in SQLAlchemy's greenlet over asyncpg (no thread), its reads before
        BEGIN (prepared.py: BEGIN only once something writes). Either way it has
        returned only once its COMMIT has.

        ``durable=False`` is for bookkeeping whose loss in a power cut only
        repeats work (the outbound queue's claims and outcomes): on SQLite its
        COMMIT is not fsync'd, and is on disk with the next durable commit or
        within a second (sqlite_writer.py). PostgreSQL commits it as any other."""
        return await self._in_transaction(work, write=True, durable=durable)

    async def _in_transaction(self, work: Callable[[Connection], T], *, write: bool, durable: bool = True) -> T:
        if self.dialect != "sqlite":
            return await self._kept(asyncio.ensure_future(self._run_async(work, write)))
        if self._sqlite is None:
            self._sqlite = SqliteWriter(str(self.engine.url))
        if not write:
            return self._sqlite.read(work)
        # Shielded (both paths): a cancelled caller (an SMTP client that hung up)
        # does not cut the transaction; it completes or rolls back on its own.
        return await self._kept(asyncio.ensure_future(self._sqlite.write(work, durable=durable)))

    async def _kept(self, future: asyncio.Future[T]) -> T:
        """Await ``future`` shielded from our caller's cancellation, holding it until done."""
        self._inflight.add(future)
        future.add_done_callback(self._inflight.discard)
        return await asyncio.shield(future)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """One write transaction: committed when the block ends, rolled back
        on error. (Reads use ``engine.connect()``.)"""
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(**{WRITE: True})
            async with conn.begin():
                yield conn

    async def _run_async(self, work: Callable[[Connection], T], write: bool) -> T:
        # One hop into SQLAlchemy's greenlet (what AsyncConnection.run_sync makes) for the
        # whole transaction: the pool's checkout, BEGIN when it goes out, the statements,
        # COMMIT and the checkin. AsyncConnection's connect, begin, run_sync, commit and close
        # made one each: 1.0-1.1 ms of CPU for a transaction of two statements, 0.6 now
        # (docs/storage.md). PostgreSQL only: SQLite's writer runs its own.
        run = _transaction if write else _reading
        return await greenlet_spawn(_on_a_connection, self.engine.sync_engine, run, work)

    async def close(self) -> None:
        if self._inflight:  # transactions whose callers went away finish first
            await asyncio.gather(*self._inflight, return_exceptions=True)
        if self._sqlite is not None:
            await self._sqlite.close()
        await self.engine.dispose()

    async def revision(self) -> str | None:
        async with self.engine.connect() as conn:
            return await conn.run_sync(_current_revision)


def _on_a_connection(engine: Engine, run: Callable[[Connection, Callable[[Connection], T]], T],
                     work: Callable[[Connection], T]) -> T:
    with engine.connect() as conn:
        return run(conn, work)


def _transaction(conn: Connection, work: Callable[[Connection], T]) -> T:
    """``work`` in one transaction, committed when it returns, rolled back if it raises."""
    with conn.begin():
        return _then_flushed(conn, work)


def _then_flushed(conn: Connection, work: Callable[[Connection], T]) -> T:
    """``work``, then the writes it deferred (Prepared.later), inside the transaction: their
    errors are the work's, raised to the caller before COMMIT. BEGIN goes out only before the
    first write, and not at all when the writes are one statement (prepared.py)."""
    reading_first(conn)
    try:
        result = work(conn)
        flush_last(conn)
        return result
    finally:
        discard_later(conn)
        done_reading(conn)


def _reading(conn: Connection, work: Callable[[Connection], T]) -> T:
    """A read transaction on PostgreSQL: its SELECTs on their own, no BEGIN or ROLLBACK around them."""
    reading_first(conn)
    try:
        return work(conn)
    finally:
        done_reading(conn)


def _alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def _current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def _upgrade(conn: Connection) -> None:
    cfg = _alembic_config()
    lock_for_migration(conn)
    cfg.attributes["connection"] = conn  # env.py migrates on this connection
    command.upgrade(cfg, "head")


def _describe(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig or exc).strip().splitlines()[0] if str(orig or exc).strip() else type(exc).__name__


async def open_store(url: str, *, migrate: bool = True) -> Store:
    """The store at ``url``, migrated to the current schema."""
    try:
        file = sqlite_file(url)
        engine = create_engine(url)
    except (SQLAlchemyError, ValueError) as exc:
        raise StoreError(StoreProblem.UNREACHABLE, f"cannot use database URL: {_describe(exc)}") from exc
    if file is not None and not file.parent.is_dir():
        # Checked here rather than left to the driver: aiosqlite's failed
        # connect leaves its worker thread racing the event loop's shutdown.
        await engine.dispose()
        raise StoreError(StoreProblem.UNREACHABLE, f"cannot open the database: {file.parent} is not a directory")
    if file is not None:
        try:
            protect_sqlite_file(file)  # it holds private keys: 0600 before SQLite makes it 0644
        except StoreError:
            await engine.dispose()
            raise
    store = Store(engine)
    if not migrate:
        return store
    try:
        await prepare(engine)
        async with store.begin() as conn:
            await conn.run_sync(_upgrade)
    except (OperationalError, DBAPIError, OSError, sqlite3.Error) as exc:
        await engine.dispose()
        raise StoreError(StoreProblem.UNREACHABLE, f"cannot open the database: {_describe(exc)}") from exc
    except SQLAlchemyError as exc:
        await engine.dispose()
        raise StoreError(StoreProblem.MIGRATION_FAILED, f"migration failed: {_describe(exc)}") from exc
    return store
