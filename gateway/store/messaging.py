"""The service's message tables: what was received or submitted, its state per
recipient, the audit trail, and the outbound queue.

Work is claimed with leases (``lease_owner``, ``lease_until``): a worker
takes a row whose lease is free or expired, so a node that dies mid-send
loses nothing (its lease runs out and another node takes the row), and
several nodes can share one PostgreSQL database (``FOR UPDATE SKIP LOCKED``
there; SQLite's single writer serialises the claim). The message lifecycle
is one table of states in ``gateway/lifecycle.py`` once the service uses it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from .prepared import Id, IdText
from .schema import UtcDateTime, metadata

messages = Table(
    "messages",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # 'in' (received from another HISP) or 'out' (submitted by a provider, or an MDN/DSN we send)
    Column("direction", String(8), nullable=False),
    # 'message', 'mdn', 'dsn'
    Column("kind", String(8), nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    Column("peer", String(64), nullable=True),
    Column("helo", String(255), nullable=True),
    Column("mail_from", String(320), nullable=False),
    Column("message_id", Text, nullable=True),
    # the From the signature is bound to (inbound) or the authenticated sender (outbound)
    Column("sender", String(320), nullable=True),
    Column("subject", Text, nullable=True),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    # the exact bytes received or submitted; kept until the message is final
    Column("raw", LargeBinary, nullable=True),
    # accepted, rejected, delivered, failed, ... (gateway/lifecycle.py)
    Column("state", String(16), nullable=False),
    Column("reason", String(64), nullable=True),
    Column("detail", Text, nullable=True),
    Column("updated_at", UtcDateTime, nullable=False),
)

message_recipients = Table(
    "message_recipients",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("message_id", Integer, ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
    Column("recipient", String(320), nullable=False),
    Column("state", String(16), nullable=False),
    Column("reason", String(64), nullable=True),
    Column("detail", Text, nullable=True),
    Column("record_id", Integer, nullable=True),
    Column("updated_at", UtcDateTime, nullable=False),
    UniqueConstraint("message_id", "recipient", name="uq_message_recipients_message_recipient"),
)

audit = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False),
    Column("message_id", Integer, ForeignKey("messages.id", ondelete="SET NULL"), nullable=True),
    Column("recipient", String(320), nullable=True),
    # received, accepted, rejected, deferred, delivered, mdn-queued, sent, bounced, ...
    Column("event", String(32), nullable=False),
    Column("reason", String(64), nullable=True),
    Column("detail", Text, nullable=True),
    Column("peer", String(64), nullable=True),
    Column("node", String(64), nullable=True),
    Index("ix_audit_message_id", "message_id"),  # a message's trail (messages show)
)

outbound = Table(
    "outbound",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("message_id", Integer, ForeignKey("messages.id", ondelete="CASCADE"), nullable=True),
    # 'mail' (a provider's message), 'mdn', 'dsn'
    Column("kind", String(8), nullable=False),
    Column("sender", String(320), nullable=False),
    Column("recipient", String(320), nullable=False),
    # the plain RFC 5322 message to seal for this recipient (sealing happens at send time)
    Column("payload", LargeBinary, nullable=False),
    # queued, sent, failed, expired
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", UtcDateTime, nullable=True),
    # the Message-ID of what we sent (to match MDNs to it) and, for an MDN, the message it answers
    Column("sent_message_id", Text, nullable=True),
    Column("relates_to", Text, nullable=True),
    Column("last_code", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    # why it was deferred or ended: gateway.outbound.queue.Reason (migration 0004)
    Column("reason", String(32), nullable=True),
    Index("ix_outbound_state_next_attempt_at", "state", "next_attempt_at"),
    Index("ix_outbound_message_id", "message_id"),  # a message's jobs (messages show)
    Index("ix_outbound_relates_to", "relates_to"),  # a provider's copy already queued (monitor.mailboxes)
)

MAX_AUDIT_DETAIL = 2000
"""An audit line says what happened; a peer's whole reply or a long chain of reasons is cut here."""


def audit_row(
    at: datetime,
    event: str,
    *,
    message_id: Id | None = None,
    recipient: str | None = None,
    reason: str | None = None,
    detail: str | IdText | None = None,
    peer: str | None = None,
    node: str | None = None,
) -> dict[str, Any]:
    """One ``audit`` row's values, cut to the columns' sizes: every writer of the
    trail (the receiving journal, the outbound queue) goes through here. (A detail
    naming an id that is not known yet, ``IdText``, is a short one: it stays whole.)"""
    return {
        "at": at, "message_id": message_id, "recipient": recipient[:320] if recipient else recipient,
        "event": event[:32], "reason": reason[:64] if reason else reason,
        "detail": detail[:MAX_AUDIT_DETAIL] if isinstance(detail, str) else detail,
        "peer": peer[:64] if peer else peer, "node": node[:64] if node else node,
    }
