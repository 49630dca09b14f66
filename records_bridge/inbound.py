"""Messages into the record (spec section 6): what a trusted gateway posts to
``POST /v1/inbound/messages``, and where it goes.

* To a record's address: a ``message`` item, a ``file`` item per attachment
  and a typed item for each clinical document, all in the inbox
  (``inbox_state=unreviewed``), then a notification to the record's
  custodians.
* To ``newuser@`` any domain: the subject ``email[;question;answer][;real_subject]``
  says who it is for; the message is sealed as a *holding package*
  (``packages.store.Packages.hold``) under the answer, or under the e-mail
  address when no question was given, and the code goes back to the posting
  gateway, which mails it (the bridge has no mail sender). The answer travels
  in the subject line: see docs/bridge.md.
* Anything else: ``UnknownRecipient`` (the gateway bounces it).

Notifications are recorded as ``bridge_notifications`` rows and logged; none
is sent by the bridge (docs/bridge.md says so).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import enum
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy import Connection, bindparam, select
from sqlalchemy.exc import IntegrityError

from gateway.core.limits import MAX_MESSAGE_BYTES
from gateway.store import Store

from . import answers, schema
from .packages import content, importer
from .packages.schema import bridge_notifications
from .packages.store import Created, Packages
from .store import RecordStore
from .types import SourceKind

log = structlog.get_logger("records_bridge.inbound")

NEWUSER = "newuser"
"""The local part that holds messages for people without a record yet (spec section 6)."""
MAX_ATTACHMENTS = 100
"""As a package's items (spec section 4): a message with more is not one a person reads."""
MAX_INBOUND_BYTES = MAX_MESSAGE_BYTES
"""The gateway accepts messages up to 64 MiB (gateway/core/limits.py); what it posts fits in that."""
MAX_ADDRESS = 320
"""RFC 5321 4.5.3.1: 64 + 1 + 255."""
MAX_SUBJECT = 998
"""RFC 5322 2.1.1: a line's limit."""
MAX_MESSAGE_ID = 255
"""The column that makes deliveries idempotent (record_deliveries.message_key) holds 255."""
EMAIL_QUESTION = "What is the e-mail address this message was sent to you at?"
"""The question of a holding package sent without one: the verifier is the contact address."""

_ADDRESS = re.compile(r"[^@\s]{1,64}@[^@\s]{1,255}")
_LOCAL = re.compile(r"[a-z0-9.-]{3,64}")
"""A record's bridge address: 3..64 of [a-z0-9.-] (spec section 6)."""


class InboundProblem(enum.Enum):
    INVALID_REQUEST = "invalid_request"
    INVALID_SUBJECT = "invalid_subject"
    INVALID_ANSWER = "invalid_answer"
    TOO_LARGE = "too_large"


class InboundError(Exception):
    def __init__(self, problem: InboundProblem, detail: str) -> None:
        self.problem = problem
        self.detail = detail
        super().__init__(f"{problem.value}: {detail}")


@dataclass(frozen=True, slots=True)
class Delivered:
    record_id: int
    items: tuple[str, ...]
    """Every item created, the message first; for a repeat, only the message item of the first delivery."""
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class Held:
    package: Created
    contact: str


@dataclass(frozen=True, slots=True)
class UnknownRecipient:
    address: str


@dataclass(frozen=True, slots=True)
class NewUserSubject:
    """``email[;question;answer][;real_subject]`` taken apart."""

    email: str
    question: str | None
    answer: str | None
    subject: str


def parse_newuser_subject(subject: str) -> NewUserSubject:
    """Parts are trimmed of surrounding spaces (people type "; " in subject lines). Two parts are
    e-mail and subject, three e-mail, question and answer, more add the subject (which may hold ";")."""
    parts = [p.strip() for p in subject.split(";")]
    email = parts[0]
    if not _ADDRESS.fullmatch(email) or len(email) > MAX_ADDRESS:
        raise InboundError(InboundProblem.INVALID_SUBJECT, "the subject must begin with the contact e-mail address")
    if len(parts) <= 2:
        return NewUserSubject(email, None, None, parts[1] if len(parts) == 2 else "")
    question, answer = parts[1], parts[2]
    if not question or len(question) > 255:
        raise InboundError(InboundProblem.INVALID_SUBJECT, "the question must be 1..255 characters")
    try:
        answers.checked(answer)
    except answers.InvalidAnswer as exc:
        raise InboundError(InboundProblem.INVALID_ANSWER, str(exc)) from None
    return NewUserSubject(email, question, answer, ";".join(parts[3:]).strip())


def parse_message(doc: object) -> importer.InboundMessage:
    """The posted JSON, checked: addresses, a subject, an RFC 3339 ``received_at``, bodies and
    attachments ``{filename, content_type, bytes_b64}`` within the limits."""
    if not isinstance(doc, Mapping):
        raise InboundError(InboundProblem.INVALID_REQUEST, "expected a JSON object")
    to, sender, subject = doc.get("to"), doc.get("from"), doc.get("subject", "")
    for name, value in (("to", to), ("from", sender)):
        if not isinstance(value, str) or len(value) > MAX_ADDRESS or not _ADDRESS.fullmatch(value):
            raise InboundError(InboundProblem.INVALID_REQUEST, f"{name} must be an address local@domain")
    if not isinstance(subject, str) or len(subject) > MAX_SUBJECT:
        raise InboundError(InboundProblem.INVALID_REQUEST, f"subject must be a string of at most {MAX_SUBJECT} characters")
    try:
        received_at = datetime.fromisoformat(str(doc.get("received_at")))
    except ValueError:
        raise InboundError(InboundProblem.INVALID_REQUEST, "received_at must be an RFC 3339 date and time") from None
    if received_at.tzinfo is None:
        raise InboundError(InboundProblem.INVALID_REQUEST, "received_at must carry its offset")
    bodies = [doc.get("body_text"), doc.get("body_html")]
    if not all(b is None or isinstance(b, str) for b in bodies):
        raise InboundError(InboundProblem.INVALID_REQUEST, "body_text and body_html are strings")
    raw = doc.get("attachments", [])
    if not isinstance(raw, list) or len(raw) > MAX_ATTACHMENTS:
        raise InboundError(InboundProblem.INVALID_REQUEST, f"attachments is a list of at most {MAX_ATTACHMENTS}")
    attachments = []
    total = sum(len(b) for b in bodies if b)
    for a in raw:
        if not isinstance(a, Mapping) or not isinstance(a.get("bytes_b64"), str):
            raise InboundError(InboundProblem.INVALID_REQUEST, "an attachment is {filename, content_type, bytes_b64}")
        total += len(a["bytes_b64"]) * 3 // 4
        if total > MAX_INBOUND_BYTES:
            raise InboundError(InboundProblem.TOO_LARGE, f"a message carries at most {MAX_INBOUND_BYTES} bytes")
        try:
            data = base64.b64decode(a["bytes_b64"], validate=True)
            attachments.append(content.PackageItem(
                str(a.get("content_type") or "application/octet-stream"), data, a.get("filename") or None,
            ))
        except (binascii.Error, ValueError) as exc:
            raise InboundError(InboundProblem.INVALID_REQUEST, f"attachment: {exc}") from None
    message_id = doc.get("message_id")
    if message_id is not None and (not isinstance(message_id, str) or not 1 <= len(message_id) <= MAX_MESSAGE_ID):
        raise InboundError(InboundProblem.INVALID_REQUEST, f"message_id is 1..{MAX_MESSAGE_ID} characters")
    return importer.InboundMessage(
        sender=sender.lower(), to=to.lower(), subject=subject, received_at=received_at,  # type: ignore[union-attr]
        body_text=bodies[0], body_html=bodies[1], attachments=tuple(attachments), message_id=message_id,
    )


def check_record_address(address: object, local_domains: frozenset[str]) -> str:
    """A record's bridge address: ``local@domain``, the local part 3..64 of [a-z0-9.-] and not
    ``newuser``, the domain one of the gateway's own."""
    if not isinstance(address, str):
        raise InboundError(InboundProblem.INVALID_REQUEST, "address must be a string")
    local, sep, domain = address.strip().lower().rpartition("@")
    if not sep or not _LOCAL.fullmatch(local) or local == NEWUSER:
        raise InboundError(InboundProblem.INVALID_REQUEST, "the local part is 3..64 of a-z, 0-9, '.' and '-' (not newuser)")
    if domain not in local_domains:
        raise InboundError(InboundProblem.INVALID_REQUEST, f"{domain} is not one of this gateway's domains")
    return f"{local}@{domain}"


class Inbound:
    def __init__(self, store: Store, records: RecordStore, packages: Packages) -> None:
        self.store = store
        self.records = records
        self.packages = packages

    async def receive(self, client_id: str, message: importer.InboundMessage, *, at: datetime) -> Delivered | Held | UnknownRecipient:
        record_id = await self.records.record_for_address(message.to)
        if record_id is not None:
            return await self._deliver(client_id, record_id, message, at)
        if message.to.partition("@")[0] == NEWUSER:
            return await self._hold(client_id, message, at)
        return UnknownRecipient(message.to)

    async def _deliver(self, client_id: str, record_id: int, message: importer.InboundMessage, at: datetime) -> Delivered:
        """Exactly once per (record, message key), as Direct deliveries are (``record_deliveries``):
        a gateway that retries after a lost response adds nothing."""
        key = message.key
        plans = await asyncio.to_thread(importer.plan_message, message)

        def write(conn: Connection) -> Delivered:
            again = conn.scalar(_DELIVERED, {"record_id": record_id, "key": key})
            if again is not None:
                return Delivered(record_id, (again,), duplicate=True)
            writer = importer.ItemWriter(conn, record_id, importer.Source(
                SourceKind.DIRECT, message.message_id, client_id, sender=message.sender,
                message_id=message.message_id), at)
            parent = importer.write_message(writer, message, plans)
            created = writer.finish()
            conn.execute(schema.record_deliveries.insert().values(
                record_id=record_id, message_key=key, item_id=parent, delivered_at=at))
            for email in _custodian_emails(conn, record_id):
                record_notification(conn, "inbox_items", at, record_id=record_id, recipient=email,
                                    detail=json.dumps({"items": len(created), "from": message.sender}))
            return Delivered(record_id, created)

        try:
            done = await self.store.run(write)
        except IntegrityError:
            # the same message delivered at the same moment by another request (PostgreSQL): it won
            winner = await self.store.read(lambda conn: conn.scalar(_DELIVERED, {"record_id": record_id, "key": key}))
            if winner is None:
                raise
            done = Delivered(record_id, (winner,), duplicate=True)
        log.info("bridge.inbound.delivered", record_id=record_id, items=len(done.items), duplicate=done.duplicate,
                 client_id=client_id, notification="recorded, not sent (the bridge has no mail sender)")
        return done

    async def _hold(self, client_id: str, message: importer.InboundMessage, at: datetime) -> Held:
        parsed = parse_newuser_subject(message.subject)
        real = importer.InboundMessage(message.sender, message.to, parsed.subject, message.received_at,
                                       message.body_text, message.body_html, message.attachments)
        if sum(len(a.data) for a in real.attachments) > content.MAX_TOTAL_BYTES:
            raise InboundError(InboundProblem.TOO_LARGE, f"a holding package holds at most {content.MAX_TOTAL_BYTES} bytes")
        question = parsed.question if parsed.question is not None else EMAIL_QUESTION
        verifier = parsed.answer if parsed.answer is not None else parsed.email
        created = await self.packages.hold(client_id, question, verifier, real, at=at)

        def note(conn: Connection) -> None:
            record_notification(conn, "holding_package", at, package_id=created.id, recipient=parsed.email,
                                detail=json.dumps({"from": message.sender, "expires_at": created.expires_at.isoformat()}))

        await self.store.run(note)
        log.info("bridge.inbound.held", package_id=created.id, client_id=client_id,
                 notification="recorded, not sent: the code went back to the posting gateway")
        return Held(created, parsed.email)


def record_notification(
    conn: Connection, kind: str, at: datetime, *, detail: str, record_id: int | None = None,
    package_id: int | None = None, recipient: str | None = None,
) -> None:
    conn.execute(bridge_notifications.insert().values(
        kind=kind, record_id=record_id, package_id=package_id, recipient=recipient, detail=detail, created_at=at,
    ))


_DELIVERED = (
    select(schema.items.c.uid)
    .select_from(schema.record_deliveries.join(schema.items, schema.items.c.id == schema.record_deliveries.c.item_id))
    .where(schema.record_deliveries.c.record_id == bindparam("record_id"))
    .where(schema.record_deliveries.c.message_key == bindparam("key"))
)


def _custodian_emails(conn: Connection, record_id: int) -> list[str]:
    p, a = schema.persons, schema.record_access
    return [
        e for (e,) in conn.execute(
            select(p.c.email).select_from(a.join(p, p.c.id == a.c.person_id))
            .where(a.c.record_id == record_id, a.c.role == "custodian", p.c.email.is_not(None))
            .order_by(p.c.email)
        )
    ]
