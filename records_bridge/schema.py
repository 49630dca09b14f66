"""The records' tables, on the gateway's one ``MetaData`` (one migration chain).

Entities follow shared/specs/records-bridge.md section 1: a person, a record,
who may act on it, the record's Direct addresses, and items with their
blobs. Items that arrive without the patient acting (Direct messages,
packages) carry an inbox state; their provenance (who sent it, which
certificate signed it, what the trust decision said, the Message-ID) is kept
in columns, not buried in JSON, because people and audits ask for it.

``record_deliveries`` makes delivery idempotent: one row per (record,
message key), inserted in the same transaction as the items, so a redelivery
after a crash adds nothing.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from gateway.store.schema import UtcDateTime, metadata

persons = Table(
    "persons",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("email", String(320), nullable=True, unique=True),
    Column("display_name", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    # argon2id (records_bridge.people); NULL for a person who cannot sign in (yet)
    Column("password_hash", Text, nullable=True),
)

records = Table(
    "records",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("display_name", Text, nullable=False),
    # 'active' or 'closed'
    Column("state", String(16), nullable=False),
    # its size is summed from its blobs when asked (migration 0009 says why)
    Column("created_at", UtcDateTime, nullable=False),
)

record_access = Table(
    "record_access",
    metadata,
    Column("person_id", Integer, ForeignKey("persons.id", ondelete="CASCADE"), nullable=False),
    Column("record_id", Integer, ForeignKey("records.id", ondelete="CASCADE"), nullable=False),
    # 'custodian' or 'viewer'
    Column("role", String(16), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("person_id", "record_id", name="pk_record_access"),
)

record_addresses = Table(
    "record_addresses",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("record_id", Integer, ForeignKey("records.id", ondelete="CASCADE"), nullable=False),
    # lower-cased addr-spec; one record per address
    Column("address", String(320), nullable=False, unique=True),
    Column("created_at", UtcDateTime, nullable=False),
)

items = Table(
    "items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("uid", String(36), nullable=False, unique=True),
    Column("record_id", Integer, ForeignKey("records.id", ondelete="CASCADE"), nullable=False, index=True),
    # message, file, ccd, cda, discharge_summary, ccr (ItemType)
    Column("type", String(32), nullable=False),
    Column("version", String(36), nullable=False),
    # 'active' or 'deleted'
    Column("state", String(16), nullable=False),
    # none, unreviewed, accepted, dismissed (InboxState)
    Column("inbox_state", String(16), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    # direct, package, connect, app (SourceKind) and what it refers to (the Message-ID for direct)
    Column("source_kind", String(16), nullable=False),
    Column("source_ref", Text, nullable=True),
    # an attachment's message item
    Column("parent_id", Integer, ForeignKey("items.id", ondelete="CASCADE"), nullable=True),
    Column("sender", String(320), nullable=True),
    Column("signer_sha256", String(64), nullable=True),
    Column("signer_subject", Text, nullable=True),
    Column("trust_decision", Text, nullable=True),
    Column("message_id", Text, nullable=True),
    # JSON: subject, addresses, XDM metadata, ...
    Column("data", Text, nullable=False),
)

blobs = Table(
    "blobs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("item_id", Integer, ForeignKey("items.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("name", String(64), nullable=False),
    Column("content_type", String(255), nullable=False),
    Column("filename", Text, nullable=True),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("data", LargeBinary, nullable=False),
    UniqueConstraint("item_id", "name", name="uq_blobs_item_name"),
)

record_deliveries = Table(
    "record_deliveries",
    metadata,
    Column("record_id", Integer, ForeignKey("records.id", ondelete="CASCADE"), nullable=False),
    # mid:<hex> of the sender and its Message-ID (types.sent_key), or sha256:<hex> of the
    # content when there is no Message-ID
    Column("message_key", String(255), nullable=False),
    Column("item_id", Integer, ForeignKey("items.id", ondelete="CASCADE"), nullable=False),
    Column("delivered_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("record_id", "message_key", name="pk_record_deliveries"),
)
