"""Connect requests' states on SQLite and PostgreSQL (records-bridge spec section 3): creation
and its refusals, one live request per external id, three chances, 28-day expiry, single-use
tickets, the 90-day retrieval window, and nothing secret at rest."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from records_bridge.codes import Question, Refusal, Refused, WrongAnswer, parse_code
from records_bridge.connect.schema import connect_requests
from records_bridge.connect.store import (
    Authorized,
    ConnectError,
    ConnectProblem,
    ConnectRequests,
    Verified,
)
from records_bridge.store import RecordStore
from tests.storage_fixtures import store_fixture, store_url_fixture  # noqa: F401 -- fixtures

AT = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
PEPPER = os.urandom(32)


class Grants:
    """A fake of the GrantWriter protocol: remembers (client, person, record) grants."""

    def __init__(self) -> None:
        self.grants: dict[tuple[str, int, int], int] = {}

    def __call__(self, conn, client_id, person_id, record_id, at):
        key = (client_id, person_id, record_id)
        existed = key in self.grants
        self.grants.setdefault(key, len(self.grants) + 1)
        return self.grants[key], existed


@pytest.fixture(name="connect")
async def connect_fixture(store):
    return ConnectRequests(store, PEPPER)


async def test_create_returns_the_code_once_and_stores_neither_secret(connect, store):
    created = await connect.create("app1", "ext-1", "Dr Smith's app", "Pet's name?", "Fluffy", at=AT)
    assert created.expires_at == AT + timedelta(days=28)
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(connect_requests))).mappings().all()
    dumped = repr([dict(r) for r in rows])
    assert created.code.canonical not in dumped and created.code.display not in dumped
    assert "Fluffy" not in dumped and "fluffy" not in dumped


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        (("", "n", "q?", "Fluffy"), ConnectProblem.INVALID_REQUEST),
        (("e" * 256, "n", "q?", "Fluffy"), ConnectProblem.INVALID_REQUEST),
        (("e", "", "q?", "Fluffy"), ConnectProblem.INVALID_REQUEST),
        (("e", "n", "   ", "Fluffy"), ConnectProblem.INVALID_QUESTION),
        (("e", "n", "q" * 256, "Fluffy"), ConnectProblem.INVALID_QUESTION),
        (("e", "n", "q?", "Fluff"), ConnectProblem.INVALID_ANSWER),
        (("e", "n", "q?", " Fluffy"), ConnectProblem.INVALID_ANSWER),
        (("e", "n", "q?", None), ConnectProblem.INVALID_ANSWER),
    ],
    ids=["empty-ext", "long-ext", "empty-name", "blank-question", "long-question", "short-answer",
         "padded-answer", "no-answer"],
)
async def test_create_refuses(connect, fields, problem):
    with pytest.raises(ConnectError) as caught:
        await connect.create("app1", *fields, at=AT)
    assert caught.value.problem is problem


async def test_one_live_request_per_client_and_external_id(connect):
    first = await connect.create("app1", "ext", "n", "q?", "Fluffy", at=AT)
    with pytest.raises(ConnectError) as caught:
        await connect.create("app1", "ext", "n", "q?", "Fluffy", at=AT)
    assert caught.value.problem is ConnectProblem.DUPLICATE_EXTERNAL_ID
    await connect.create("app2", "ext", "n", "q?", "Fluffy", at=AT)  # another app's ids are its own
    await connect.delete("app1", "ext", at=AT)
    second = await connect.create("app1", "ext", "n", "q?", "Fluffy", at=AT)
    assert second.code != first.code
    assert await connect.lookup(first.code, at=AT) == Refused(Refusal.UNKNOWN)  # deletion destroyed the code
    with pytest.raises(ConnectError):
        await connect.delete("app1", "nope", at=AT)


async def test_an_expired_request_frees_its_external_id(connect):
    first = await connect.create("app1", "ext", "n", "q?", "Fluffy", at=AT)
    later = AT + timedelta(days=28, seconds=1)
    assert await connect.lookup(first.code, at=later) == Refused(Refusal.EXPIRED)
    await connect.create("app1", "ext", "n", "q?", "Fluffy", at=later)


async def test_rename(connect):
    created = await connect.create("app1", "a", "n", "q?", "Fluffy", at=AT)
    await connect.create("app1", "b", "n", "q?", "Fluffy", at=AT)
    with pytest.raises(ConnectError) as caught:
        await connect.rename("app1", "a", "b", at=AT)
    assert caught.value.problem is ConnectProblem.DUPLICATE_EXTERNAL_ID
    await connect.rename("app1", "a", "c", at=AT)
    assert await connect.lookup(created.code, at=AT) == Question("q?")
    with pytest.raises(ConnectError) as caught:
        await connect.rename("app1", "a", "d", at=AT)
    assert caught.value.problem is ConnectProblem.NOT_FOUND


async def test_three_chances_then_locked_even_for_the_right_answer(connect):
    created = await connect.create("app1", "ext", "n", "q?", "Fluffy", at=AT)
    assert await connect.verify(created.code, "wrong1", 1, at=AT) == WrongAnswer(2)
    assert await connect.verify(created.code, "wrong2", 1, at=AT) == WrongAnswer(1)
    assert await connect.verify(created.code, "wrong3", 1, at=AT) == WrongAnswer(0)
    assert await connect.verify(created.code, "Fluffy", 1, at=AT) == Refused(Refusal.LOCKED)
    assert await connect.lookup(created.code, at=AT) == Refused(Refusal.LOCKED)


async def test_a_right_answer_resets_the_count(connect):
    created = await connect.create("app1", "ext", "n", "q?", "Fluffy", at=AT)
    for _ in range(2):
        assert isinstance(await connect.verify(created.code, "wrong1", 1, at=AT), WrongAnswer)
    assert isinstance(await connect.verify(created.code, "fluffy", 1, at=AT), Verified)
    assert await connect.verify(created.code, "wrong1", 1, at=AT) == WrongAnswer(2)


async def test_authorize_with_a_single_use_ticket_and_the_retrieval_window(connect, store):
    record = await RecordStore(store).create_record("Alice", (), at=AT)
    grants = Grants()
    created = await connect.create("app1", "ext", "Clinic app", "q?", "Fluffy", at=AT)
    verified = await connect.verify(parse_code(created.code.display.lower()), "FLUFFY", 7, at=AT)
    assert isinstance(verified, Verified) and verified.friendly_name == "Clinic app"
    assert await connect.authorize(verified.ticket, 8, record.id, grants, at=AT) is None  # someone else's ticket
    done = await connect.authorize(verified.ticket, 7, record.id, grants, at=AT)
    assert done == Authorized(1, again=False, friendly_name="Clinic app")
    assert await connect.authorize(verified.ticket, 7, record.id, grants, at=AT) is None  # used
    page, more = await connect.authorized("app1", since=AT - timedelta(seconds=1), at=AT)
    assert [(r.external_id, r.person_id, r.record_id, r.client_record_id) for r in page] == [("ext", 7, record.id, "1")]
    assert not more
    assert (await connect.authorized("app2", since=None, at=AT))[0] == []

    gone = AT + timedelta(days=90, seconds=1)
    assert (await connect.authorized("app1", since=None, at=gone))[0] == []
    again = await connect.verify(created.code, "Fluffy", 7, at=gone)  # still usable: HV reuse semantics
    assert isinstance(again, Verified)
    assert await connect.authorize(again.ticket, 7, record.id, grants, at=gone) == Authorized(1, True, "Clinic app")
    assert [r.external_id for r in (await connect.authorized("app1", since=None, at=gone))[0]] == ["ext"]


async def test_tickets_last_five_minutes(connect, store):
    record = await RecordStore(store).create_record("Alice", (), at=AT)
    created = await connect.create("app1", "ext", "n", "q?", "Fluffy", at=AT)
    verified = await connect.verify(created.code, "Fluffy", 7, at=AT)
    assert isinstance(verified, Verified)
    late = AT + timedelta(minutes=5, seconds=1)
    assert await connect.ticket(verified.ticket, 7, at=late) is None
    assert await connect.authorize(verified.ticket, 7, record.id, Grants(), at=late) is None


async def test_authorized_list_pages_oldest_first(connect, store):
    record = await RecordStore(store).create_record("Alice", (), at=AT)
    grants = Grants()
    for n in range(5):
        created = await connect.create("app1", f"ext{n}", "n", "q?", "Fluffy", at=AT)
        verified = await connect.verify(created.code, "Fluffy", n + 1, at=AT)
        assert isinstance(verified, Verified)
        await connect.authorize(verified.ticket, n + 1, record.id, grants, at=AT + timedelta(seconds=n // 2))
    first, more = await connect.authorized("app1", since=None, limit=2, at=AT)
    assert more and [r.external_id for r in first] == ["ext0", "ext1"]
    rest, more = await connect.authorized("app1", since=None, after_id=first[-1].id, limit=10, at=AT)
    assert not more and [r.external_id for r in rest] == ["ext2", "ext3", "ext4"]


async def test_sweep_expires_and_destroys_dead_verifiers(connect, store):
    expired = await connect.create("app1", "old", "n", "q?", "Fluffy", at=AT)
    locked = await connect.create("app1", "locked", "n", "q?", "Fluffy", at=AT)
    for _ in range(3):
        await connect.verify(locked.code, "wrong1", 1, at=AT)
    assert await connect.sweep(at=AT + timedelta(days=28)) == 0  # the last valid instant
    assert await connect.sweep(at=AT + timedelta(days=28, seconds=1)) == 1
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(connect_requests.c.state, connect_requests.c.answer_hash))).all()
    assert sorted(rows) == [("expired", None), ("locked", None)]
    assert await connect.lookup(expired.code, at=AT) == Refused(Refusal.EXPIRED)


async def test_parallel_guesses_are_counted_one_after_the_other(connect):
    created = await connect.create("app1", "ext", "n", "q?", "Fluffy", at=AT)
    outcomes = await asyncio.gather(*(connect.verify(created.code, f"wrong{n}", 1, at=AT) for n in range(6)))
    assert sorted(o.attempts_remaining for o in outcomes if isinstance(o, WrongAnswer)) == [0, 1, 2]
    assert [o for o in outcomes if not isinstance(o, WrongAnswer)] == [Refused(Refusal.LOCKED)] * 3
    assert await connect.verify(created.code, "Fluffy", 1, at=AT) == Refused(Refusal.LOCKED)


async def test_a_ticket_authorizes_once_even_in_parallel(connect, store):
    record = await RecordStore(store).create_record("Alice", (), at=AT)
    created = await connect.create("app1", "ext", "n", "q?", "Fluffy", at=AT)
    verified = await connect.verify(created.code, "Fluffy", 7, at=AT)
    assert isinstance(verified, Verified)
    grants = Grants()
    done = await asyncio.gather(*(connect.authorize(verified.ticket, 7, record.id, grants, at=AT) for _ in range(4)))
    assert sum(d is not None for d in done) == 1
