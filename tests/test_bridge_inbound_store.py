"""Messages into the record (records-bridge spec section 6), below HTTP, on SQLite and PostgreSQL:
a known address gets a message, file and typed items in its inbox plus a recorded notification;
newuser@ holds the message as a package redeemable with the subject's answer (or the e-mail
address); anything else is an unknown recipient."""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from records_bridge import schema
from records_bridge.codes import Question, WrongAnswer
from records_bridge.inbound import (
    EMAIL_QUESTION,
    Delivered,
    Held,
    Inbound,
    InboundError,
    InboundProblem,
    NewUserSubject,
    UnknownRecipient,
    check_record_address,
    parse_message,
    parse_newuser_subject,
)
from records_bridge.packages.schema import bridge_notifications, packages
from records_bridge.packages.store import Packages, Redeemed
from records_bridge.store import RecordStore
from records_bridge.types import InboxState, ItemType, SourceKind
from tests.storage_fixtures import store_fixture, store_url_fixture  # noqa: F401 -- fixtures
from tests.test_records_store import CCD

AT = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def message(to: str, subject: str = "Visit summary", **extra):
    return {
        "to": to, "from": "dr@clinic.example", "subject": subject, "received_at": "2026-12-02T08:59:00Z",
        "body_text": "Your summary is attached.",
        "attachments": [{"filename": "summary.xml", "content_type": "text/xml", "bytes_b64": base64.b64encode(CCD).decode()}],
        **extra,
    }


@pytest.fixture(name="inbound")
async def inbound_fixture(store):
    records = RecordStore(store)
    return Inbound(store, records, Packages(store, os.urandom(32)))


async def test_known_address_gets_message_ccd_and_file_items_in_the_inbox(inbound, store):
    record = await inbound.records.create_record("Alice", ("alice@records.example",), at=AT)
    async with store.begin() as conn:
        pid = (await conn.execute(schema.persons.insert().values(
            email="alice@mail.example", display_name="Alice", created_at=AT).returning(schema.persons.c.id))).scalar_one()
        await conn.execute(schema.record_access.insert().values(person_id=pid, record_id=record.id, role="custodian",
                                                                created_at=AT))
    done = await inbound.receive("gw", parse_message(message("Alice@Records.example")), at=AT)
    assert isinstance(done, Delivered) and done.record_id == record.id
    items = await inbound.records.items(record.id)
    assert sorted(i.type.value for i in items) == ["ccd", "file", "message"]
    assert {(i.inbox_state, i.source_kind) for i in items} == {(InboxState.UNREVIEWED, SourceKind.DIRECT)}
    msg = next(i for i in items if i.type is ItemType.MESSAGE)
    assert msg.data["subject"] == "Visit summary" and msg.sender == "dr@clinic.example"
    assert all(i.parent_id == msg.id for i in items if i is not msg)
    async with store.engine.connect() as conn:
        notes = (await conn.execute(select(bridge_notifications))).mappings().all()
    assert [(n["kind"], n["recipient"], n["sent_at"]) for n in notes] == [("inbox_items", "alice@mail.example", None)]


async def test_newuser_holds_a_package_redeemable_with_the_subjects_answer(inbound, store):
    held = await inbound.receive("gw", parse_message(message("newuser@records.example", "x@y.z;Q;Answer1;Hi")), at=AT)
    assert isinstance(held, Held) and held.contact == "x@y.z"
    assert await inbound.packages.lookup(held.package.code, at=AT) == Question("Q")
    record = await inbound.records.create_record("X", (), at=AT)
    done = await inbound.packages.redeem(held.package.code, "answer1", 3, record.id, at=AT)
    assert isinstance(done, Redeemed)
    items = await inbound.records.items(record.id)
    assert sorted(i.type.value for i in items) == ["ccd", "file", "message"]
    assert {(i.inbox_state, i.source_kind) for i in items} == {(InboxState.UNREVIEWED, SourceKind.PACKAGE)}
    assert next(i for i in items if i.type is ItemType.MESSAGE).data["subject"] == "Hi"
    async with store.engine.connect() as conn:
        row = (await conn.execute(select(packages))).mappings().one()
        notes = (await conn.execute(select(bridge_notifications))).mappings().all()
    assert row["kind"] == "holding" and b"Answer1" not in repr(dict(row)).encode()
    assert [(n["kind"], n["recipient"], n["package_id"]) for n in notes] == [("holding_package", "x@y.z", row["id"])]


async def test_newuser_without_a_question_is_verified_by_the_email_address(inbound, store):
    held = await inbound.receive("gw", parse_message(message("newuser@records.example", "Pat@Mail.example")), at=AT)
    assert isinstance(held, Held)
    assert await inbound.packages.lookup(held.package.code, at=AT) == Question(EMAIL_QUESTION)
    record = await inbound.records.create_record("P", (), at=AT)
    assert await inbound.packages.redeem(held.package.code, "other@mail.example", 3, record.id, at=AT) == WrongAnswer(2)
    assert isinstance(await inbound.packages.redeem(held.package.code, "pat@MAIL.example", 3, record.id, at=AT), Redeemed)


async def test_anyone_else_is_an_unknown_recipient(inbound):
    assert await inbound.receive("gw", parse_message(message("bob@records.example")), at=AT) == UnknownRecipient(
        "bob@records.example")


@pytest.mark.parametrize(
    ("subject", "parsed"),
    [
        ("x@y.z", NewUserSubject("x@y.z", None, None, "")),
        ("x@y.z;Hello", NewUserSubject("x@y.z", None, None, "Hello")),
        ("x@y.z;Q;Answer1", NewUserSubject("x@y.z", "Q", "Answer1", "")),
        ("x@y.z;Q;Answer1;Hi", NewUserSubject("x@y.z", "Q", "Answer1", "Hi")),
        ("x@y.z ; Pet? ; Fluffy1 ; Re: a;b", NewUserSubject("x@y.z", "Pet?", "Fluffy1", "Re: a;b")),
    ],
    ids=["email", "email-subject", "email-qa", "email-qa-subject", "spaces-and-semicolons"],
)
def test_newuser_subjects(subject, parsed):
    assert parse_newuser_subject(subject) == parsed


@pytest.mark.parametrize(
    ("subject", "problem"),
    [("not an address", InboundProblem.INVALID_SUBJECT), ("x@y.z;;Answer1", InboundProblem.INVALID_SUBJECT),
     ("x@y.z;Q;short", InboundProblem.INVALID_ANSWER)],
    ids=["no-address", "empty-question", "short-answer"],
)
def test_bad_newuser_subjects(subject, problem):
    with pytest.raises(InboundError) as caught:
        parse_newuser_subject(subject)
    assert caught.value.problem is problem


@pytest.mark.parametrize(
    "change",
    [{"to": "nobody"}, {"from": None}, {"received_at": "yesterday"}, {"received_at": "2026-12-02T08:59:00"},
     {"attachments": [{"filename": "a"}]}, {"attachments": [{"bytes_b64": "!!"}]}, {"body_text": 3},
     {"subject": "s" * 999}],
    ids=["to", "from", "date", "naive-date", "no-bytes", "bad-b64", "body-type", "long-subject"],
)
def test_malformed_messages(change):
    with pytest.raises(InboundError):
        parse_message({**message("a@b.c"), **change})


@pytest.mark.parametrize(
    ("address", "ok"),
    [("alice@records.example", True), ("Al.ice-2@RECORDS.example", True), ("al@records.example", False),
     ("newuser@records.example", False), ("alice@elsewhere.example", False), ("al_ice@records.example", False),
     ("a" * 65 + "@records.example", False)],
    ids=["plain", "case-dots-hyphen", "short", "newuser", "foreign-domain", "underscore", "long"],
)
def test_record_addresses(address, ok):
    if ok:
        assert check_record_address(address, frozenset({"records.example"})) == address.lower()
    else:
        with pytest.raises(InboundError):
            check_record_address(address, frozenset({"records.example"}))


async def test_another_senders_post_with_the_same_message_id_is_delivered(inbound):
    record = await inbound.records.create_record("Alice", ("alice@records.example",), at=AT)
    posted = {**message("alice@records.example"), "message_id": "<12345@localhost>"}
    first = await inbound.receive("gw", parse_message(posted), at=AT)
    other = await inbound.receive("gw", parse_message({**posted, "from": "someone.else@clinic.example"}), at=AT)
    assert isinstance(first, Delivered) and isinstance(other, Delivered)
    assert not first.duplicate and not other.duplicate and other.items != first.items
    assert first.record_id == other.record_id == record.id


@pytest.mark.parametrize("message_id", ["<visit-1@clinic.example>", None], ids=["message-id", "content-digest"])
async def test_a_retried_post_adds_nothing(inbound, message_id):
    record = await inbound.records.create_record("Alice", ("alice@records.example",), at=AT)
    posted = {**message("alice@records.example"), **({"message_id": message_id} if message_id else {})}
    first = await inbound.receive("gw", parse_message(posted), at=AT)
    again = await inbound.receive("gw", parse_message(posted), at=AT)
    assert isinstance(first, Delivered) and not first.duplicate
    assert again == Delivered(record.id, first.items[:1], duplicate=True)
    assert len(await inbound.records.items(record.id)) == 3
    other = await inbound.receive("gw", parse_message({**posted, "subject": "Another"}), at=AT)
    assert isinstance(other, Delivered) and other.duplicate is (message_id is not None)
