"""Databases for the storage tests: every test that takes ``store_url`` or
``store`` runs once on SQLite (a file in tmp_path) and once on PostgreSQL (a
fresh database created for the test and dropped after it).

PostgreSQL is found at ``$DIRECTGW_TEST_POSTGRES`` (default the local server,
user postgres, trust auth). When it is unreachable the PostgreSQL cases are
skipped with the reason, except under CI (``CI=true``), where they fail: CI
must not go green by quietly testing one database.
"""

from __future__ import annotations

import os
import uuid

import asyncpg
import asyncpg.transaction
import pytest

from gateway.store import open_store

from .prerequisites import unavailable

POSTGRES_DSN = os.environ.get("DIRECTGW_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


async def _admin_connection() -> asyncpg.Connection:
    try:
        return await asyncpg.connect(POSTGRES_DSN, timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        unavailable(f"PostgreSQL at {POSTGRES_DSN} is unreachable: {exc}")


def _sqlalchemy_url(dsn: str, database: str) -> str:
    base = dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{database}"


@pytest.fixture(name="store_url", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store_url_fixture(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'directgw.db'}"
        return
    admin = await _admin_connection()
    name = f"directgw_test_{uuid.uuid4().hex[:16]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _sqlalchemy_url(POSTGRES_DSN, name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(name="store")
async def store_fixture(store_url):
    s = await open_store(store_url)
    yield s
    await s.close()


class _Counting:
    """A driver cursor that notes the first word of each statement it is given."""

    def __init__(self, cursor, sent):
        self._cursor, self._sent = cursor, sent

    def execute(self, sql, *args):
        self._sent.append(sql.split()[0])
        return self._cursor.execute(sql, *args)

    def executemany(self, sql, *args):
        self._sent.append(sql.split()[0] + "*")
        return self._cursor.executemany(sql, *args)

    def __getattr__(self, name):
        return getattr(self._cursor, name)


@pytest.fixture(name="sent")
def sent_fixture(monkeypatch):
    """The first word of each statement ``Prepared`` sends to the driver, in order."""
    import gateway.store.prepared as prepared

    sent: list[str] = []
    cursor_of = prepared._cursor
    monkeypatch.setattr(prepared, "_cursor", lambda conn: _Counting(cursor_of(conn), sent))
    return sent


@pytest.fixture(name="transactions")
def transactions_fixture(monkeypatch):
    """What asyncpg is asked to do with transactions, in order: BEGIN, COMMIT, ROLLBACK."""
    done: list[str] = []
    for method, word in (("start", "BEGIN"), ("commit", "COMMIT"), ("rollback", "ROLLBACK")):
        original = getattr(asyncpg.transaction.Transaction, method)

        async def noted(self, _original=original, _word=word):
            done.append(_word)
            return await _original(self)

        monkeypatch.setattr(asyncpg.transaction.Transaction, method, noted)
    return done
