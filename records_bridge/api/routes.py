"""The app API over a record's items (issue 10, spec section 1):

* ``GET /v1/records/{rid}/items[?cursor=&limit=&type=&inbox=]``: a page, oldest first;
* ``GET /v1/records/{rid}/items/{item}`` and ``.../items/{item}/blobs/{name}`` (the bytes);
* ``POST /v1/records/{rid}/items``: an item added by the app lands in the
  record's inbox (unreviewed), with ``source`` app and ``created.by_client``;
* ``POST /v1/records/{rid}/inbox/{item}:accept`` and ``:dismiss`` (HV RECONCILE).

Scopes per item type and operation: native ``records.<type>.<crud>`` or
SMART ``patient/DocumentReference.*`` for documents
(``oauth.scopes.permits``); a list shows only the types the token may read.
Records: ``guard.record_for``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
from typing import Any
from urllib.parse import quote

from aiohttp import web

from records_bridge.oauth.bearer import bearer
from records_bridge.oauth.tokens import TokenContext
from records_bridge.web.context import BridgeContext, context
from records_bridge.web.errors import JsonError

from ..types import InboxState, ItemType, SourceKind
from . import items as it
from .guard import DESCRIPTIONS, Denied, count_denied, record_for

BLOB_NAME_MAX = 64
"""The blobs.name column's size."""


def item_json(item: it.Item, base: str) -> dict[str, Any]:
    href = f"{base}/v1/records/{item.record_id}/items/{item.uid}"
    return {
        "id": item.uid,
        "record_id": str(item.record_id),
        "type": item.type.value,
        "version": item.version,
        "title": item.title,
        "inbox_state": item.inbox_state.value,
        "created": {
            "at": item.created_at.isoformat(),
            "by_person": str(item.created_by_person) if item.created_by_person is not None else None,
            "by_client": item.created_by_client,
        },
        "source": {"kind": item.source_kind.value, "ref": item.source_ref},
        "sender": item.sender,
        "message_id": item.message_id,
        "data": item.data,
        "blobs": [
            {"name": b.name, "content_type": b.content_type, "filename": b.filename, "size": b.size,
             "sha256": b.sha256, "href": f"{href}/blobs/{b.name}"}
            for b in item.blobs
        ],
        "href": href,
    }


def _denied(why: Denied) -> JsonError:
    return JsonError(403, "forbidden", DESCRIPTIONS[why])


def _scope_error(op: str, kind: str) -> JsonError:
    words = {"c": "add", "r": "read", "u": "change"}[op]
    return JsonError(403, "insufficient_scope", f"the token's scopes do not let it {words} {kind} items")


async def _record(request: web.Request, *, write: bool = False) -> tuple[TokenContext, int]:
    token = await bearer(request)
    ctx = context(request)
    found = await record_for(ctx.store, token, request.match_info["rid"], write=write)
    if isinstance(found, Denied):
        count_denied(ctx.refusals, token, request.match_info["rid"], found)
        raise _denied(found)
    return token, found


def _cursor(value: str | None) -> int | None:
    """The opaque cursor: the previous page's last row id, base64url."""
    if not value:
        return None
    try:
        decoded = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        decoded = ""
    if not decoded.isdigit() or len(decoded) > 18:
        raise JsonError(400, "invalid_request", "cursor is not one this service returned")
    return int(decoded)


def _enum_param(request: web.Request, name: str, kind: type[ItemType] | type[InboxState]) -> Any:
    value = request.query.get(name)
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError:
        raise JsonError(400, "invalid_request", f"{name}: one of {', '.join(k.value for k in kind)}") from None


async def list_items(request: web.Request) -> web.Response:
    token, record_id = await _record(request)
    ctx = context(request)
    readable = frozenset(t for t in ItemType if token.permits(t.value, "r"))
    if not readable:
        raise _scope_error("r", "any")
    wanted: ItemType | None = _enum_param(request, "type", ItemType)
    if wanted is not None and wanted not in readable:
        raise _scope_error("r", wanted.value)
    raw_limit = request.query.get("limit", str(it.DEFAULT_PAGE))
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= it.MAX_PAGE:
        raise JsonError(400, "invalid_request", f"limit is 1..{it.MAX_PAGE}")
    query = it.Query(types=frozenset({wanted}) if wanted else readable,
                     inbox=_enum_param(request, "inbox", InboxState))
    page = await it.Items(ctx.store).page(record_id, query, after=_cursor(request.query.get("cursor")),
                                          limit=int(raw_limit))
    base = ctx.settings.base_url
    body: dict[str, Any] = {"items": [item_json(i, base) for i in page.items], "more_results": page.after is not None}
    if page.after is not None:
        body["next_cursor"] = base64.urlsafe_b64encode(str(page.after).encode()).decode().rstrip("=")
    return web.json_response(body)


async def _readable_item(request: web.Request) -> tuple[int, it.Item]:
    token, record_id = await _record(request)
    item = await it.Items(context(request).store).get(record_id, request.match_info["item"])
    if item is None:
        raise JsonError(404, "not_found", "no such item in this record")
    if not token.permits(item.type.value, "r"):
        raise _scope_error("r", item.type.value)
    return record_id, item


async def get_item(request: web.Request) -> web.Response:
    _, item = await _readable_item(request)
    return web.json_response(item_json(item, context(request).settings.base_url))


_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")
"""type/subtype as RFC 6838 4.2 restricts their names (parameters are not kept on downloads)."""


def media_type(value: str) -> str | None:
    """The bare type/subtype of a Content-Type value, or None if it is not one."""
    bare = value.split(";", 1)[0].strip()
    return bare.lower() if _MEDIA_TYPE.fullmatch(bare) else None


def download(blob: it.Blob) -> web.Response:
    """The stored bytes as a download, never rendered by the browser: ``attachment``
    and ``nosniff``, so an HTML or SVG "document" cannot run in our origin. The
    stored type and name came from a sender: a type that is not one becomes
    application/octet-stream, and the name loses quotes, backslashes and control
    characters before it goes into a header."""
    raw_name = blob.info.filename or blob.info.name
    name = "".join(c for c in raw_name if c.isprintable() and c not in '"\\')[:255] or "document"
    ascii_name = name.encode("ascii", "replace").decode().replace("?", "_")

    return web.Response(
        body=blob.data,
        headers={
            "Content-Type": media_type(blob.info.content_type) or "application/octet-stream",
            "Content-Disposition": f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
        },
    )


async def get_blob(request: web.Request) -> web.Response:
    record_id, item = await _readable_item(request)
    blob = await it.Items(context(request).store).blob(record_id, item.uid, request.match_info["name"])
    if blob is None:
        raise JsonError(404, "not_found", "no such blob in this item")
    return download(blob)


def _new_item_from(raw: bytes) -> it.NewItem:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise JsonError(400, "invalid_request", "the body is not JSON") from None
    return _new_item(body)


def _new_item(body: Any) -> it.NewItem:
    """The request body ``{type?, data?, blobs: [{name?, content_type, filename?, data: base64}]}``."""
    if not isinstance(body, dict):
        raise JsonError(400, "invalid_request", "the body is a JSON object")
    kind = body.get("type")
    if kind is not None:
        try:
            kind = ItemType(kind)
        except ValueError:
            raise JsonError(400, "invalid_request", f"type: one of {', '.join(t.value for t in ItemType)}") from None
    data = body.get("data", {})
    raw_blobs = body.get("blobs", [])
    if not isinstance(data, dict) or not isinstance(raw_blobs, list):
        raise JsonError(400, "invalid_request", "data is an object and blobs a list")
    blobs = []
    for n, raw in enumerate(raw_blobs):
        if not isinstance(raw, dict) or not isinstance(raw.get("content_type"), str) or not isinstance(raw.get("data"), str):
            raise JsonError(400, "invalid_request", f"blobs[{n}]: content_type and data (base64) are required")
        if media_type(raw["content_type"]) is None or not raw["content_type"].isprintable():
            raise JsonError(400, "invalid_request", f"blobs[{n}].content_type is not a media type (type/subtype)")
        name = raw.get("name", "content" if n == 0 else f"blob{n}")
        filename = raw.get("filename")
        if not isinstance(name, str) or not 1 <= len(name) <= BLOB_NAME_MAX or not name.isprintable():
            raise JsonError(400, "invalid_request", f"blobs[{n}].name: 1..{BLOB_NAME_MAX} printable characters")
        if filename is not None and (not isinstance(filename, str) or len(filename) > 255 or not filename.isprintable()):
            raise JsonError(400, "invalid_request", f"blobs[{n}].filename: at most 255 printable characters")
        try:
            content = base64.b64decode(raw["data"], validate=True)
        except (binascii.Error, ValueError):
            raise JsonError(400, "invalid_request", f"blobs[{n}].data is not base64") from None
        blobs.append(it.NewBlob(name, raw["content_type"], filename, content))
    return it.NewItem(tuple(blobs), data, kind)


async def add_item(request: web.Request) -> web.Response:
    token, record_id = await _record(request, write=True)
    ctx = context(request)
    raw = await request.read()
    new = await asyncio.to_thread(_new_item_from, raw)  # JSON and base64 of up to 27 MiB: off the event loop
    try:
        kind = it.checked_type(new)
    except it.AddRefused as refused:
        raise JsonError(413 if refused.problem is it.AddProblem.TOO_LARGE else 400, "invalid_request",
                        refused.detail) from None
    if not token.permits(kind.value, "c"):
        raise _scope_error("c", kind.value)
    try:
        added = await it.Items(ctx.store).add(record_id, new, source=SourceKind.APP, source_ref=token.client_id,
                                              by_person=token.person_id, by_client=token.client_id, at=ctx.clock())
    except it.AddRefused as refused:
        raise JsonError(400, "invalid_request", refused.detail) from None
    shown = item_json(added, ctx.settings.base_url)
    return web.json_response(shown, status=201, headers={"Location": shown["href"]})


async def reconcile(request: web.Request) -> web.Response:
    token, record_id = await _record(request, write=True)
    ctx = context(request)
    decision = it.Reconcile(request.match_info["verb"])
    items = it.Items(ctx.store)
    item = await items.get(record_id, request.match_info["item"])
    if item is None:
        raise JsonError(404, "not_found", "no such item in this record")
    if not token.permits(item.type.value, "u"):
        raise _scope_error("u", item.type.value)
    outcome = await items.reconcile(record_id, item.uid, decision)
    if outcome is it.Reconciled.NOT_FOUND:
        raise JsonError(404, "not_found", "no such item in this record")
    if outcome is it.Reconciled.CONFLICT:
        raise JsonError(409, "not_in_inbox", f"the item is {item.inbox_state.value}, not in the inbox")
    done = await items.get(record_id, item.uid)
    assert done is not None
    return web.json_response(item_json(done, ctx.settings.base_url))


def setup(app: web.Application, ctx: BridgeContext) -> None:
    app.router.add_get("/v1/records/{rid}/items", list_items)
    app.router.add_post("/v1/records/{rid}/items", add_item)
    app.router.add_get("/v1/records/{rid}/items/{item}", get_item)
    app.router.add_get("/v1/records/{rid}/items/{item}/blobs/{name}", get_blob)
    app.router.add_post("/v1/records/{rid}/inbox/{item:[^/:]+}:{verb:accept|dismiss}", reconcile)
