"""Records, their Direct addresses and items, on the project's storage layer.

``RecordStore.deliver`` is how an accepted Direct message enters a record:
one ``message`` item holding the signed entity, one item per attachment
(typed by ``documents.classify``), and for an IHE XDM package the package
itself plus one typed item per document with its metadata. All of it is
written in one transaction together with the ``record_deliveries`` row, so a
delivery is all or nothing, and a redelivery of the same Message-ID (a
retry after a crash, a sender's resend) adds nothing.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.store import Store
from gateway.store.prepared import Id, Prepared

from . import documents, schema
from .types import Delivery, InboxState, ItemType, SourceKind


class RecordError(Exception):
    """A request the records cannot satisfy (unknown record, address taken)."""


@dataclass(frozen=True, slots=True)
class RecordInfo:
    id: int
    display_name: str
    addresses: tuple[str, ...]
    size_bytes: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ItemInfo:
    id: int
    uid: str
    record_id: int
    type: ItemType
    inbox_state: InboxState
    source_kind: SourceKind
    parent_id: int | None
    content_type: str | None
    filename: str | None
    size: int | None
    sha256: str | None
    sender: str | None
    message_id: str | None
    created_at: datetime
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Delivered:
    record_id: Id
    """The record's id; a ``Ref`` until the writes went out when it was looked up with them
    (``target_in(..., assume_fresh=True)`` on PostgreSQL)."""
    message_item: str
    """The uid of the message item."""
    items: tuple[str, ...]
    """Every item created, the message first; empty for a redelivery."""
    duplicate: bool


@dataclass(frozen=True, slots=True)
class Target:
    """The record an address belongs to, and what an earlier delivery of one message into it made."""

    record_id: Id
    earlier: str | None
    """The uid of the message item an earlier delivery of this message made (None: not delivered yet)."""


def normalise_address(address: str) -> str:
    return address.strip().lower()


class RecordStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    # ------------------------------------------------------------------ records

    async def create_record(self, display_name: str, addresses: tuple[str, ...], *, at: datetime) -> RecordInfo:
        wanted = tuple(dict.fromkeys(normalise_address(a) for a in addresses))
        try:
            async with self.store.begin() as conn:
                record_id = (
                    await conn.execute(
                        schema.records.insert()
                        .values(display_name=display_name, state="active", created_at=at)
                        .returning(schema.records.c.id)
                    )
                ).scalar_one()
                for address in wanted:
                    await conn.execute(
                        schema.record_addresses.insert().values(record_id=record_id, address=address, created_at=at)
                    )
        except IntegrityError as exc:
            taken = [a for a in wanted if await self.record_for_address(a) is not None]
            raise RecordError(f"address already belongs to a record: {', '.join(taken) or wanted}") from exc
        return RecordInfo(record_id, display_name, wanted, 0, at)

    async def add_address(self, record_id: int, address: str, *, at: datetime) -> None:
        try:
            async with self.store.begin() as conn:
                await self._require(conn, record_id)
                await conn.execute(
                    schema.record_addresses.insert().values(
                        record_id=record_id, address=normalise_address(address), created_at=at
                    )
                )
        except IntegrityError as exc:
            raise RecordError(f"{address} already belongs to a record") from exc

    async def record_for_address(self, address: str) -> int | None:
        return await self.store.read(lambda conn: self.record_for_address_in(conn, address))

    async def records(self) -> list[RecordInfo]:
        return await self._infos(None)

    async def record(self, record_id: int) -> RecordInfo | None:
        found = await self._infos(record_id)
        return found[0] if found else None

    async def _infos(self, record_id: int | None) -> list[RecordInfo]:
        """Every record, or the one ``record_id``, with its addresses and size."""
        r, a = schema.records, schema.record_addresses
        records, addresses, sizes = select(r).order_by(r.c.id), select(a.c.record_id, a.c.address), _SIZES
        if record_id is not None:
            records = records.where(r.c.id == record_id)
            addresses = addresses.where(a.c.record_id == record_id)
            sizes = sizes.where(schema.items.c.record_id == record_id)
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(records)).all()
            found = (await conn.execute(addresses.order_by(a.c.address))).all()
            size_of = {owner: size for owner, size in await conn.execute(sizes)}
        by_record: dict[int, list[str]] = {}
        for owner, address in found:
            by_record.setdefault(owner, []).append(address)
        return [
            RecordInfo(row.id, row.display_name, tuple(by_record.get(row.id, ())), int(size_of.get(row.id) or 0),
                       row.created_at)
            for row in rows
        ]

    async def _require(self, conn: AsyncConnection, record_id: int) -> None:
        if await conn.scalar(select(schema.records.c.id).where(schema.records.c.id == record_id)) is None:
            raise RecordError(f"no record {record_id}")

    # ------------------------------------------------------------------ items

    async def items(self, record_id: int) -> list[ItemInfo]:
        i, b = schema.items, schema.blobs
        content = (
            select(b.c.item_id, b.c.content_type, b.c.filename, b.c.size, b.c.sha256)
            .where(b.c.name == "content")
            .subquery()
        )
        query = (
            select(i, content.c.content_type, content.c.filename, content.c.size, content.c.sha256)
            .select_from(i.outerjoin(content, content.c.item_id == i.c.id))
            .where(i.c.record_id == record_id)
            .order_by(i.c.id)
        )
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            ItemInfo(
                id=row.id,
                uid=row.uid,
                record_id=row.record_id,
                type=ItemType(row.type),
                inbox_state=InboxState(row.inbox_state),
                source_kind=SourceKind(row.source_kind),
                parent_id=row.parent_id,
                content_type=row.content_type,
                filename=row.filename,
                size=row.size,
                sha256=row.sha256,
                sender=row.sender,
                message_id=row.message_id,
                created_at=row.created_at,
                data=json.loads(row.data),
            )
            for row in rows
        ]

    async def blob(self, item_id: int, name: str = "content") -> bytes | None:
        b = schema.blobs
        async with self.store.engine.connect() as conn:
            data = await conn.scalar(select(b.c.data).where(b.c.item_id == item_id, b.c.name == name))
        return bytes(data) if data is not None else None

    async def set_inbox_state(self, item_uid: str, state: InboxState) -> None:
        async with self.store.begin() as conn:
            done = await conn.execute(
                update(schema.items).where(schema.items.c.uid == item_uid).values(inbox_state=state.value)
            )
            if done.rowcount != 1:
                raise RecordError(f"no item {item_uid}")

    # ------------------------------------------------------------------ delivery

    async def deliver(self, record_id: int, delivery: Delivery) -> Delivered:
        """Put one accepted message into a record, exactly once per Message-ID."""
        key = delivery.message_key
        existing = await self._delivered(record_id, key)
        if existing is not None:
            return Delivered(record_id, existing, (), True)
        try:
            return await self.store.run(lambda conn: self.deliver_in(conn, record_id, delivery))
        except IntegrityError:
            # Another node delivered the same message at the same moment (PostgreSQL);
            # its transaction won and ours rolled back whole.
            winner = await self._delivered(record_id, key)
            if winner is None:
                raise
            return Delivered(record_id, winner, (), True)

    def deliver_in(
        self, conn: Connection, record_id: Id, delivery: Delivery, *, known: bool = False,
        plan: tuple[documents.PlannedItem, ...] | None = None, checked: bool = False,
    ) -> Delivered:
        """``deliver`` inside the caller's write transaction (``Store.run``: the SMTP pipeline
        stores the message, its records and its acknowledgements in one commit). ``known``:
        the caller looked the record up in this transaction. ``plan``: what the attachments
        become (``plan_delivery``), computed once outside the transaction; computed here
        when not given. ``checked``: the caller found no earlier delivery of this message in
        this transaction. A concurrent delivery of the same message raises ``IntegrityError``
        at commit or before. ``record_id`` is a ``Ref`` only when ``known`` and ``checked``
        (``target_in(..., assume_fresh=True)``)."""
        key = delivery.message_key
        if not known and conn.scalar(select(schema.records.c.id).where(schema.records.c.id == record_id)) is None:
            raise RecordError(f"no record {record_id}")
        if not checked:
            again = conn.scalar(_DELIVERED, {"record_id": record_id, "key": key})
            if again is not None:
                return Delivered(record_id, again, (), True)
        writer = _ItemWriter(conn, record_id, delivery)
        message_id, message_uid = writer.message()
        for item in plan if plan is not None else plan_delivery(delivery):
            writer.planned(message_id, item)
        writer.flush()
        _INSERT_DELIVERY.later(
            conn, dict(record_id=record_id, message_key=key, item_id=message_id, delivered_at=delivery.received_at),
        )
        return Delivered(record_id, message_uid, tuple(writer.created), False)

    @staticmethod
    def target_in(conn: Connection, address: str, delivery: Delivery, *, assume_fresh: bool = False) -> Target | None:
        """The record of ``address`` and an earlier delivery of the same message into it, in one
        statement (None when no record has the address). A caller looks its targets up before it
        writes anything, so its writes can wait and go out together (gateway/store/prepared.py).

        ``assume_fresh``: on PostgreSQL the record is looked up inside the statement that writes
        the delivery (no round trip of its own), and no earlier delivery is assumed. Where that
        is wrong the statement fails whole with ``IntegrityError`` and nothing is written: no
        record has the address (the items' record is NOT NULL), or the message was delivered
        into it before (``record_deliveries``' key); the caller then looks again without it.
        On SQLite, the plain lookup."""
        address = normalise_address(address)
        if assume_fresh:
            record = _RECORD_OF_ADDRESS_LATER.later_selected(conn, {"address": address})
            if record is not None:
                return Target(record, None)
        row = _TARGET.first(conn, {"address": address, "key": delivery.message_key})
        return None if row is None else Target(int(row[0]), row[1])

    def deliver_to_target_in(
        self, conn: Connection, target: Target, delivery: Delivery, *,
        plan: tuple[documents.PlannedItem, ...] | None = None,
    ) -> Delivered:
        """``deliver_in`` into a record ``target_in`` found in this transaction."""
        if target.earlier is not None:
            return Delivered(target.record_id, target.earlier, (), True)
        return self.deliver_in(conn, target.record_id, delivery, known=True, plan=plan, checked=True)

    @staticmethod
    def record_for_address_in(conn: Connection, address: str) -> int | None:
        found = conn.scalar(_RECORD_OF_ADDRESS, {"address": normalise_address(address)})
        return int(found) if found is not None else None

    async def _delivered(self, record_id: int, key: str) -> str | None:
        return await self.store.read(lambda conn: conn.scalar(_DELIVERED, {"record_id": record_id, "key": key}))

    async def count_items(self, record_id: int) -> int:
        async with self.store.engine.connect() as conn:
            return int(
                await conn.scalar(select(func.count()).select_from(schema.items).where(schema.items.c.record_id == record_id))
                or 0
            )


def plan_delivery(delivery: Delivery) -> tuple[documents.PlannedItem, ...]:
    """What every attachment of ``delivery`` becomes, in order (pure; see ``documents.plan_attachment``)."""
    return tuple(
        item for a in delivery.attachments for item in documents.plan_attachment(a.content_type, a.filename, a.data)
    )


# Fixed statements executed with parameters: compiled once (docs/receive.md); the
# delivery's own run on the driver's cursor (gateway/store/prepared.py: SQLAlchemy's
# per-execution work was most of their CPU).
_INSERT_ITEM = Prepared(schema.items.insert().returning(schema.items.c.id), (
    "uid", "record_id", "type", "version", "state", "inbox_state", "created_at", "source_kind", "source_ref",
    "parent_id", "sender", "signer_sha256", "signer_subject", "trust_decision", "message_id", "data",
))
_INSERT_BLOB = Prepared(schema.blobs.insert(),
                        ("item_id", "name", "content_type", "filename", "size", "sha256", "data"))
_INSERT_DELIVERY = Prepared(schema.record_deliveries.insert(), ("record_id", "message_key", "item_id", "delivered_at"))
_DELIVERED = (
    select(schema.items.c.uid)
    .select_from(schema.record_deliveries.join(schema.items, schema.items.c.id == schema.record_deliveries.c.item_id))
    .where(schema.record_deliveries.c.record_id == bindparam("record_id"))
    .where(schema.record_deliveries.c.message_key == bindparam("key"))
)
_TARGET = Prepared(
    select(schema.record_addresses.c.record_id, schema.items.c.uid)
    .select_from(
        schema.record_addresses.outerjoin(
            schema.record_deliveries,
            (schema.record_deliveries.c.record_id == schema.record_addresses.c.record_id)
            & (schema.record_deliveries.c.message_key == bindparam("key")),
        ).outerjoin(schema.items, schema.items.c.id == schema.record_deliveries.c.item_id)
    )
    .where(schema.record_addresses.c.address == bindparam("address"))
)
_SIZES = (
    select(schema.items.c.record_id, func.sum(schema.blobs.c.size))
    .select_from(schema.blobs.join(schema.items, schema.items.c.id == schema.blobs.c.item_id))
    .group_by(schema.items.c.record_id)
)
"""Each record's size, the bytes of its blobs: summed when asked rather than kept in the record's
row, which every delivery would lock until its COMMIT (migration 0009)."""
_RECORD_OF_ADDRESS = select(schema.record_addresses.c.record_id).where(
    schema.record_addresses.c.address == bindparam("address")
)
_RECORD_OF_ADDRESS_LATER = Prepared(_RECORD_OF_ADDRESS)


class _ItemWriter:
    """Inserts one delivery's items and blobs on one connection."""

    def __init__(self, conn: Connection, record_id: Id, delivery: Delivery) -> None:
        self.conn = conn
        self.record_id = record_id
        self.delivery = delivery
        self.created: list[str] = []
        self._blobs: list[dict[str, Any]] = []

    def message(self) -> tuple[Id, str]:
        d = self.delivery
        data = {
            "subject": d.subject,
            "from": d.provenance.sender,
            "to": list(d.recipients),
            "date": d.date,
            "body_text": d.body_text,
            "attachments": len(d.attachments),
        }
        item_id, uid = self._item(ItemType.MESSAGE, None, data)
        self._blob(item_id, "content", "message/rfc822", "message.eml", d.content)
        return item_id, uid

    def planned(self, parent: Id, item: documents.PlannedItem) -> None:
        item_id, _ = self._item(item.kind, parent, item.data)
        for blob in item.blobs:
            self._blob(item_id, blob.name, blob.content_type, blob.filename, blob.data)

    def _item(self, kind: ItemType, parent: Id | None, data: Mapping[str, object]) -> tuple[Id, str]:
        """One item; its id, which only this delivery's other rows use (on PostgreSQL a ``Ref``:
        the item waits with them, gateway/store/prepared.py)."""
        d = self.delivery
        p = d.provenance
        uid = str(uuid.uuid4())
        item_id = _INSERT_ITEM.later_returning(
            self.conn,
            dict(
                uid=uid,
                record_id=self.record_id,
                type=kind.value,
                version=str(uuid.uuid4()),
                state="active",
                inbox_state=InboxState.UNREVIEWED.value,
                created_at=d.received_at,
                source_kind=SourceKind.DIRECT.value,
                source_ref=p.message_id,
                parent_id=parent,
                sender=p.sender,
                signer_sha256=p.signer_sha256,
                signer_subject=p.signer_subject,
                trust_decision=p.trust_decision,
                message_id=p.message_id,
                data=json.dumps(data, sort_keys=True),
            ),
        )
        self.created.append(uid)
        return item_id, uid

    def _blob(self, item_id: Id, name: str, ctype: str, filename: str | None, data: bytes) -> None:
        self._blobs.append(dict(
            item_id=item_id, name=name, content_type=ctype[:255], filename=filename, size=len(data),
            sha256=hashlib.sha256(data).hexdigest(), data=data,
        ))

    def flush(self) -> None:
        """Every blob in one statement (executemany)."""
        if self._blobs:
            _INSERT_BLOB.later_many(self.conn, self._blobs)
            self._blobs = []
