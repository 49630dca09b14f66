"""Packages' states on SQLite and PostgreSQL (records-bridge spec section 4): allocate, drop off
(app-sealed or convenience), one-time redemption into the chosen record's inbox, three chances,
28-day expiry, purge of dead envelopes, and nothing secret at rest."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from records_bridge.client import PackageItem, seal_package
from records_bridge.codes import Question, Refusal, Refused, WrongAnswer, new_code
from records_bridge.packages import envelope
from records_bridge.packages.schema import packages
from records_bridge.packages.store import (
    DropOff,
    PackageError,
    PackageProblem,
    Packages,
    Redeemed,
    Unreadable,
)
from records_bridge.store import RecordStore
from records_bridge.types import InboxState, ItemType, SourceKind
from tests.storage_fixtures import store_fixture, store_url_fixture  # noqa: F401 -- fixtures
from tests.test_records_store import CCD

AT = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
PEPPER = os.urandom(32)
ABOUT = DropOff("ext-1", "Your lab results", "Your pet's name?")
ITEMS = [{"content_type": "text/xml", "filename": "ccd.xml", "bytes_b64": __import__("base64").b64encode(CCD).decode()},
         {"content_type": "application/pdf", "filename": "r.pdf", "bytes_b64": "JVBERi0xLjQ="}]


@pytest.fixture(name="pkgs")
async def packages_fixture(store):
    return Packages(store, PEPPER)


@pytest.fixture(name="record")
async def record_fixture(store):
    return (await RecordStore(store).create_record("Alice", (), at=AT)).id


async def test_convenience_drop_off_and_pickup(pkgs, store, record):
    created = await pkgs.drop_off_sealing("app1", None, ABOUT, "Fluffy1", ITEMS, at=AT)
    assert created.expires_at == AT + timedelta(days=28)
    assert await pkgs.lookup(created.code, at=AT) == Question("Your pet's name?")
    done = await pkgs.redeem(created.code, "fluffy1", 7, record, at=AT)
    assert isinstance(done, Redeemed) and done.friendly_name == "Your lab results"
    items = await RecordStore(store).items(record)
    assert [i.uid for i in items] == list(done.imported)
    assert [(i.type, i.inbox_state, i.source_kind) for i in items] == [
        (ItemType.CCD, InboxState.UNREVIEWED, SourceKind.PACKAGE),
        (ItemType.FILE, InboxState.UNREVIEWED, SourceKind.PACKAGE),
    ]
    assert items[0].data["created"] == {"by_client": "app1"} and items[1].filename == "r.pdf"
    assert await RecordStore(store).blob(items[0].id) == CCD
    # one time: the ciphertext is gone, a second redeem is refused
    assert await pkgs.redeem(created.code, "fluffy1", 7, record, at=AT) == Refused(Refusal.PICKED_UP)
    async with store.engine.connect() as conn:
        row = (await conn.execute(select(packages))).mappings().one()
    assert row["envelope"] is None and row["state"] == "picked_up" and row["record_id"] == record
    assert row["picked_up_by"] == 7 and row["item_count"] == 2


async def test_app_sealed_drop_off_into_an_allocated_code(pkgs, store, record):
    allocated = await pkgs.allocate("app1", at=AT)
    assert await pkgs.lookup(allocated.code, at=AT) == Refused(Refusal.INCOMPLETE)
    assert await pkgs.redeem(allocated.code, "Fluffy1", 7, record, at=AT) == Refused(Refusal.INCOMPLETE)
    sealed = envelope.parse(seal_package([PackageItem("text/plain", b"hello", "note.txt")], "Fluffy1",
                                         code=allocated.code.display, client_id="app1"))
    with pytest.raises(PackageError) as caught:
        await pkgs.drop_off("app2", allocated.code, ABOUT, sealed, at=AT)
    assert caught.value.problem is PackageProblem.NOT_FOUND
    await pkgs.drop_off("app1", allocated.code, ABOUT, sealed, at=AT)
    with pytest.raises(PackageError) as caught:
        await pkgs.drop_off("app1", allocated.code, ABOUT, sealed, at=AT)
    assert caught.value.problem is PackageProblem.EXISTS
    with pytest.raises(PackageError) as caught:
        await pkgs.drop_off("app1", new_code(), ABOUT, sealed, at=AT)
    assert caught.value.problem is PackageProblem.NOT_FOUND
    done = await pkgs.redeem(allocated.code, "FLUFFY1", 7, record, at=AT)
    assert isinstance(done, Redeemed) and len(done.imported) == 1


async def test_an_envelope_sealed_for_another_code_counts_as_a_wrong_answer(pkgs, store, record):
    allocated = await pkgs.allocate("app1", at=AT)
    other = seal_package([PackageItem("text/plain", b"x")], "Fluffy1", code=new_code().display, client_id="app1")
    await pkgs.drop_off("app1", allocated.code, ABOUT, envelope.parse(other), at=AT)
    assert await pkgs.redeem(allocated.code, "Fluffy1", 7, record, at=AT) == WrongAnswer(2)
    assert await RecordStore(store).items(record) == []


async def test_three_chances(pkgs, store, record):
    created = await pkgs.drop_off_sealing("app1", None, ABOUT, "Fluffy1", ITEMS, at=AT)
    for remaining in (2, 1, 0):
        assert await pkgs.redeem(created.code, "wrong-answer", 7, record, at=AT) == WrongAnswer(remaining)
    assert await pkgs.redeem(created.code, "Fluffy1", 7, record, at=AT) == Refused(Refusal.LOCKED)
    assert await pkgs.lookup(created.code, at=AT) == Refused(Refusal.LOCKED)
    assert await RecordStore(store).items(record) == []


async def test_expiry_after_28_days(pkgs, record):
    created = await pkgs.drop_off_sealing("app1", None, ABOUT, "Fluffy1", ITEMS, at=AT)
    allocated = await pkgs.allocate("app1", at=AT)
    later = AT + timedelta(days=28, seconds=1)
    assert await pkgs.lookup(created.code, at=later) == Refused(Refusal.EXPIRED)
    assert await pkgs.redeem(created.code, "Fluffy1", 7, record, at=later) == Refused(Refusal.EXPIRED)
    with pytest.raises(PackageError) as caught:
        await pkgs.drop_off_sealing("app1", allocated.code, ABOUT, "Fluffy1", ITEMS, at=later)
    assert caught.value.problem is PackageProblem.EXPIRED


async def test_delete_and_rename(pkgs, record):
    a = await pkgs.drop_off_sealing("app1", None, ABOUT, "Fluffy1", ITEMS, at=AT)
    b = await pkgs.drop_off_sealing("app1", None, ABOUT, "Fluffy1", ITEMS, at=AT)  # several per external id
    c = await pkgs.drop_off_sealing("app1", None, ABOUT, "Fluffy1", ITEMS, at=AT)
    with pytest.raises(PackageError):
        await pkgs.delete("app2", a.code, at=AT)  # another app's package is not found
    await pkgs.delete("app1", a.code, at=AT)
    assert await pkgs.lookup(a.code, at=AT) == Refused(Refusal.UNKNOWN)
    await pkgs.rename("app1", c.code, "ext-2")
    assert await pkgs.delete_external("app1", "ext-1", at=AT) == 1
    assert await pkgs.lookup(b.code, at=AT) == Refused(Refusal.UNKNOWN)
    assert await pkgs.lookup(c.code, at=AT) == Question(ABOUT.question)
    with pytest.raises(PackageError):
        await pkgs.delete_external("app1", "ext-1", at=AT)


async def test_unreadable_content_is_not_an_attempt(pkgs, store, record):
    allocated = await pkgs.allocate("app1", at=AT)
    # sealed right, but the plaintext is not {"items": [...]}
    env = envelope.seal(b'{"items": "nope"}', "fluffy1", code_canonical=allocated.code.canonical, client_id="app1")
    await pkgs.drop_off("app1", allocated.code, ABOUT, env, at=AT)
    assert isinstance(await pkgs.redeem(allocated.code, "Fluffy1", 7, record, at=AT), Unreadable)
    assert await pkgs.lookup(allocated.code, at=AT) == Question(ABOUT.question)


@pytest.mark.parametrize(
    ("answer", "items", "problem"),
    [("Fluff", ITEMS, PackageProblem.INVALID_ANSWER), ("Fluffy1", [], PackageProblem.INVALID_ITEMS),
     ("Fluffy1", [{"content_type": "x/y"}], PackageProblem.INVALID_ITEMS)],
    ids=["short-answer", "no-items", "bad-item"],
)
async def test_convenience_refuses(pkgs, answer, items, problem):
    with pytest.raises(PackageError) as caught:
        await pkgs.drop_off_sealing("app1", None, ABOUT, answer, items, at=AT)
    assert caught.value.problem is problem


async def test_sweep_purges_dead_envelopes(pkgs, store, record):
    expired = await pkgs.drop_off_sealing("app1", None, ABOUT, "Fluffy1", ITEMS, at=AT)
    locked = await pkgs.drop_off_sealing("app1", None, ABOUT, "Fluffy1", ITEMS, at=AT + timedelta(days=2))
    for _ in range(3):
        await pkgs.redeem(locked.code, "wrong-answer", 7, record, at=AT + timedelta(days=2))
    deleted = await pkgs.drop_off_sealing("app1", None, ABOUT, "Fluffy1", ITEMS, at=AT + timedelta(days=2))
    await pkgs.delete("app1", deleted.code, at=AT + timedelta(days=2))
    alive = await pkgs.drop_off_sealing("app1", None, ABOUT, "Fluffy1", ITEMS, at=AT + timedelta(days=2))
    assert await pkgs.sweep(at=AT + timedelta(days=28, seconds=1)) == 2  # expired and locked (deleted was purged at once)
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(packages.c.state, packages.c.envelope).order_by(packages.c.id))).all()
    assert [(s, e is None) for s, e in rows] == [("expired", True), ("locked", True), ("deleted", True), ("pending", False)]
    assert await pkgs.lookup(expired.code, at=AT) == Refused(Refusal.EXPIRED)
    assert await pkgs.lookup(alive.code, at=AT + timedelta(days=28, seconds=1)) == Question(ABOUT.question)


async def test_parallel_redemptions_import_once(pkgs, store, record):
    created = await pkgs.drop_off_sealing("app1", None, ABOUT, "Fluffy1", ITEMS, at=AT)
    outcomes = await asyncio.gather(*(pkgs.redeem(created.code, "Fluffy1", 7, record, at=AT) for _ in range(3)))
    assert sum(isinstance(o, Redeemed) for o in outcomes) == 1
    assert [o for o in outcomes if not isinstance(o, Redeemed)] == [Refused(Refusal.PICKED_UP)] * 2
    assert len(await RecordStore(store).items(record)) == 2
