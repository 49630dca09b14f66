"""Writing what happened to a message: its row, its recipients' rows, the audit trail.

Every decision the receiving pipeline makes is written here with its reason
(issue 8: "every decision goes into an audit table"), in the caller's
transaction so a message and its audit trail commit together.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, bindparam

from gateway.smtp.interface import Received
from gateway.store import messaging
from gateway.store.prepared import Id, Prepared


class MessageState(enum.Enum):
    """The states of a received message (the outbound side has its own, in gateway/outbound)."""

    REJECTED = "rejected"
    """Refused at the end of DATA (5xx): the sender was told, nothing was kept but this row."""
    DEFERRED = "deferred"
    """Refused for now (4xx): the sender will try again."""
    DELIVERED = "delivered"
    """Accepted (250) and in every recipient's record."""
    DUPLICATE = "duplicate"
    """Accepted (250) again: every recipient's record already had it."""
    REPORT = "report"
    """An MDN or DSN addressed to us, kept for the delivery monitor."""
    FORWARDED = "forwarded"
    """Accepted (250) for a provider's address: queued for its mailbox (gateway.monitor.mailboxes)."""


class Event(enum.Enum):
    REJECTED = "rejected"
    DEFERRED = "deferred"
    DELIVERED = "delivered"
    DUPLICATE = "duplicate"
    REPORT = "report-received"
    MDN_QUEUED = "mdn-queued"
    FORWARDED = "forwarded"


@dataclass(frozen=True, slots=True)
class Summary:
    """What the journal keeps of a message beside its state."""

    kind: str
    sender: str | None = None
    message_id: str | None = None
    subject: str | None = None
    sha256: str | None = None
    """The received bytes' digest when the caller has it already (the receipt id is its first 16 digits)."""


_MESSAGE_COLUMNS = ("direction", "kind", "received_at", "peer", "helo", "mail_from", "message_id", "sender",
                    "subject", "size", "sha256", "raw", "state", "reason", "detail", "updated_at")
# Run on the driver's cursor (gateway/store/prepared.py): an accepted message's
# transaction is a dozen statements, and SQLAlchemy's per-execution work was most of their CPU.
_INSERT_MESSAGE = Prepared(messaging.messages.insert().returning(messaging.messages.c.id), _MESSAGE_COLUMNS)
_INSERT_RECIPIENT = Prepared(messaging.message_recipients.insert(),
                             ("message_id", "recipient", "state", "reason", "detail", "record_id", "updated_at"))
_INSERT_AUDIT = Prepared(messaging.audit.insert(),
                         ("at", "message_id", "recipient", "event", "reason", "detail", "peer", "node"))
_UPDATE_STATE = Prepared(messaging.messages.update().where(messaging.messages.c.id == bindparam("message"))
                         .values(state=bindparam("state"), updated_at=bindparam("at")))


def record_message(
    conn: Connection,
    received: Received,
    *,
    at: datetime,
    state: MessageState,
    summary: Summary,
    reason: str | None = None,
    detail: str | None = None,
    keep_raw: bool = False,
    deferred_id: bool = False,
) -> Id:
    """The message's row; its id. With ``deferred_id`` (a caller that hands the id only to other
    writes of this transaction, and reads it after COMMIT) the row waits with them on PostgreSQL
    and the id is a ``Ref`` (``Prepared.later_returning``: one round trip for them all)."""
    data = received.data
    values = dict(
        direction="in",
        kind=summary.kind,
        received_at=at,
        peer=received.session.peer[:64],
        helo=(received.session.helo or "")[:255] or None,
        mail_from=received.mail_from[:320],
        message_id=summary.message_id,
        sender=summary.sender,
        subject=summary.subject,
        size=len(data),
        sha256=summary.sha256 or hashlib.sha256(data).hexdigest(),
        raw=data if keep_raw else None,
        state=state.value,
        reason=reason,
        detail=detail,
        updated_at=at,
    )
    return _INSERT_MESSAGE.later_returning(conn, values) if deferred_id else int(_INSERT_MESSAGE.scalar(conn, values))


def record_recipient(
    conn: Connection, message: Id, recipient: str, *, at: datetime, state: MessageState,
    record_id: Id | None = None, reason: str | None = None, detail: str | None = None,
) -> None:
    _INSERT_RECIPIENT.later(
        conn,
        dict(message_id=message, recipient=recipient, state=state.value, reason=reason, detail=detail,
             record_id=record_id, updated_at=at),
    )


def record_event(
    conn: Connection, *, at: datetime, event: Event, message: int | None, recipient: str | None = None,
    reason: str | None = None, detail: str | None = None, peer: str | None = None, node: str | None = None,
) -> None:
    _INSERT_AUDIT.later(
        conn,
        messaging.audit_row(at, event.value, message_id=message, recipient=recipient, reason=reason, detail=detail,
                            peer=peer, node=node),
    )


def event_row(
    *, at: datetime, event: Event, message: Id | None, recipient: str | None = None, reason: str | None = None,
    detail: str | None = None, peer: str | None = None, node: str | None = None,
) -> dict[str, object]:
    """One audit row, to be written with others by ``record_events``."""
    return messaging.audit_row(at, event.value, message_id=message, recipient=recipient, reason=reason,
                               detail=detail, peer=peer, node=node)


def record_events(conn: Connection, rows: list[dict[str, object]]) -> None:
    """Several audit rows in one statement (on PostgreSQL one round trip instead of one each)."""
    _INSERT_AUDIT.later_many(conn, rows)


def update_state(conn: Connection, message: Id, state: MessageState, at: datetime) -> None:
    _UPDATE_STATE.later(conn, {"message": message, "state": state.value, "at": at})
