"""BEGIN only once something writes (docs/storage.md): on PostgreSQL a transaction's reads before
its first write run on their own, and writes that all wait for the end go out as one statement
with no BEGIN or COMMIT around it. Whatever the shape of the work, it still commits or rolls
back whole, on both databases."""

from __future__ import annotations

import pytest
from sqlalchemy import bindparam, func, select, text
from sqlalchemy.exc import IntegrityError

from gateway.store import messaging
from gateway.store import prepared as prepared_module
from gateway.store.prepared import Prepared
from tests.pki import NOW
from tests.storage_fixtures import (  # noqa: F401 -- fixtures
    sent_fixture,
    store_fixture,
    store_url_fixture,
    transactions_fixture,
)

AUDIT = Prepared(messaging.audit.insert(), ["at", "event", "message_id", "detail"])
COUNT_AUDIT = Prepared(select(func.count()).select_from(messaging.audit))
MESSAGE = Prepared(messaging.messages.insert().returning(messaging.messages.c.id),
                   ["direction", "kind", "received_at", "mail_from", "size", "sha256", "raw", "state", "updated_at"])
STATE_OF = Prepared(select(messaging.messages.c.state).where(messaging.messages.c.id == bindparam("id")))


def _audit(event: str | None) -> dict[str, object]:
    return dict(at=NOW, event=event, message_id=None, detail=None)


def _message() -> dict[str, object]:
    return dict(direction="in", kind="message", received_at=NOW, mail_from="a@a.test", size=1, sha256="ab" * 32, raw=b"x",
                state="delivered", updated_at=NOW)


def _events(conn) -> list[str]:
    return list(conn.scalars(select(messaging.audit.c.event).order_by(messaging.audit.c.id)))


def _on_postgresql(store) -> bool:
    return store.dialect == "postgresql"


async def _undone_whole(store, work, error: type[Exception], transactions: list[str], *, begun: bool) -> None:
    """``work`` raises ``error`` through ``Store.run`` and leaves no audit row behind; on
    PostgreSQL its transaction was BEGIN then ROLLBACK, or (not ``begun``) none at all."""
    with pytest.raises(error):
        await store.run(work)
    assert await store.read(_events) == []
    if _on_postgresql(store):
        assert transactions == (["BEGIN", "ROLLBACK"] if begun else [])


async def test_reads_then_writes_that_wait_are_two_statements_and_no_begin_on_postgresql(store, sent, transactions):
    def work(conn):
        before = COUNT_AUDIT.scalar(conn, {})
        AUDIT.later_many(conn, [_audit("one"), _audit("two")])
        message = MESSAGE.later_returning(conn, _message())
        return before, message

    before, message = await store.run(work)
    assert before == 0
    assert await store.read(_events) == ["one", "two"]
    assert await store.read(lambda conn: STATE_OF.scalar(conn, {"id": int(message)})) == "delivered"
    if _on_postgresql(store):
        assert (sent[:2], transactions) == (["SELECT", "WITH"], [])


async def test_a_read_on_postgresql_is_its_statements_alone(store, transactions):
    assert await store.read(lambda conn: (COUNT_AUDIT.scalar(conn, {}), _events(conn))) == (0, [])
    if _on_postgresql(store):
        assert transactions == []


async def test_the_first_write_that_cannot_wait_begins_the_transaction_and_a_failure_after_it_undoes_it(
        store, transactions):
    def work(conn):
        COUNT_AUDIT.scalar(conn, {})
        message = MESSAGE.scalar(conn, _message())  # RETURNING read at once: BEGIN goes out before it
        AUDIT.later(conn, _audit("waits"))
        raise LookupError(f"changed its mind about {message}")

    with pytest.raises(LookupError):
        await store.run(work)
    assert await store.read(lambda conn: conn.execute(select(messaging.messages)).all()) == []
    if _on_postgresql(store):
        assert transactions == ["BEGIN", "ROLLBACK"]


async def test_writes_flushed_while_the_work_runs_are_in_one_transaction_with_what_follows(store, transactions):
    def work(conn):
        AUDIT.later(conn, _audit("flushed early"))
        assert _events(conn) == ["flushed early"]  # a read after a waiting write flushes it
        AUDIT.later(conn, _audit(None))  # event is NOT NULL: fails the final flush

    await _undone_whole(store, work, IntegrityError, transactions, begun=True)


async def test_a_single_waiting_statement_that_fails_writes_nothing(store, transactions):
    def work(conn):
        AUDIT.later_many(conn, [_audit("would be kept"), _audit(None)])

    await _undone_whole(store, work, IntegrityError, transactions, begun=False)  # one statement, atomic by itself


async def test_writes_too_many_for_one_statement_go_in_a_transaction(store, sent, transactions, monkeypatch):
    monkeypatch.setattr(prepared_module, "MAX_GROUP_PARAMETERS", 8)  # two audit rows (4 parameters each) a group

    def work(conn):
        AUDIT.later_many(conn, [_audit(str(n)) for n in range(5)] + [_audit(None)])

    with pytest.raises(IntegrityError):
        await store.run(work)
    assert await store.read(_events) == []  # the groups before the failing one are undone with it
    if _on_postgresql(store):
        assert transactions == ["BEGIN", "ROLLBACK"] and sent.count("INSERT") == 3
    await store.run(lambda conn: AUDIT.later_many(conn, [_audit(str(n)) for n in range(5)]))
    assert await store.read(_events) == ["0", "1", "2", "3", "4"]
    if _on_postgresql(store):
        assert transactions[-2:] == ["BEGIN", "COMMIT"]


async def test_a_write_through_sqlalchemy_begins_the_transaction(store, transactions):
    def work(conn):
        conn.execute(messaging.audit.insert(), _audit("by core"))
        raise LookupError("undo it")

    await _undone_whole(store, work, LookupError, transactions, begun=True)


async def test_a_locking_read_begins_the_transaction(store, transactions):
    def work(conn):
        conn.execute(select(messaging.audit.c.id).with_for_update(skip_locked=True)).all()
        AUDIT.later(conn, _audit("after the lock"))

    await store.run(work)
    assert await store.read(_events) == ["after the lock"]
    if _on_postgresql(store):
        assert transactions == ["BEGIN", "COMMIT"]


async def test_the_connection_goes_back_to_transactions_for_its_next_user(store, transactions):
    await store.run(lambda conn: COUNT_AUDIT.scalar(conn, {}))
    with pytest.raises(LookupError):
        await store.run(lambda conn: (conn.execute(text("SELECT 1")), AUDIT.run(conn, _audit("x")), _raise()))
    assert await store.read(_events) == []

    async with store.begin() as conn:  # a transaction begun by hand is one from its first statement
        await conn.execute(messaging.audit.insert(), _audit("by hand"))
    assert await store.read(_events) == ["by hand"]
    if _on_postgresql(store):
        assert transactions == ["BEGIN", "ROLLBACK", "BEGIN", "COMMIT"]


def _raise() -> None:
    raise LookupError("undo it")


@pytest.mark.parametrize(("sql", "reads_only"), [
    ("SELECT id FROM audit WHERE id = $1", True),
    ("  select 1", True),
    ("SELECT id FROM outbound WHERE state = $1 FOR UPDATE SKIP LOCKED", False),
    ("SELECT id FROM accounts FOR NO KEY UPDATE", False),
    ("SELECT id FROM accounts for share", False),
    ("SELECT id FROM accounts FOR KEY SHARE", False),
    ("SELECT pg_advisory_xact_lock($1)", False),
    ("SELECT nextval('audit_id_seq')", False),
    ("WITH w0 AS (INSERT INTO audit VALUES ($1)) SELECT 1", False),
    ("INSERT INTO audit (event) VALUES ($1)", False),
    ("UPDATE outbound SET state = $1", False),
    ("SAVEPOINT sa_savepoint_1", False),
])
def test_only_a_plain_select_runs_before_begin(sql, reads_only):
    assert prepared_module._reads_only(sql) is reads_only


async def test_a_savepoint_before_any_write_begins_the_transaction(store, transactions):
    def work(conn):
        COUNT_AUDIT.scalar(conn, {})
        nested = conn.begin_nested()
        AUDIT.run(conn, _audit("inside, undone"))
        nested.rollback()
        AUDIT.later(conn, _audit("after"))

    await store.run(work)
    assert await store.read(_events) == ["after"]
    if _on_postgresql(store):
        assert transactions == ["BEGIN", "COMMIT"]


MOVE = Prepared(
    messaging.messages.update()
    .where(messaging.messages.c.id == bindparam("held_id"), messaging.messages.c.state == bindparam("held_state"))
    .values(state=bindparam("new_state"), updated_at=bindparam("new_at"))
)
"""A guarded UPDATE, as a queue's transition is: it moves the row only from the state it holds."""


def _move(message: int, held: str) -> dict[str, object]:
    return dict(held_id=message, held_state=held, new_state="moved", new_at=NOW)


async def _a_message(store) -> int:
    return int(await store.run(lambda conn: MESSAGE.scalar(conn, _message())))


async def test_a_guarded_update_and_the_row_that_follows_it_are_one_statement_without_begin(
        store, sent, transactions):
    message = await _a_message(store)
    sent.clear()
    transactions.clear()

    matched = await store.run(lambda conn: MOVE.later_guarded(conn, _move(message, "delivered"), AUDIT,
                                                              _audit("moved")))
    if _on_postgresql(store):
        assert (sent, transactions) == (["WITH"], [])
    assert int(matched) == 1
    assert await store.read(_events) == ["moved"]
    assert await store.read(lambda conn: STATE_OF.scalar(conn, {"id": message})) == "moved"


async def test_a_guarded_update_that_matches_nothing_adds_no_row(store):
    message = await _a_message(store)

    matched = await store.run(lambda conn: MOVE.later_guarded(conn, _move(message, "queued"), AUDIT,
                                                              _audit("moved")))
    assert int(matched) == 0
    assert await store.read(_events) == []
    assert await store.read(lambda conn: STATE_OF.scalar(conn, {"id": message})) == "delivered"


@pytest.mark.parametrize("last", ["after", None], ids=["commits", "a failing write after it undoes it"])
async def test_a_guarded_update_keeps_its_place_among_the_writes_around_it(store, last):
    message = await _a_message(store)

    def work(conn):
        AUDIT.later(conn, _audit("before"))
        matched = MOVE.later_guarded(conn, _move(message, "delivered"), AUDIT, _audit("moved"))
        AUDIT.later(conn, _audit(last))  # event is NOT NULL: None fails the final flush
        return matched

    if last is None:
        with pytest.raises(IntegrityError):
            await store.run(work)
        assert await store.read(_events) == []
        assert await store.read(lambda conn: STATE_OF.scalar(conn, {"id": message})) == "delivered"
        return
    assert int(await store.run(work)) == 1
    assert await store.read(_events) == ["before", "moved", "after"]
