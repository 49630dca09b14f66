"""``Prepared``: a hot statement run on the driver's cursor writes and reads exactly what
``Connection.execute`` would, on both databases, and fails with SQLAlchemy's errors."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError

from gateway.store import messaging
from gateway.store.prepared import IdText, Prepared, Ref, UnresolvedId, id_text
from tests.pki import NOW
from tests.storage_fixtures import sent_fixture, store_fixture, store_url_fixture  # noqa: F401 -- fixtures

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


# --------------------------------------------------------------------------- later: deferred writes

AUDIT = Prepared(messaging.audit.insert(), ["at", "message_id", "recipient", "event", "reason", "detail", "peer", "node"])
AUDIT_OTHER_SHAPE = Prepared(messaging.audit.insert(), ["at", "message_id", "event"])
SET_STATE = Prepared(messaging.messages.update().where(messaging.messages.c.id == bindparam("id"))
                     .values(state=bindparam("state")))


def _audit(message, event):
    return dict(at=NOW, message_id=message, recipient=None, event=event, reason=None, detail="d$1 'q'", peer=None,
                node=None)


def _events(conn):
    return [r.event for r in conn.execute(select(messaging.audit.c.event).order_by(messaging.audit.c.id))]


async def test_a_deferred_write_is_seen_by_the_next_read_in_its_transaction(store):
    def work(conn):
        message = PREPARED_MESSAGE.scalar(conn, MESSAGE)
        SET_STATE.later(conn, {"id": message, "state": "rejected"})
        by_cursor = STATE_OF.first(conn, {"id": message})[0]
        AUDIT.later(conn, _audit(message, "one"))
        by_core = _events(conn)  # a statement through SQLAlchemy flushes first too
        return by_cursor, by_core

    assert await store.run(work) == ("rejected", ["one"])


async def test_deferred_rows_keep_the_order_they_were_given_in(store):
    def work(conn):
        message = PREPARED_MESSAGE.scalar(conn, MESSAGE)
        AUDIT.later(conn, _audit(message, "first"))
        AUDIT.later_many(conn, [_audit(message, "second"), _audit(message, "third")])
        RECIPIENT.later(conn, dict(message_id=message, recipient="p@b.test", state="delivered", reason=None,
                                   detail=None, record_id=None, updated_at=NOW))
        AUDIT_OTHER_SHAPE.later(conn, dict(at=NOW, message_id=message, event="fourth"))
        AUDIT.later(conn, _audit(message, "fifth"))
        SET_STATE.later(conn, {"id": message, "state": "a"})
        SET_STATE.later(conn, {"id": message, "state": "b"})  # the same row twice: the last wins
        return message

    message = await store.run(work)
    assert await store.read(_events) == ["first", "second", "third", "fourth", "fifth"]
    assert await store.read(lambda conn: STATE_OF.first(conn, {"id": message})[0]) == "b"
    details = await store.read(lambda conn: conn.scalars(select(messaging.audit.c.detail)).all())
    assert set(details) - {None} == {"d$1 'q'"}  # parameters, never text: a $ or a quote stays data


async def test_a_deferred_write_that_breaks_a_constraint_fails_its_transaction_whole(store):
    def work(conn):
        message = PREPARED_MESSAGE.scalar(conn, MESSAGE)
        AUDIT.later(conn, _audit(message, "kept only if all is"))
        AUDIT.later(conn, _audit(message, None))  # event is NOT NULL
        return message

    with pytest.raises(IntegrityError):
        await store.run(work)
    assert await store.read(lambda conn: conn.execute(select(messaging.messages)).all()) == []
    assert await store.read(_events) == []


async def test_deferred_writes_of_a_transaction_that_raises_are_never_written(store):
    def work(conn):
        message = PREPARED_MESSAGE.scalar(conn, MESSAGE)
        AUDIT.later(conn, _audit(message, "lost"))
        raise LookupError("the work changed its mind")

    with pytest.raises(LookupError):
        await store.run(work)
    assert await store.run(lambda conn: _events(conn)) == []  # nor carried into the connection's next transaction


async def test_a_savepoint_rolled_back_takes_its_deferred_writes_with_it(store):
    def work(conn):
        message = PREPARED_MESSAGE.scalar(conn, MESSAGE)
        AUDIT.later(conn, _audit(message, "before"))
        nested = conn.begin_nested()
        AUDIT.later(conn, _audit(message, "inside"))
        nested.rollback()
        nested = conn.begin_nested()
        AUDIT.later(conn, _audit(message, "released"))
        nested.commit()
        AUDIT.later(conn, _audit(message, "after"))

    await store.run(work)
    assert await store.read(_events) == ["before", "released", "after"]


async def test_deferred_writes_go_as_one_statement_on_postgresql_and_at_once_on_sqlite(store, sent):
    def work(conn):
        message = PREPARED_MESSAGE.scalar(conn, MESSAGE)
        AUDIT.later_many(conn, [_audit(message, str(n)) for n in range(5)])
        RECIPIENT.later(conn, dict(message_id=message, recipient="p@b.test", state="delivered", reason=None,
                                   detail=None, record_id=None, updated_at=NOW))
        SET_STATE.later(conn, {"id": message, "state": "rejected"})
        return message

    message = await store.run(work)
    # on PostgreSQL: one round trip for the three writes; SQLite has none to save
    assert sent == (["INSERT", "WITH"] if store.dialect == "postgresql" else ["INSERT", "INSERT*", "INSERT", "UPDATE"])
    assert await store.read(_events) == ["0", "1", "2", "3", "4"]
    assert await store.read(lambda conn: STATE_OF.first(conn, {"id": message})[0]) == "rejected"


def test_grouped_statements_carry_their_parameters_in_order_and_within_the_protocols_limit():
    from sqlalchemy.dialects.postgresql import asyncpg

    from gateway.store.prepared import MAX_GROUP_PARAMETERS, _Deferrable, _statements, _Waiting

    dialect = asyncpg.dialect()
    audit = _Deferrable.of(AUDIT._for(dialect).sql)
    state = _Deferrable.of(SET_STATE._for(dialect).sql)
    assert audit is not None and state is not None and audit.width == 8 and state.width == 2
    rows = [tuple(range(n * 8, n * 8 + 8)) for n in range(MAX_GROUP_PARAMETERS // 8 + 1)]
    statements = list(_statements([_Waiting(audit, rows), _Waiting(state, [("s", 1)])]))
    assert [len(params) for _sql, params, _ids in statements] == [MAX_GROUP_PARAMETERS // 8 * 8, 8 + 2]
    last_sql, last_params, _ids = statements[-1]
    assert last_sql.startswith("WITH w0 AS (INSERT INTO audit") and "$9::" in last_sql and "$10::" in last_sql
    assert last_params == (*rows[-1], "s", 1)
    assert _Deferrable.of("UPDATE t SET a='x' WHERE b = $1") is None  # a quoted literal: never grouped


async def test_deferred_writes_in_a_transaction_begun_by_hand_are_written_at_its_commit_or_fail_it(store):
    async with store.begin() as conn:
        message = await conn.run_sync(lambda c: PREPARED_MESSAGE.scalar(c, MESSAGE))
        await conn.run_sync(lambda c: AUDIT.later(c, _audit(message, "at commit")))
    assert await store.read(_events) == ["at commit"]

    with pytest.raises(IntegrityError):
        async with store.begin() as conn:
            await conn.run_sync(lambda c: AUDIT.later(c, _audit(message, None)))
    assert await store.read(_events) == ["at commit"]
    assert await store.run(lambda conn: _events(conn)) == ["at commit"]  # the connection is usable again


async def test_on_postgresql_waiting_writes_travel_with_the_next_insert_into_another_table(store, sent):
    def work(conn):
        first = PREPARED_MESSAGE.scalar(conn, MESSAGE)
        AUDIT.later(conn, _audit(first, "with the next insert"))
        SET_STATE.later(conn, {"id": first, "state": "rejected"})
        second = PREPARED_MESSAGE.scalar(conn, MESSAGE)  # messages: SET_STATE waits on it, so alone first
        AUDIT.later(conn, _audit(second, "carried"))
        RECIPIENT.later(conn, dict(message_id=second, recipient="p@b.test", state="delivered", reason=None,
                                   detail=None, record_id=None, updated_at=NOW))
        third = PREPARED_MESSAGE.scalar(conn, MESSAGE)  # another table's writes ride on this insert
        return first, second, third, STATE_OF.first(conn, {"id": first})[0]

    first, second, third, state = await store.run(work)
    assert len({first, second, third}) == 3 and state == "rejected"
    if store.dialect == "postgresql":
        assert sent == ["INSERT", "WITH", "INSERT", "WITH", "SELECT"]
    assert await store.read(_events) == ["with the next insert", "carried"]
    recipients = await store.read(lambda conn: conn.execute(select(messaging.message_recipients.c.message_id)).all())
    assert [r.message_id for r in recipients] == [second]


# --------------------------------------------------------------------------- later_returning: deferred ids

JOB = Prepared(messaging.outbound.insert().returning(messaging.outbound.c.id), [
    "message_id", "kind", "sender", "recipient", "payload", "state", "attempts", "next_attempt_at", "expires_at",
    "created_at", "updated_at",
])
JOB_OF = Prepared(select(messaging.outbound.c.message_id).where(messaging.outbound.c.id == bindparam("id")))


def _job(message):
    return dict(message_id=message, kind="mdn", sender="a@a.test", recipient="b@b.test", payload=b"x",
                state="queued", attempts=0, next_attempt_at=NOW, expires_at=NOW, created_at=NOW, updated_at=NOW)


def _trail(conn):
    rows = conn.execute(select(messaging.audit.c.message_id, messaging.audit.c.detail).order_by(messaging.audit.c.id))
    return [tuple(r) for r in rows]


async def test_ids_later_writes_need_wait_with_them_on_postgresql_and_are_known_at_once_on_sqlite(store, sent):
    def work(conn):
        message = PREPARED_MESSAGE.later_returning(conn, MESSAGE)
        other = PREPARED_MESSAGE.later_returning(conn, MESSAGE)  # two of one table: each its own INSERT
        job = JOB.later_returning(conn, _job(message))
        RECIPIENT.later(conn, dict(message_id=other, recipient="p@b.test", state="delivered", reason=None,
                                   detail=None, record_id=None, updated_at=NOW))
        AUDIT.later_many(conn, [
            dict(_audit(message, "queued"), detail=id_text("outbound #", job, " (mdn)")),
            dict(_audit(other, "plain"), detail="$2 'q'"),
        ])
        return message, other, job

    message, other, job = await store.run(work)
    # on PostgreSQL one statement for all five writes; SQLite has no round trip to save
    assert sent == (["WITH"] if store.dialect == "postgresql" else ["INSERT", "INSERT", "INSERT", "INSERT", "INSERT*"])
    message, other, job = int(message), int(other), int(job)
    assert len({message, other}) == 2
    assert await store.read(lambda conn: JOB_OF.scalar(conn, {"id": job})) == message
    assert await store.read(lambda conn: conn.scalar(select(messaging.message_recipients.c.message_id))) == other
    assert await store.read(_trail) == [(message, f"outbound #{job} (mdn)"), (other, "$2 'q'")]


async def test_a_deferred_id_is_read_only_once_its_insert_has_run(store):
    def work(conn):
        message = PREPARED_MESSAGE.later_returning(conn, MESSAGE)
        if store.dialect == "postgresql":
            with pytest.raises(UnresolvedId):
                int(message)
            with pytest.raises(UnresolvedId):
                str(id_text("#", message))
        state = STATE_OF.first(conn, {"id": message})[0]  # a statement naming it runs the insert first
        return int(message), state

    message, state = await store.run(work)
    assert state == "delivered" and message > 0


async def test_an_update_of_a_row_a_waiting_insert_makes_runs_after_it(store, sent):
    def work(conn):
        message = PREPARED_MESSAGE.later_returning(conn, MESSAGE)
        SET_STATE.later(conn, {"id": message, "state": "duplicate"})  # one statement would not see the row
        AUDIT.later(conn, _audit(message, "after"))
        return message

    message = await store.run(work)
    if store.dialect == "postgresql":
        assert sent == ["WITH", "WITH"]  # the insert (its id read back), then the update and the audit row
    assert await store.read(lambda conn: STATE_OF.first(conn, {"id": int(message)})[0]) == "duplicate"


async def test_a_savepoint_rolled_back_leaves_its_deferred_ids_unknown(store):
    def work(conn):
        kept = PREPARED_MESSAGE.later_returning(conn, MESSAGE)
        nested = conn.begin_nested()
        lost = PREPARED_MESSAGE.later_returning(conn, MESSAGE)
        nested.rollback()
        return kept, lost

    kept, lost = await store.run(work)
    assert await store.read(lambda conn: conn.scalars(select(messaging.messages.c.id)).all()) == [int(kept)]
    if store.dialect == "postgresql":
        with pytest.raises(UnresolvedId):
            int(lost)


def test_a_text_naming_an_id_is_plain_text_once_the_id_is_known():
    ref = Ref()
    waiting = id_text("outbound #", ref, " (mdn)")
    assert isinstance(waiting, IdText)
    ref.value = 17
    assert str(waiting) == "outbound #17 (mdn)" and f"{ref}" == "17"
    assert id_text("outbound #", ref, " (mdn)") == "outbound #17 (mdn)" == id_text("outbound #", 17, " (mdn)")


async def test_on_postgresql_an_update_carries_the_waiting_writes_of_other_tables_only(store, sent):
    def work(conn):
        first = PREPARED_MESSAGE.scalar(conn, MESSAGE)
        AUDIT.later(conn, _audit(first, "carried by the update"))
        SET_STATE.run(conn, {"id": first, "state": "rejected"})  # audit: another table, rides on it
        SET_STATE.later(conn, {"id": first, "state": "delivered"})
        SET_STATE.run(conn, {"id": first, "state": "expired"})  # its own table: the waiting one goes first
        return first, STATE_OF.first(conn, {"id": first})[0]

    _first, state = await store.run(work)
    assert state == "expired"
    if store.dialect == "postgresql":
        assert sent == ["INSERT", "WITH", "UPDATE", "UPDATE", "SELECT"]
    assert await store.read(_events) == ["carried by the update"]


MESSAGE_BY_SHA = Prepared(select(messaging.messages.c.id).where(messaging.messages.c.sha256 == bindparam("sha")))


def _recipient_of(message):
    return dict(message_id=message, recipient="p@b.test", state="delivered", reason=None, detail=None,
                record_id=None, updated_at=NOW)


def _recipients(conn):
    return [r.message_id for r in conn.execute(select(messaging.message_recipients.c.message_id))]


async def test_a_value_writes_need_from_a_read_goes_with_them_on_postgresql_and_is_read_on_sqlite(store, sent):
    message = int(await store.run(lambda conn: PREPARED_MESSAGE.scalar(conn, MESSAGE)))
    sent.clear()

    def work(conn):
        found = MESSAGE_BY_SHA.later_selected(conn, {"sha": MESSAGE["sha256"]})
        if found is None:  # SQLite: nothing waits, the caller reads
            found = MESSAGE_BY_SHA.scalar(conn, {"sha": MESSAGE["sha256"]})
        RECIPIENT.later(conn, _recipient_of(found))
        return found

    found = await store.run(work)
    assert int(found) == message
    assert sent == (["WITH"] if store.dialect == "postgresql" else ["SELECT", "INSERT"])
    assert await store.read(_recipients) == [message]


async def test_a_waiting_read_that_finds_nothing_fails_the_writes_naming_it_whole(store):
    def work(conn):
        AUDIT.later(conn, _audit(None, "written only if all is"))
        found = MESSAGE_BY_SHA.later_selected(conn, {"sha": "no such message"})
        if found is None:  # SQLite: read at once, nothing found, the same NOT NULL refuses it
            found = MESSAGE_BY_SHA.scalar(conn, {"sha": "no such message"})
        RECIPIENT.later(conn, _recipient_of(found))

    with pytest.raises(IntegrityError):
        await store.run(work)
    assert await store.read(_events) == [] and await store.read(_recipients) == []


async def test_a_waiting_read_sees_every_write_given_before_it(store, sent):
    def work(conn):
        message = PREPARED_MESSAGE.later_returning(conn, MESSAGE)  # the same table: it goes first
        found = MESSAGE_BY_SHA.later_selected(conn, {"sha": MESSAGE["sha256"]})
        if found is None:
            found = MESSAGE_BY_SHA.scalar(conn, {"sha": MESSAGE["sha256"]})
        RECIPIENT.later(conn, _recipient_of(found))
        return message, found

    message, found = await store.run(work)
    assert int(found) == int(message)
    if store.dialect == "postgresql":
        assert sent == ["WITH", "WITH"]
    assert await store.read(_recipients) == [int(message)]


def test_only_a_one_column_select_of_one_table_can_wait():
    from gateway.store.prepared import _Deferrable

    def select_shape(sql):
        shape = _Deferrable.of(sql)
        return shape is not None and shape.select

    assert select_shape("SELECT record_addresses.record_id \nFROM record_addresses \nWHERE record_addresses.address = $1")
    assert not select_shape("SELECT a.id, a.x \nFROM a \nWHERE a.id = $1")
    assert not select_shape("SELECT a.id \nFROM a JOIN b ON b.a = a.id \nWHERE a.id = $1")
    assert not select_shape("SELECT a.id \nFROM a \nWHERE a.id = $1 FOR UPDATE")
    assert not select_shape("SELECT a.id \nFROM a \nWHERE a.name = 'x'")
