"""A record's items as apps, FHIR and the patient pages read and change them.

Every query here is bound to one record: an item is found by (record, uid),
never by uid alone, so a caller that checked access to the record cannot
reach another record's item by guessing or copying an id (acceptance item
14 and the "one client reading another's record" abuse case).

Pages are keyed by the item's row id (``after``): stable under inserts and
one index range scan, unlike offsets.

Who created an item (spec section 1, ``created{at, by_person, by_client}``)
is kept in the item's JSON ``data`` under the reserved key ``created``, as
``{"by_person": id, "by_client": client_id}`` (the items table has no columns
for it; ``source_kind``/``source_ref`` say where it came from; package
pickups write the same key, records_bridge.packages.importer). ``data`` as
shown to apps never contains that key.

Reconciling (HealthVault's RECONCILE, ``:accept``/``:dismiss``) applies only
to an item in the inbox; doing the same again is idempotent, the other
decision on an already reconciled item is a conflict.
"""

from __future__ import annotations

import enum
import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, and_, func, select, update

from gateway.store import Store

from .. import documents, schema
from ..types import InboxState, ItemType, SourceKind

DEFAULT_PAGE = 100
MAX_PAGE = 500
"""The spec's page sizes for lists (section 2, authorized-people): default 100, max 500."""

MAX_ADD_BYTES = 20 * 1024 * 1024
"""What one app write may carry, the spec's package limit (section 4: 20 MiB per package)."""

MAX_BLOBS_PER_ITEM = 8
"""An item is a document and perhaps a rendition or two, not an archive."""

CREATED_BY = "created"
"""The reserved key in ``data`` holding {by_person, by_client} (see the module note)."""

DOCUMENT_TYPES = frozenset({ItemType.FILE, ItemType.CCD, ItemType.CCR, ItemType.CDA, ItemType.DISCHARGE_SUMMARY})
"""The items that are documents: what FHIR shows as DocumentReference (spec section 7)."""


@dataclass(frozen=True, slots=True)
class BlobInfo:
    name: str
    content_type: str
    filename: str | None
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class Item:
    row_id: int
    uid: str
    record_id: int
    type: ItemType
    version: str
    inbox_state: InboxState
    created_at: datetime
    created_by_person: int | None
    created_by_client: str | None
    source_kind: SourceKind
    source_ref: str | None
    sender: str | None
    message_id: str | None
    data: dict[str, Any]
    blobs: tuple[BlobInfo, ...]

    @property
    def content(self) -> BlobInfo | None:
        return next((b for b in self.blobs if b.name == "content"), None)

    @property
    def title(self) -> str:
        """What a person calls it: the sender's title, the XDM title, the subject, the file name."""
        for candidate in (self.data.get("title"), (self.data.get("xdm") or {}).get("title"), self.data.get("subject")):
            if isinstance(candidate, str) and candidate.strip():
                return candidate.strip()
        content = self.content
        if content is not None and content.filename:
            return content.filename
        return self.type.value.replace("_", " ")


@dataclass(frozen=True, slots=True)
class Page:
    items: tuple[Item, ...]
    after: int | None
    """The ``after`` for the next page; None on the last."""


@dataclass(frozen=True, slots=True)
class Query:
    """Which items of a record a list wants."""

    types: frozenset[ItemType] | None = None
    inbox: InboxState | None = None
    exclude_dismissed: bool = False
    since: datetime | None = None
    """created_at >= since"""
    before: datetime | None = None
    """created_at < before"""


@dataclass(frozen=True, slots=True)
class Blob:
    info: BlobInfo
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class NewBlob:
    name: str
    content_type: str
    filename: str | None
    data: bytes = field(repr=False)


class Reconcile(enum.Enum):
    ACCEPT = "accept"
    DISMISS = "dismiss"

    @property
    def state(self) -> InboxState:
        return InboxState.ACCEPTED if self is Reconcile.ACCEPT else InboxState.DISMISSED


class Reconciled(enum.Enum):
    DONE = "done"
    ALREADY = "already"
    """The same decision was made before: nothing changed."""
    CONFLICT = "conflict"
    """The item is not in the inbox (the other decision was made, or it never was)."""
    NOT_FOUND = "not-found"


class AddProblem(enum.Enum):
    NO_RECORD = "no-record"
    TOO_LARGE = "too-large"
    TOO_MANY_BLOBS = "too-many-blobs"
    DUPLICATE_BLOB = "duplicate-blob"
    NOT_A_DOCUMENT_TYPE = "not-a-document-type"
    RESERVED_DATA = "reserved-data"


class AddRefused(Exception):
    def __init__(self, problem: AddProblem, detail: str) -> None:
        self.problem = problem
        self.detail = detail
        super().__init__(detail)


@dataclass(frozen=True, slots=True)
class NewItem:
    """What an app (or FHIR) adds: it lands in the inbox (spec section 1)."""

    blobs: tuple[NewBlob, ...]
    data: dict[str, Any]
    type: ItemType | None = None
    """None: typed from the content blob (``documents.classify``) like a Direct attachment."""


# --------------------------------------------------------------------------- reading


_I, _B = schema.items, schema.blobs


def _item_rows(conn: Connection, query: Select[Any]) -> list[Item]:
    rows = conn.execute(query).all()
    if not rows:
        return []
    blobs: dict[int, list[BlobInfo]] = {}
    for b in conn.execute(
        select(_B.c.item_id, _B.c.name, _B.c.content_type, _B.c.filename, _B.c.size, _B.c.sha256)
        .where(_B.c.item_id.in_([r.id for r in rows]))
        .order_by(_B.c.item_id, _B.c.id)
    ).all():
        blobs.setdefault(b.item_id, []).append(BlobInfo(b.name, b.content_type, b.filename, int(b.size), b.sha256))
    return [_item(r, tuple(blobs.get(r.id, ()))) for r in rows]


def _item(row: Any, blobs: tuple[BlobInfo, ...]) -> Item:
    data = json.loads(row.data)
    if not isinstance(data, dict):
        data = {"value": data}
    created = data.pop(CREATED_BY, None)
    created = created if isinstance(created, dict) else {}
    person, client = created.get("by_person"), created.get("by_client")
    return Item(
        row_id=row.id, uid=row.uid, record_id=row.record_id, type=ItemType(row.type), version=row.version,
        inbox_state=InboxState(row.inbox_state), created_at=row.created_at,
        created_by_person=person if isinstance(person, int) else None,
        created_by_client=client if isinstance(client, str) else None,
        source_kind=SourceKind(row.source_kind), source_ref=row.source_ref, sender=row.sender,
        message_id=row.message_id, data=data, blobs=blobs,
    )


def _where(record_id: int, q: Query) -> Any:
    clauses = [_I.c.record_id == record_id, _I.c.state == "active"]
    if q.types is not None:
        clauses.append(_I.c.type.in_(sorted(t.value for t in q.types)))
    if q.inbox is not None:
        clauses.append(_I.c.inbox_state == q.inbox.value)
    if q.exclude_dismissed:
        clauses.append(_I.c.inbox_state != InboxState.DISMISSED.value)
    if q.since is not None:
        clauses.append(_I.c.created_at >= q.since)
    if q.before is not None:
        clauses.append(_I.c.created_at < q.before)
    return and_(*clauses)


class Items:
    """Queries and changes over one record's items at a time."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def page(self, record_id: int, query: Query = Query(), *, after: int | None = None,
                   limit: int = DEFAULT_PAGE) -> Page:
        limit = max(1, min(limit, MAX_PAGE))

        def work(conn: Connection) -> Page:
            stmt = select(_I).where(_where(record_id, query))
            if after is not None:
                stmt = stmt.where(_I.c.id > after)
            found = _item_rows(conn, stmt.order_by(_I.c.id).limit(limit + 1))
            more = len(found) > limit
            shown = tuple(found[:limit])
            return Page(shown, shown[-1].row_id if more and shown else None)

        return await self.store.read(work)

    async def count(self, record_id: int, query: Query = Query()) -> int:
        return int(await self.store.read(
            lambda conn: conn.scalar(select(func.count()).select_from(_I).where(_where(record_id, query))) or 0
        ))

    async def get(self, record_id: int, uid: str) -> Item | None:
        def work(conn: Connection) -> Item | None:
            found = _item_rows(conn, select(_I).where(_I.c.record_id == record_id, _I.c.uid == uid, _I.c.state == "active"))
            return found[0] if found else None

        return await self.store.read(work)

    async def attachments(self, record_id: int, item: Item) -> tuple[Item, ...]:
        """The items a message brought (its attachments and what an XDM package held), in order."""
        query = select(_I).where(_I.c.record_id == record_id, _I.c.parent_id == item.row_id, _I.c.state == "active")
        return tuple(await self.store.read(lambda conn: _item_rows(conn, query.order_by(_I.c.id))))

    async def blob(self, record_id: int, uid: str, name: str = "content") -> Blob | None:
        def work(conn: Connection) -> Blob | None:
            row = conn.execute(
                select(_B.c.name, _B.c.content_type, _B.c.filename, _B.c.size, _B.c.sha256, _B.c.data)
                .select_from(_B.join(_I, _I.c.id == _B.c.item_id))
                .where(_I.c.record_id == record_id, _I.c.uid == uid, _I.c.state == "active", _B.c.name == name)
            ).first()
            if row is None:
                return None
            return Blob(BlobInfo(row.name, row.content_type, row.filename, int(row.size), row.sha256), bytes(row.data))

        return await self.store.read(work)

    # ----------------------------------------------------------------------- changing

    async def add(self, record_id: int, new: NewItem, *, source: SourceKind, source_ref: str | None,
                  by_person: int | None, by_client: str | None, at: datetime) -> Item:
        """Write one item with its blobs into ``record_id``'s inbox (unreviewed)."""
        kind = checked_type(new)
        data = dict(new.data)
        data[CREATED_BY] = {"by_person": by_person, "by_client": by_client}
        blobs = [
            dict(name=b.name, content_type=b.content_type[:255], filename=b.filename, size=len(b.data),
                 sha256=hashlib.sha256(b.data).hexdigest(), data=b.data)
            for b in new.blobs
        ]
        uid = str(uuid.uuid4())

        def work(conn: Connection) -> int:
            if conn.scalar(select(schema.records.c.id).where(schema.records.c.id == record_id)) is None:
                raise AddRefused(AddProblem.NO_RECORD, f"no record {record_id}")
            item_id = int(conn.execute(
                _I.insert().returning(_I.c.id),
                dict(uid=uid, record_id=record_id, type=kind.value, version=str(uuid.uuid4()), state="active",
                     inbox_state=InboxState.UNREVIEWED.value, created_at=at, source_kind=source.value,
                     source_ref=source_ref, parent_id=None, sender=None, signer_sha256=None, signer_subject=None,
                     trust_decision=None, message_id=None, data=json.dumps(data, sort_keys=True)),
            ).scalar_one())
            if blobs:
                conn.execute(_B.insert(), [{**b, "item_id": item_id} for b in blobs])
            return item_id

        await self.store.run(work)
        added = await self.get(record_id, uid)
        assert added is not None  # written just now, in a committed transaction
        return added

    async def reconcile(self, record_id: int, uid: str, decision: Reconcile) -> Reconciled:
        def work(conn: Connection) -> Reconciled:
            state = conn.scalar(
                select(_I.c.inbox_state).where(_I.c.record_id == record_id, _I.c.uid == uid, _I.c.state == "active")
            )
            if state is None:
                return Reconciled.NOT_FOUND
            if state == decision.state.value:
                return Reconciled.ALREADY
            changed = conn.execute(
                update(_I)
                .where(_I.c.record_id == record_id, _I.c.uid == uid, _I.c.inbox_state == InboxState.UNREVIEWED.value)
                .values(inbox_state=decision.state.value)
            )
            return Reconciled.DONE if changed.rowcount == 1 else Reconciled.CONFLICT

        return await self.store.run(work)


def checked_type(new: NewItem) -> ItemType:
    """The type the item will have, once its bounds are checked (raises AddRefused)."""
    if not new.blobs and new.type is None:
        raise AddRefused(AddProblem.NOT_A_DOCUMENT_TYPE, "an item without content needs a type")
    if len(new.blobs) > MAX_BLOBS_PER_ITEM:
        raise AddRefused(AddProblem.TOO_MANY_BLOBS, f"{len(new.blobs)} blobs, over the limit of {MAX_BLOBS_PER_ITEM}")
    names = [b.name for b in new.blobs]
    if len(set(names)) != len(names):
        raise AddRefused(AddProblem.DUPLICATE_BLOB, "two blobs with the same name")
    total = sum(len(b.data) for b in new.blobs)
    if total > MAX_ADD_BYTES:
        raise AddRefused(AddProblem.TOO_LARGE, f"{total} bytes, over the limit of {MAX_ADD_BYTES}")
    if CREATED_BY in new.data:
        raise AddRefused(AddProblem.RESERVED_DATA, f"data.{CREATED_BY} is set by the bridge")
    if new.type is ItemType.MESSAGE:
        raise AddRefused(AddProblem.NOT_A_DOCUMENT_TYPE, "message items come only from Direct and inbound messages")
    if new.type is not None:
        return new.type
    content = next((b for b in new.blobs if b.name == "content"), new.blobs[0])
    return documents.classify(content.content_type, content.filename, content.data)
