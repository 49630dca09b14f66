"""The FHIR R4 facade's HTTP routes (spec section 7), under ``/fhir/r4``:

* ``GET metadata``: the CapabilityStatement (no token needed, R4 3.1.0.1.4);
* ``GET DocumentReference?patient=…[&type][&date][&_count]``: a searchset of the
  patient's documents; a patient (record) the token's grants do not cover is
  403 (acceptance item 14), so is a token whose scopes read no documents;
* ``GET DocumentReference/{id}``: one, looked up only in the token's records;
* ``GET Binary/{item}.{blob}``: the bytes as a download, or a Binary resource
  when the ``Accept`` header asks for FHIR JSON;
* ``GET Patient/{record}``: the granted record as the launch context's Patient (``patient/Patient.r``);
* ``POST DocumentReference`` (``patient/DocumentReference.c``): a document
  with its attachment ``data`` becomes an item in the record's inbox, typed
  like a Direct attachment (a recognizable CDA/CCR gets its type).

Every error is an OperationOutcome. Dismissed items (the patient said no)
are not shown as documents. ``Attachment.hash`` is SHA-1 (R4); items store
SHA-256, so the SHA-1 is computed from the bytes once and remembered by the
SHA-256, which names the bytes exactly (a cache that can never be stale).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from records_bridge.oauth import scopes as sc
from records_bridge.oauth.bearer import bearer
from records_bridge.oauth.tokens import TokenContext
from records_bridge.web.context import BridgeContext, context
from records_bridge.web.errors import JsonError

from ..api import items as it
from ..api.guard import DESCRIPTIONS, Denied, count_denied, record_for
from ..api.routes import download, media_type
from ..types import InboxState, SourceKind
from . import resources, search
from .resources import FHIR_JSON

SHA1_CACHE_ENTRIES = 100_000
"""SHA-256 -> SHA-1 pairs (about 150 bytes each, 15 MB at most): every document of
a busy bridge's recent searches, so a search hashes each document's bytes once."""


class Sha1Cache:
    """SHA-1 (base64) of blobs, keyed by their SHA-256, least recently used out first."""

    def __init__(self, max_entries: int = SHA1_CACHE_ENTRIES) -> None:
        self._entries: OrderedDict[str, str] = OrderedDict()
        self._max = max_entries

    async def of(self, items: it.Items, item: it.Item) -> str | None:
        content = item.content
        if content is None:
            return None
        known = self._entries.get(content.sha256)
        if known is not None:
            self._entries.move_to_end(content.sha256)
            return known
        blob = await items.blob(item.record_id, item.uid, content.name)
        if blob is None:
            return None
        digest = await asyncio.to_thread(lambda: base64.b64encode(hashlib.sha1(blob.data).digest()).decode())
        self._entries[content.sha256] = digest
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
        return digest


SHA1 = web.AppKey("fhir-sha1", Sha1Cache)


class FhirError(Exception):
    def __init__(self, status: int, code: str, diagnostics: str, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.code = code
        self.diagnostics = diagnostics
        self.headers = headers or {}


def fhir_json(body: dict[str, Any], *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, content_type=FHIR_JSON, headers=headers)


_ISSUE_CODES = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 409: "conflict", 413: "too-long"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def outcomes(handler: Handler) -> Handler:
    """Errors as OperationOutcomes, the bearer's 401/403 included (keeping its WWW-Authenticate)."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except FhirError as exc:
            return fhir_json(resources.operation_outcome(exc.code, exc.diagnostics), status=exc.status,
                             headers=exc.headers)
        except JsonError as exc:
            headers = {k: v for k, v in exc.headers.items() if k == "WWW-Authenticate"}
            description = json.loads(exc.text or "{}").get("error_description", exc.reason)
            return fhir_json(resources.operation_outcome(_ISSUE_CODES.get(exc.status_code, "processing"), description),
                             status=exc.status_code, headers=headers)
        except web.HTTPClientError as exc:  # aiohttp's own, e.g. 413 for a body over client_max_size
            return fhir_json(resources.operation_outcome(_ISSUE_CODES.get(exc.status_code, "processing"), exc.reason),
                             status=exc.status_code)

    return wrapped


async def _record(request: web.Request, token: TokenContext, rid: str, *, write: bool = False) -> int:
    ctx = context(request)
    found = await record_for(ctx.store, token, rid, write=write)
    if isinstance(found, Denied):
        count_denied(ctx.refusals, token, rid, found)
        raise FhirError(403, "forbidden", DESCRIPTIONS[found])
    return found


def _readable_documents(token: TokenContext) -> frozenset[Any]:
    readable = frozenset(t for t in it.DOCUMENT_TYPES if token.permits(t.value, "r"))
    if not readable:
        raise FhirError(403, "forbidden", "the token's scopes read no documents (patient/DocumentReference.rs)")
    return readable


async def metadata(request: web.Request) -> web.Response:
    ctx = context(request)
    try:
        software = version("directgw")
    except PackageNotFoundError:
        software = "unknown"
    return fhir_json(resources.capability_statement(base_url=ctx.settings.base_url, at=ctx.clock(),
                                                    software_version=software))


async def search_documents(request: web.Request) -> web.Response:
    token = await bearer(request)
    parsed = search.parse(request.query.items())
    if isinstance(parsed, search.SearchError):
        raise FhirError(400, "invalid", parsed.diagnostics)
    readable = _readable_documents(token)
    record_id = await _record(request, token, parsed.patient)
    ctx = context(request)
    items = it.Items(ctx.store)
    query = it.Query(types=readable if parsed.types is None else parsed.types & readable, exclude_dismissed=True,
                     since=parsed.since, before=parsed.before)
    base = f"{ctx.settings.base_url}/fhir/r4/DocumentReference"
    total = await items.count(record_id, query)
    entries: list[dict[str, Any]] = []
    next_url = None
    if parsed.count > 0 and query.types:
        page = await items.page(record_id, query, after=parsed.cursor, limit=parsed.count)
        cache = request.app[SHA1]
        entries = [resources.document_reference(i, await cache.of(items, i)) for i in page.items if i.content]
        if page.after is not None:
            next_url = f"{base}?{urlencode([*parsed.applied, ('_cursor', str(page.after))])}"
    self_url = f"{base}?{urlencode(parsed.applied + ((('_cursor', str(parsed.cursor)),) if parsed.cursor else ()))}"
    return fhir_json(resources.searchset(entries, base_url=ctx.settings.base_url, self_url=self_url,
                                         next_url=next_url, total=total))


async def _document(request: web.Request, token: TokenContext, uid: str) -> it.Item:
    """The document ``uid`` in one of the token's records; 404 alike for absent and not granted."""
    ctx = context(request)
    items = it.Items(ctx.store)
    if resources.FHIR_ID.fullmatch(uid):
        for record_id in sorted(token.record_ids):
            if isinstance(await record_for(ctx.store, token, str(record_id)), Denied):
                continue
            item = await items.get(record_id, uid)
            if item is not None and item.type in it.DOCUMENT_TYPES and item.inbox_state is not InboxState.DISMISSED:
                return item
    raise FhirError(404, "not-found", f"no DocumentReference {uid[:64]} in the records this token grants")


async def read_document(request: web.Request) -> web.Response:
    token = await bearer(request)
    readable = _readable_documents(token)
    item = await _document(request, token, request.match_info["id"])
    if item.type not in readable:
        raise FhirError(403, "forbidden", f"the token's scopes do not read {item.type.value} documents")
    cache = request.app[SHA1]
    return fhir_json(resources.document_reference(item, await cache.of(it.Items(context(request).store), item)))


def _wants_fhir(accept: str) -> bool:
    kinds = {part.split(";")[0].strip().lower() for part in accept.split(",")}
    return bool(kinds & {FHIR_JSON, "application/json", "application/json+fhir"})


async def read_binary(request: web.Request) -> web.StreamResponse:
    token = await bearer(request)
    readable = _readable_documents(token)
    uid, _, blob_name = request.match_info["id"].rpartition(".")
    item = await _document(request, token, uid)
    if item.type not in readable:
        raise FhirError(403, "forbidden", f"the token's scopes do not read {item.type.value} documents")
    blob = await it.Items(context(request).store).blob(item.record_id, item.uid, blob_name)
    if blob is None:
        raise FhirError(404, "not-found", "no such Binary")
    if _wants_fhir(request.headers.get("Accept", "")):
        data = await asyncio.to_thread(lambda: base64.b64encode(blob.data).decode())
        return fhir_json(resources.binary(blob.info.content_type, data, item.uid, blob.info.name))
    return download(blob)


def _created(raw: bytes, token: TokenContext) -> tuple[str, it.NewItem]:
    """The record and item a posted DocumentReference asks for."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise FhirError(400, "invalid", "the body is not JSON") from None
    if not isinstance(body, dict) or body.get("resourceType") != "DocumentReference":
        raise FhirError(400, "invalid", "the body is a DocumentReference")
    subject = body.get("subject", {})
    reference = subject.get("reference") if isinstance(subject, dict) else None
    if reference is None:
        if token.record_id is None:
            raise FhirError(400, "required", "subject (Patient/{id}) is required")
        reference = f"Patient/{token.record_id}"
    if not isinstance(reference, str) or not reference.startswith("Patient/"):
        raise FhirError(400, "invalid", "subject must reference a Patient")
    content = body.get("content")
    attachment = content[0].get("attachment") if isinstance(content, list) and content and isinstance(content[0], dict) else None
    if not isinstance(attachment, dict) or not isinstance(attachment.get("data"), str):
        raise FhirError(400, "required", "content[0].attachment.data (base64) is required: this server keeps the bytes")
    content_type = attachment.get("contentType")
    if not isinstance(content_type, str) or media_type(content_type) is None or not content_type.isprintable():
        raise FhirError(400, "required", "content[0].attachment.contentType (a media type) is required")
    try:
        data = base64.b64decode(attachment["data"], validate=True)
    except (binascii.Error, ValueError):
        raise FhirError(400, "invalid", "content[0].attachment.data is not base64") from None
    title = attachment.get("title") or body.get("description")
    filename = title if isinstance(title, str) and len(title) <= 255 and title.isprintable() else None
    meta = {"title": title} if isinstance(title, str) and title else {}
    return reference.removeprefix("Patient/"), it.NewItem((it.NewBlob("content", content_type, filename, data),), meta)


async def create_document(request: web.Request) -> web.Response:
    token = await bearer(request)
    ctx = context(request)
    rid, new = await asyncio.to_thread(_created, await request.read(), token)  # JSON and base64: off the loop
    record_id = await _record(request, token, rid, write=True)
    try:
        kind = it.checked_type(new)
    except it.AddRefused as refused:
        raise FhirError(413 if refused.problem is it.AddProblem.TOO_LARGE else 400, "invalid", refused.detail) from None
    if kind not in it.DOCUMENT_TYPES or not token.permits(kind.value, "c"):
        raise FhirError(403, "forbidden", "the token's scopes do not create documents (patient/DocumentReference.c)")
    added = await it.Items(ctx.store).add(record_id, new, source=SourceKind.APP, source_ref=token.client_id,
                                          by_person=token.person_id, by_client=token.client_id, at=ctx.clock())
    sha1 = await request.app[SHA1].of(it.Items(ctx.store), added)
    location = f"{ctx.settings.base_url}/fhir/r4/DocumentReference/{added.uid}"
    return fhir_json(resources.document_reference(added, sha1), status=201, headers={"Location": location})


def _reads_patient(token: TokenContext) -> bool:
    for text in token.scopes:
        scope = sc.parse(text)
        if scope is not None and scope.kind is sc.ScopeKind.SMART and scope.target == "Patient" and "r" in scope.ops:
            return True
    return False


async def read_patient(request: web.Request) -> web.Response:
    """``Patient/{record}``: the record the token was granted, as the SMART ``patient`` (``patient/Patient.r``)."""
    token = await bearer(request)
    if not _reads_patient(token):
        raise FhirError(403, "forbidden", "the token's scopes do not read the patient (patient/Patient.r)")
    rid = request.match_info["id"]
    found = await record_for(context(request).store, token, rid)
    if isinstance(found, Denied):
        count_denied(context(request).refusals, token, rid, found)
        raise FhirError(404, "not-found", f"no Patient {rid[:20]} in the records this token grants")
    record = await context(request).records.record(found)
    if record is None:
        raise FhirError(404, "not-found", f"no Patient {rid[:20]}")
    return fhir_json(resources.patient(record.id, record.display_name))


def setup(app: web.Application, ctx: BridgeContext) -> None:
    app[SHA1] = Sha1Cache()
    app.router.add_get("/fhir/r4/metadata", outcomes(metadata))
    app.router.add_get("/fhir/r4/DocumentReference", outcomes(search_documents))
    app.router.add_post("/fhir/r4/DocumentReference", outcomes(create_document))
    app.router.add_get("/fhir/r4/DocumentReference/{id}", outcomes(read_document))
    app.router.add_get("/fhir/r4/Binary/{id}", outcomes(read_binary))
    app.router.add_get("/fhir/r4/Patient/{id}", outcomes(read_patient))
