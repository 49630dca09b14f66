"""The tables, as SQLAlchemy Core objects (no ORM: queries stay visible).

Migrations in ``migrations/versions`` create exactly these; a test compares
the two. Certificates are stored as their exact DER bytes (see core/certs.py
on why re-encoding is avoided) beside their SHA-256, which is what
uniqueness and lookups use.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out. SQLite has no time-zone type and hands
    back naive values; PostgreSQL's timestamptz hands back aware ones."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass an aware UTC time")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

domains = Table(
    "domains",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(253), nullable=False, unique=True),
    Column("created_at", UtcDateTime, nullable=False),
)

keys = Table(
    "keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("domain_id", Integer, ForeignKey("domains.id", ondelete="CASCADE"), nullable=False),
    # NULL for the org-bound (domain) certificate; the address for an address-bound one
    Column("address", String(320), nullable=True),
    Column("cert_der", LargeBinary, nullable=False),
    Column("sha256", String(64), nullable=False),
    # PKCS#8 PEM, unencrypted: see docs/storage.md for why the key lives here
    Column("key_pem", LargeBinary, nullable=False),
    Column("can_sign", Boolean, nullable=False),
    Column("can_encrypt", Boolean, nullable=False),
    Column("not_before", UtcDateTime, nullable=False),
    Column("not_after", UtcDateTime, nullable=False),
    Column("added_at", UtcDateTime, nullable=False),
    UniqueConstraint("domain_id", "sha256", name="uq_keys_domain_cert"),
)

anchors = Table(
    "anchors",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("domain_id", Integer, ForeignKey("domains.id", ondelete="CASCADE"), nullable=False),
    Column("direction", String(16), nullable=False),
    Column("cert_der", LargeBinary, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("subject", Text, nullable=False),
    Column("not_after", UtcDateTime, nullable=False),
    # 'manual', or 'bundle:<id>' for certificates copied from a bundle's last good copy
    Column("source", String(32), nullable=False),
    Column("added_at", UtcDateTime, nullable=False),
    UniqueConstraint("domain_id", "direction", "sha256", "source", name="uq_anchors_cert"),
)

bundles = Table(
    "bundles",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("domain_id", Integer, ForeignKey("domains.id", ondelete="CASCADE"), nullable=False),
    Column("url", Text, nullable=False),
    # 'incoming', 'outgoing' or 'incoming,outgoing'
    Column("directions", String(32), nullable=False),
    Column("refresh_seconds", Integer, nullable=False),
    Column("signer_der", LargeBinary, nullable=True),
    Column("last_good", LargeBinary, nullable=True),
    Column("checksum", String(64), nullable=True),
    Column("last_refresh_at", UtcDateTime, nullable=True),
    Column("last_status", String(32), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("next_refresh_at", UtcDateTime, nullable=False),
    Column("added_at", UtcDateTime, nullable=False),
    UniqueConstraint("domain_id", "url", name="uq_bundles_domain_url"),
)
