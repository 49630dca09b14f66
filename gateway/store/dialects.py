"""Everything that differs between SQLite and PostgreSQL, in one place.

- SQLite: foreign keys are off unless asked for per connection (set on
  every new connection). WAL, which lets readers run beside the one writer,
  is a property of the file, set once by ``prepare``: switching to it needs a
  moment when no other connection writes, and SQLite answers "database is
  locked" at once rather than waiting, so ``prepare`` retries.
- SQLite transactions: Python's sqlite3 module begins a transaction only
  before DML, so DDL (migrations) ran outside any transaction, and a
  deferred transaction that reads then writes fails with "database is
  locked" when another writer got in between (no busy wait on upgrade). So
  the driver's own transaction handling is switched off and we emit
  ``BEGIN IMMEDIATE`` for write transactions (``Store.begin``), which waits
  up to the busy timeout for the single write lock, and a plain ``BEGIN``
  for reads, which WAL serves from a snapshot. This is SQLAlchemy's
  documented recipe for pysqlite/aiosqlite transactional DDL.
- Migrations: several PostgreSQL nodes may start at once, so the upgrade
  holds a transaction-scoped advisory lock (SQLite's BEGIN IMMEDIATE does
  the same there).
- Insert-if-absent: both speak ``INSERT ... ON CONFLICT DO NOTHING
  RETURNING``, but SQLAlchemy builds it from each dialect's own ``insert``.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, event, make_url, text
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from sqlalchemy.sql.dml import Insert

SQLITE_BUSY_TIMEOUT_MS = 15000
"""A writer (the CLI while the server runs, a bundle refresh) waits this long
for SQLite's single write lock; write transactions here last milliseconds."""

PG_POOL_SIZE = 16
"""PostgreSQL connections each process keeps open (several nodes: each keeps its own)."""
PG_POOL_OVERFLOW = 0
"""None: when all are busy a transaction waits for one. An overflow connection was opened
(connect, TLS attempt, authentication, a backend forked, an empty prepared-statement
cache) and closed again at its return, over and over with 20 SMTP clients: without them
a PostgreSQL gateway took 1.13-1.20x the messages a second (bench/smtp_inbound_against.py)."""

WRITE = "directgw_write"
"""Execution option ``Store.begin`` sets: this transaction will write."""

BEGUN = "directgw_begun"
"""Execution option of the SQLite writer's connection (sqlite_writer.py): it says
``BEGIN IMMEDIATE`` itself, so SQLAlchemy's begin only keeps its books."""


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL (None for other databases or memory)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def create_engine(url: str) -> AsyncEngine:
    # No pre-ping: it is a round trip before every transaction (one of about fifteen in
    # an accepted message's). A connection PostgreSQL dropped fails its next
    # transaction instead, SQLAlchemy then discards the whole pool, and the failure is
    # temporary everywhere here (451 at SMTP, a retry in the queue).
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    # More kept connections than SQLAlchemy's 5, and no overflow: connections opened when
    # all were busy were closed again at their return, each starting with an empty
    # prepared-statement cache (py-spy: 5% of a loaded worker's samples; PG_POOL_OVERFLOW).
    return create_async_engine(url, pool_size=PG_POOL_SIZE, max_overflow=PG_POOL_OVERFLOW)


def _sqlite_engine(url: str) -> AsyncEngine:
    engine = create_async_engine(url)
    event.listen(engine.sync_engine, "connect", _sqlite_connect)
    event.listen(engine.sync_engine, "begin", _sqlite_begin)
    return engine


def sqlite_writer_engine(url: str) -> Engine:
    """A synchronous engine on the same SQLite file, for ``Store.run`` and ``Store.read``
    (sqlite_writer.py): statements run on the event loop, not one thread hop per
    statement as through aiosqlite (0.5-1.7 ms of CPU each, docs/receive.md); BEGIN
    and COMMIT in a thread. So a connection is used from two threads, one at a
    time, and is kept open (no pool). Same pragmas, same BEGIN IMMEDIATE."""
    sync_url = make_url(url).set(drivername="sqlite+pysqlite")
    engine = sa_create_engine(sync_url, poolclass=NullPool, connect_args={"check_same_thread": False})
    event.listen(engine, "connect", _sqlite_connect)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we say BEGIN ourselves (module docstring)
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    # A commit is on disk before it returns (WAL fsync'd at every commit): the SMTP
    # edge answers 250 only after it (issue 8). NORMAL would lose the last commits
    # on power failure. FULL is SQLite's default; said here so no build changes it.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


async def prepare(engine: AsyncEngine) -> None:
    """Per-database settings that outlive a connection (SQLite's WAL)."""
    if engine.dialect.name != "sqlite":
        return
    async with engine.connect() as conn:
        # the driver's own connection: PRAGMA journal_mode cannot run inside
        # the transaction SQLAlchemy would begin
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver is not None
        delay = 0.01
        deadline = asyncio.get_running_loop().time() + SQLITE_BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                async with driver.execute("PRAGMA journal_mode=WAL") as cursor:
                    await cursor.fetchall()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or asyncio.get_running_loop().time() > deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)


def _sqlite_begin(conn: Connection) -> None:
    if conn.get_execution_options().get(BEGUN):
        return
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE) else "BEGIN")


def insert_ignoring_duplicates(dialect_name: str, table: Table) -> Insert:
    """An insert that skips rows violating a unique constraint."""
    if dialect_name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    if dialect_name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    raise ValueError(f"unsupported database {dialect_name}")


MIGRATION_LOCK_KEY = int.from_bytes(b"directgw", "big") >> 1
"""Any fixed 63-bit number other applications are unlikely to pick."""


def lock_for_migration(conn: Connection) -> None:
    """Serialise concurrent ``open_store`` migrations (released at commit)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
