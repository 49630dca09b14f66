"""Writing items that arrive without a Direct message (a picked-up package, an inbound
message posted by a trusted gateway) into a record's inbox.

``records_bridge.store`` writes Direct deliveries, whose provenance is a
signature; here the provenance is a client (``data.created.by_client``) and
a source (``package`` with the package's id, or ``direct`` with the
Message-ID for inbound messages). Items are typed by ``documents`` as
Direct attachments are; what that costs (an XDM package is inflated) is
planned outside the transaction (``plan``), then written inside the caller's.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from .. import documents, schema
from ..types import InboxState, ItemType, SourceKind, sent_key


@dataclass(frozen=True, slots=True)
class Source:
    kind: SourceKind
    ref: str | None
    client_id: str
    sender: str | None = None
    message_id: str | None = None


def plan(content_type: str, filename: str | None, data: bytes, title: str | None = None) -> tuple[documents.PlannedItem, ...]:
    """What one document becomes (pure, CPU-bound: call it off the event loop)."""
    planned = documents.plan_attachment(content_type, filename, data)
    if title is None:
        return planned
    first = planned[0]
    return (documents.PlannedItem(first.kind, {**first.data, "title": title}, first.blobs), *planned[1:])


class ItemWriter:
    """Inserts items and blobs into one record on one connection."""

    def __init__(self, conn: Connection, record_id: int, source: Source, at: datetime) -> None:
        self.conn = conn
        self.record_id = record_id
        self.source = source
        self.at = at
        self.created: list[str] = []

    def item(self, kind: ItemType, data: dict[str, Any], blobs: Sequence[documents.PlannedBlob] = (),
             parent: int | None = None) -> int:
        uid = str(uuid.uuid4())
        s = self.source
        item_id = self.conn.execute(
            schema.items.insert().returning(schema.items.c.id),
            dict(
                uid=uid, record_id=self.record_id, type=kind.value, version=str(uuid.uuid4()), state="active",
                inbox_state=InboxState.UNREVIEWED.value, created_at=self.at, source_kind=s.kind.value,
                source_ref=s.ref, parent_id=parent, sender=s.sender, signer_sha256=None, signer_subject=None,
                trust_decision=None, message_id=s.message_id,
                data=json.dumps({**data, "created": {"by_client": s.client_id}}, sort_keys=True),
            ),
        ).scalar_one()
        rows = [
            dict(item_id=item_id, name=b.name, content_type=b.content_type[:255], filename=b.filename,
                 size=len(b.data), sha256=hashlib.sha256(b.data).hexdigest(), data=b.data)
            for b in blobs
        ]
        if rows:
            self.conn.execute(schema.blobs.insert(), rows)
        self.created.append(uid)
        return int(item_id)

    def planned(self, item: documents.PlannedItem, parent: int | None = None) -> int:
        return self.item(item.kind, dict(item.data), item.blobs, parent)

    def finish(self) -> tuple[str, ...]:
        """The uids created, in order."""
        return tuple(self.created)


# --------------------------------------------------------------------------- messages (spec section 6)


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A message a trusted gateway posted (``POST /v1/inbound/messages``), already checked."""

    sender: str
    to: str
    subject: str
    received_at: datetime
    body_text: str | None
    body_html: str | None
    attachments: tuple[Any, ...]
    """``content.PackageItem`` values (content type, bytes, filename)."""
    message_id: str | None = None
    """The sender's Message-ID when the gateway passed it on: what makes a retry recognisable."""

    @property
    def key(self) -> str:
        """The Message-ID bound to the sender (``sent_key``, as a Direct delivery's), else a
        digest of everything the message says (a retry repeats it exactly)."""
        if self.message_id:
            return sent_key(self.sender, self.message_id)
        digest = hashlib.sha256(json.dumps(
            [self.header(), self.body_html, [(a.content_type, a.filename, hashlib.sha256(a.data).hexdigest())
                                             for a in self.attachments]], sort_keys=True).encode())
        return "sha256:" + digest.hexdigest()

    def header(self) -> dict[str, Any]:
        return {
            "from": self.sender, "to": [self.to], "subject": self.subject,
            "received_at": self.received_at.isoformat(), "body_text": self.body_text,
            "attachments": len(self.attachments),
        }


def plan_message(message: InboundMessage) -> tuple[tuple[documents.PlannedItem, ...], ...]:
    """Per attachment: a ``file`` item always, then typed items for clinical documents (a CCD
    attachment is a ``file`` and a ``ccd``; spec section 6 and acceptance item 13). Pure, CPU-bound."""
    out = []
    for a in message.attachments:
        planned = documents.plan_attachment(a.content_type, a.filename, a.data)
        if planned[0].kind is not ItemType.FILE:
            planned = (documents.PlannedItem(ItemType.FILE, {}, planned[0].blobs), *planned)
        out.append(planned)
    return tuple(out)


def write_message(
    writer: ItemWriter, message: InboundMessage, plans: tuple[tuple[documents.PlannedItem, ...], ...],
) -> int:
    """The ``message`` item (its HTML body, if any, as its blob) and its attachments' items under it."""
    blobs: tuple[documents.PlannedBlob, ...] = ()
    if message.body_html is not None:
        blobs = (documents.PlannedBlob("content", "text/html; charset=utf-8", "message.html",
                                       message.body_html.encode("utf-8")),)
    parent = writer.item(ItemType.MESSAGE, message.header(), blobs)
    for planned in plans:
        for item in planned:
            writer.planned(item, parent)
    return parent
