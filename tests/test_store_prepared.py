"""``Prepared``: a hot statement run on the driver's cursor writes and reads exactly what
``Connection.execute`` would, on both databases, and fails with SQLAlchemy's errors."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError

from gateway.store import messaging
from gateway.store.prepared import Prepared
from tests.pki import NOW
from tests.storage_fixtures import store_fixture, store_url_fixture  # noqa: F401 -- fixtures

MESSAGE = dict(
    direction="in", kind="message", received_at=NOW, peer="192.0.2.1", helo=None, mail_from="a@a.test",
    message_id="<m@a.test>", sender="a@a.test", subject="Résumé ☃", size=3, sha256="ab" * 32,
    raw=b"\x00\r\n\xff", state="delivered", reason=None, detail="x" * 5000, updated_at=NOW + timedelta(seconds=1),
)
INSERT_MESSAGE = messaging.messages.insert().returning(messaging.messages.c.id)
PREPARED_MESSAGE = Prepared(INSERT_MESSAGE, list(MESSAGE))
RECIPIENT = Prepared(messaging.message_recipients.insert(),
                     ["message_id", "recipient", "state", "reason", "detail", "record_id", "updated_at"])
STATE_OF = Prepared(select(messaging.messages.c.state, messaging.messages.c.raw)
                    .where(messaging.messages.c.id == bindparam("id")))


def _columns(row):
    return {k: v for k, v in row._mapping.items() if k != "id"}


async def test_a_prepared_insert_stores_what_core_stores(store):
    def work(conn):
        by_core = conn.execute(INSERT_MESSAGE, MESSAGE).scalar_one()
        by_cursor = PREPARED_MESSAGE.scalar(conn, MESSAGE)
        rows = {r.id: r for r in conn.execute(select(messaging.messages))}
        return _columns(rows[by_core]), _columns(rows[by_cursor]), by_cursor

    core, cursor, new_id = await store.run(work)
    assert cursor == core
    assert cursor["received_at"] == NOW and cursor["received_at"].tzinfo is not None
    assert cursor["raw"] == b"\x00\r\n\xff" and cursor["subject"] == "Résumé ☃"
    assert await store.read(lambda conn: STATE_OF.first(conn, {"id": new_id})) == ("delivered", b"\x00\r\n\xff")
    assert await store.read(lambda conn: STATE_OF.first(conn, {"id": -1})) is None


async def test_many_rows_in_one_statement(store):
    def work(conn):
        message = PREPARED_MESSAGE.scalar(conn, MESSAGE)
        RECIPIENT.run_many(conn, [
            dict(message_id=message, recipient=f"p{i}@b.test", state="delivered", reason=None, detail=None,
                 record_id=i, updated_at=NOW) for i in range(3)
        ])
        RECIPIENT.run_many(conn, [])
        return sorted(conn.scalars(select(messaging.message_recipients.c.recipient)).all())

    assert await store.run(work) == ["p0@b.test", "p1@b.test", "p2@b.test"]


async def test_a_broken_constraint_is_sqlalchemys_integrity_error_and_rolls_back_the_transaction(store):
    def work(conn):
        message = PREPARED_MESSAGE.scalar(conn, MESSAGE)
        row = dict(message_id=message, recipient="p@b.test", state="delivered", reason=None, detail=None,
                   record_id=None, updated_at=NOW)
        RECIPIENT.run(conn, row)
        RECIPIENT.run(conn, row)  # unique (message_id, recipient)

    with pytest.raises(IntegrityError):
        await store.run(work)
    assert await store.read(lambda conn: conn.scalars(select(messaging.messages.c.id)).all()) == []


TOUCH = Prepared(messaging.messages.update().where(messaging.messages.c.state == bindparam("state"))
                 .values(updated_at=bindparam("at")).returning(*messaging.messages.c))
NOTHING_BACK = Prepared(messaging.messages.update().values(state=bindparam("state")))


async def test_returned_rows_read_as_cores_result_reads_them(store):
    """Timestamps come back as aware datetimes (SQLite stores text), bytes as bytes, by name."""
    later = NOW + timedelta(minutes=5)

    def work(conn):
        PREPARED_MESSAGE.run_many(conn, [MESSAGE, MESSAGE | {"state": "rejected"}])
        by_cursor = TOUCH.rows(conn, {"state": "delivered", "at": later})
        by_core = conn.execute(select(messaging.messages).where(messaging.messages.c.state == "delivered")).all()
        return by_cursor, by_core

    by_cursor, by_core = await store.run(work)
    assert [r._asdict() for r in by_cursor] == [dict(r._mapping) for r in by_core]
    (row,) = by_cursor
    assert row.updated_at == later and row.updated_at.tzinfo is not None and row.received_at == NOW
    assert row.raw == b"\x00\r\n\xff" and row.subject == "Résumé ☃"
    assert await store.run(lambda conn: TOUCH.rows(conn, {"state": "gone", "at": later})) == []


async def test_rows_of_a_statement_that_returns_none_is_a_mistake(store):
    with pytest.raises(TypeError):
        await store.run(lambda conn: NOTHING_BACK.rows(conn, {"state": "x"}))
