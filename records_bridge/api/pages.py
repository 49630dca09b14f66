"""The patient's pages over a record's items (issue 10): server-rendered, no JavaScript.

* ``GET /records/{rid}/inbox``: what arrived and waits for review (accept or
  dismiss, each a CSRF-protected form posting to
  ``/records/{rid}/inbox/{item}/accept|dismiss``, answered with 303 back),
  then what is in the record;
* ``GET /records/{rid}/items/{item}``: one item. A C-CDA (ccd, cda,
  discharge summary) is shown readable from ``cda_view`` (title, patient,
  author, date, each section's title and narrative), never as XML; a
  message shows its subject, sender and text; any item offers its files;
* ``GET /records/{rid}/items/{item}/download/{blob}``: the bytes as an
  attachment with ``nosniff`` (a PDF, the C-CDA itself, anything).

A record the person holds no role on is "not found", like one that does not
exist. Accepting or dismissing needs the custodian role.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from records_bridge.access import PersonRecord, can_write, records_of
from records_bridge.web.context import BridgeContext, context
from records_bridge.web.pages import check_csrf, render, require_person
from records_bridge.web.refusals import Refusal

from ..cda_view import CdaView, NotReadable, Unreadable, read_cda
from ..types import InboxState, ItemType, SourceKind
from . import items as it
from .routes import download

READABLE_TYPES = frozenset({ItemType.CCD, ItemType.CDA, ItemType.DISCHARGE_SUMMARY})

TYPE_WORDS = {
    ItemType.MESSAGE: "Message",
    ItemType.FILE: "File",
    ItemType.CCD: "Care summary (CCD)",
    ItemType.CDA: "Clinical document",
    ItemType.DISCHARGE_SUMMARY: "Discharge summary",
    ItemType.CCR: "Continuity of care record (CCR)",
}
SOURCE_WORDS = {
    SourceKind.DIRECT: "a Direct message",
    SourceKind.PACKAGE: "a package you picked up",
    SourceKind.CONNECT: "a connected app",
    SourceKind.APP: "an app",
}
UNREADABLE_WORDS = {
    Unreadable.TOO_LARGE: "This document is too large to show here; download it instead.",
    Unreadable.DTD_REFUSED: "This document uses XML features we do not process for safety; download it instead.",
    Unreadable.MALFORMED: "This document could not be read as XML; download it instead.",
    Unreadable.TOO_COMPLEX: "This document is too complex to show here; download it instead.",
    Unreadable.NOT_CDA: "This is not a clinical document we can show; download it instead.",
}
INBOX_PAGE = 200
"""Items shown per list on the inbox page: more than a person reviews at once."""


def _not_found(request: web.Request) -> web.Response:
    return render(request, "error.html", status=404, heading="Not found",
                  message="There is no such record or item, or it is not one you can see.", detail=None)


async def _mine(request: web.Request) -> tuple[PersonRecord, object] | web.Response:
    person = await require_person(request)
    rid = request.match_info["rid"]
    mine = {r.record_id: r for r in await records_of(context(request).store, person.id)}
    if not rid.isdigit() or int(rid) not in mine:
        context(request).refusals.count(Refusal.NO_ACCESS, person=person.id, record=rid[:20])
        return _not_found(request)
    return mine[int(rid)], person


async def inbox(request: web.Request) -> web.Response:
    found = await _mine(request)
    if isinstance(found, web.Response):
        return found
    record, _ = found
    items = it.Items(context(request).store)
    waiting = await items.page(record.record_id, it.Query(inbox=InboxState.UNREVIEWED), limit=INBOX_PAGE)
    kept = await items.page(record.record_id, it.Query(exclude_dismissed=True), limit=INBOX_PAGE)
    in_record = [i for i in kept.items if i.inbox_state is not InboxState.UNREVIEWED]
    return render(request, "inbox.html", record=record, waiting=waiting.items, in_record=in_record,
                  can_write=can_write(record.role), type_words=TYPE_WORDS, source_words=SOURCE_WORDS,
                  done=request.query.get("done"))


async def reconcile(request: web.Request) -> web.StreamResponse:
    found = await _mine(request)
    if isinstance(found, web.Response):
        return found
    record, _ = found
    await check_csrf(request)
    if not can_write(record.role):
        return render(request, "error.html", status=403, heading="Not allowed",
                      message="You can view this record but not change it.", detail=None)
    decision = it.Reconcile(request.match_info["verb"])
    outcome = await it.Items(context(request).store).reconcile(record.record_id, request.match_info["item"], decision)
    if outcome is it.Reconciled.NOT_FOUND:
        return _not_found(request)
    done = "accepted" if decision is it.Reconcile.ACCEPT else "dismissed"
    if outcome is it.Reconciled.CONFLICT:
        done = "unchanged"
    raise web.HTTPSeeOther(f"/records/{record.record_id}/inbox?done={done}")


async def _item(request: web.Request) -> tuple[PersonRecord, it.Item] | web.Response:
    found = await _mine(request)
    if isinstance(found, web.Response):
        return found
    record, _ = found
    item = await it.Items(context(request).store).get(record.record_id, request.match_info["item"])
    if item is None:
        return _not_found(request)
    return record, item


async def document(request: web.Request) -> web.Response:
    found = await _item(request)
    if isinstance(found, web.Response):
        return found
    record, item = found
    view: CdaView | NotReadable | None = None
    items = it.Items(context(request).store)
    attachments = await items.attachments(record.record_id, item) if item.type is ItemType.MESSAGE else ()
    content = item.content
    if item.type in READABLE_TYPES and content is not None:
        blob = await items.blob(record.record_id, item.uid, content.name)
        if blob is not None:
            view = await asyncio.to_thread(read_cda, blob.data)  # CPU-bound parse: off the event loop
    return render(
        request, "document.html", record=record, item=item, attachments=attachments,
        view=view if isinstance(view, CdaView) else None,
        unreadable=UNREADABLE_WORDS[view.reason] if isinstance(view, NotReadable) else None,
        can_write=can_write(record.role), type_words=TYPE_WORDS, source_words=SOURCE_WORDS,
    )


async def download_blob(request: web.Request) -> web.StreamResponse:
    found = await _item(request)
    if isinstance(found, web.Response):
        return found
    record, item = found
    blob = await it.Items(context(request).store).blob(record.record_id, item.uid, request.match_info["blob"])
    if blob is None:
        return _not_found(request)
    return download(blob)


def setup(app: web.Application, ctx: BridgeContext) -> None:
    app.router.add_get("/records/{rid}/inbox", inbox)
    app.router.add_post("/records/{rid}/inbox/{item}/{verb:accept|dismiss}", reconcile)
    app.router.add_get("/records/{rid}/items/{item}", document)
    app.router.add_get("/records/{rid}/items/{item}/download/{blob}", download_blob)
