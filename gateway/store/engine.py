"""Opening the database and bringing its schema to the current version.

``open_store(url)`` is the one way in: it creates the engine (dialect quirks
in ``dialects``), runs the Alembic migrations shipped in this package up to
head, and hands back a ``Store``. Alembic's API is synchronous, so it runs
inside ``AsyncConnection.run_sync`` on the async engine's own connection: one
code path, no second (blocking) driver, and the migration commits or rolls
back as one transaction on PostgreSQL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .dialects import WRITE, create_engine, lock_for_migration, prepare, sqlite_file
from .errors import StoreError, StoreProblem
from .permissions import protect_sqlite_file

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class Store:
    """The database: an async engine with a transaction helper. Built once at
    the composition root and passed to the stores that use it."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

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

    async def close(self) -> None:
        await self.engine.dispose()

    async def revision(self) -> str | None:
        async with self.engine.connect() as conn:
            return await conn.run_sync(_current_revision)


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
