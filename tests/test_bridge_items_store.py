"""A record's items as the API reads and changes them: always within one record,
paged by row, added into the inbox with provenance, reconciled once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from records_bridge.api.items import (
    MAX_ADD_BYTES,
    AddProblem,
    AddRefused,
    Items,
    NewBlob,
    NewItem,
    Query,
    Reconcile,
    Reconciled,
)
from records_bridge.store import RecordStore
from records_bridge.types import InboxState, ItemType, SourceKind
from tests.test_bridge_items_cda import SAMPLE_CCD
from tests.test_records_store import PDF, delivery

from .storage_fixtures import store_fixture, store_url_fixture  # noqa: F401

AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def pdf_item(title: str = "Lab report") -> NewItem:
    return NewItem(blobs=(NewBlob("content", "application/pdf", "lab.pdf", PDF),), data={"title": title})


async def two_records(store):
    records = RecordStore(store)
    mine = await records.create_record("Pat", ("pat@h.test",), at=AT)
    theirs = await records.create_record("Other", ("other@h.test",), at=AT)
    return mine.id, theirs.id


async def test_an_added_item_lands_in_the_inbox_typed_with_who_added_it(store):
    mine, _ = await two_records(store)
    items = Items(store)
    added = await items.add(mine, NewItem((NewBlob("content", "text/xml", "ccd.xml", SAMPLE_CCD),), {"title": "Visit"}),
                            source=SourceKind.APP, source_ref="app-1", by_person=7, by_client="app-1", at=AT)
    assert (added.type, added.inbox_state, added.source_kind, added.source_ref) == (
        ItemType.CCD, InboxState.UNREVIEWED, SourceKind.APP, "app-1")
    assert (added.created_by_person, added.created_by_client, added.created_at) == (7, "app-1", AT)
    assert added.data == {"title": "Visit"} and added.title == "Visit"
    assert added.content is not None and added.content.size == len(SAMPLE_CCD)
    blob = await items.blob(mine, added.uid)
    assert blob is not None and blob.data == SAMPLE_CCD
    assert (await RecordStore(store).record(mine)).size_bytes == len(SAMPLE_CCD)


async def test_another_records_item_is_not_found_by_its_id(store):
    mine, theirs = await two_records(store)
    items = Items(store)
    added = await items.add(mine, pdf_item(), source=SourceKind.APP, source_ref=None, by_person=None,
                            by_client="app", at=AT)
    assert await items.get(theirs, added.uid) is None
    assert await items.blob(theirs, added.uid) is None
    assert await items.reconcile(theirs, added.uid, Reconcile.ACCEPT) is Reconciled.NOT_FOUND
    assert (await items.get(mine, added.uid)).inbox_state is InboxState.UNREVIEWED


@pytest.mark.parametrize(
    ("first", "second", "outcome", "state"),
    [
        (Reconcile.ACCEPT, Reconcile.ACCEPT, Reconciled.ALREADY, InboxState.ACCEPTED),
        (Reconcile.DISMISS, Reconcile.DISMISS, Reconciled.ALREADY, InboxState.DISMISSED),
        (Reconcile.ACCEPT, Reconcile.DISMISS, Reconciled.CONFLICT, InboxState.ACCEPTED),
        (Reconcile.DISMISS, Reconcile.ACCEPT, Reconciled.CONFLICT, InboxState.DISMISSED),
    ],
    ids=["accept-twice", "dismiss-twice", "accept-then-dismiss", "dismiss-then-accept"],
)
async def test_an_inbox_item_is_reconciled_once(store, first, second, outcome, state):
    mine, _ = await two_records(store)
    items = Items(store)
    added = await items.add(mine, pdf_item(), source=SourceKind.APP, source_ref=None, by_person=None,
                            by_client="app", at=AT)
    assert await items.reconcile(mine, added.uid, first) is Reconciled.DONE
    assert await items.reconcile(mine, added.uid, second) is outcome
    assert (await items.get(mine, added.uid)).inbox_state is state


async def test_pages_follow_row_order_and_filters_apply(store):
    mine, theirs = await two_records(store)
    items = Items(store)
    uids = []
    for n in range(5):
        added = await items.add(mine, pdf_item(f"doc {n}"), source=SourceKind.APP, source_ref=None,
                                by_person=None, by_client="app", at=AT + timedelta(days=n))
        uids.append(added.uid)
    await RecordStore(store).deliver(theirs, delivery())
    first = await items.page(mine, limit=2)
    second = await items.page(mine, after=first.after, limit=2)
    third = await items.page(mine, after=second.after, limit=2)
    assert [i.uid for i in first.items + second.items + third.items] == uids and third.after is None
    await items.reconcile(mine, uids[0], Reconcile.DISMISS)
    window = Query(exclude_dismissed=True, since=AT, before=AT + timedelta(days=3))
    assert [i.uid for i in (await items.page(mine, window)).items] == uids[1:3]
    assert await items.count(mine, window) == 2
    assert (await items.page(mine, Query(types=frozenset({ItemType.CCD})))).items == ()
    assert len((await items.page(mine, Query(inbox=InboxState.UNREVIEWED))).items) == 4


async def test_delivered_direct_items_read_through_the_same_queries(store):
    _, theirs = await two_records(store)
    await RecordStore(store).deliver(theirs, delivery())
    (message,) = (await Items(store).page(theirs)).items
    assert message.type is ItemType.MESSAGE and message.source_kind is SourceKind.DIRECT
    assert message.created_by_person is None and message.sender == "alice@a.test"


@pytest.mark.parametrize(
    ("new", "problem"),
    [
        (NewItem((NewBlob("content", "application/pdf", None, b"x" * (MAX_ADD_BYTES + 1)),), {}), AddProblem.TOO_LARGE),
        (NewItem(tuple(NewBlob(f"b{n}", "text/plain", None, b"x") for n in range(9)), {}), AddProblem.TOO_MANY_BLOBS),
        (NewItem((NewBlob("content", "text/plain", None, b"x"),) * 2, {}), AddProblem.DUPLICATE_BLOB),
        (NewItem((), {"note": "x"}), AddProblem.NOT_A_DOCUMENT_TYPE),
        (NewItem((NewBlob("content", "text/plain", None, b"x"),), {}, ItemType.MESSAGE), AddProblem.NOT_A_DOCUMENT_TYPE),
        (NewItem((NewBlob("content", "text/plain", None, b"x"),), {"created": {"by_person": 1}}), AddProblem.RESERVED_DATA),
    ],
    ids=["too-large", "too-many-blobs", "duplicate-blob", "untyped-empty", "message", "forged-provenance"],
)
async def test_adds_out_of_bounds_are_refused_and_write_nothing(store, new, problem):
    mine, _ = await two_records(store)
    items = Items(store)
    with pytest.raises(AddRefused) as refused:
        await items.add(mine, new, source=SourceKind.APP, source_ref=None, by_person=None, by_client="a", at=AT)
    assert refused.value.problem is problem
    assert await items.count(mine) == 0


async def test_adding_to_a_missing_record_is_refused(store):
    with pytest.raises(AddRefused) as refused:
        await Items(store).add(999, pdf_item(), source=SourceKind.APP, source_ref=None, by_person=None,
                               by_client="a", at=AT)
    assert refused.value.problem is AddProblem.NO_RECORD
