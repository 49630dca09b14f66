"""The EHR accounts' tables, on the gateway's one ``MetaData`` (migration 0005).

``accounts``: one row per EHR (or other provider system) allowed to submit
on port 587: its name (the SMTP AUTH login), the local domain it may send
from, and an argon2id hash of its password (never the password).

``auth_lockouts``: failed logins per client address, in the database rather
than in memory so every node sharing PostgreSQL, and every ``--workers N``
process, counts the same failures and honours the same lock.
"""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Index, Integer, String, Table

from gateway.store.schema import UtcDateTime, metadata

MAX_NAME = 64
"""An account name is a login typed into an EHR's settings, not an address."""

accounts = Table(
    "accounts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(MAX_NAME), nullable=False, unique=True),
    # removing a local domain removes the accounts that sent from it
    Column("domain_id", Integer, ForeignKey("domains.id", ondelete="CASCADE"), nullable=False),
    # argon2-cffi's encoded form ($argon2id$v=19$m=...,t=...,p=...$salt$hash): about 100 characters
    Column("password_hash", String(256), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("password_changed_at", UtcDateTime, nullable=False),
)

auth_lockouts = Table(
    "auth_lockouts",
    metadata,
    # the client's address (an IPv6 client by its /64: gateway.accounts.lockout.client_key)
    Column("client", String(64), primary_key=True),
    # failures counted since window_start; reset when the address is locked or logs in
    Column("failures", Integer, nullable=False),
    Column("window_start", UtcDateTime, nullable=False),
    Column("locked_until", UtcDateTime, nullable=True),
    Column("updated_at", UtcDateTime, nullable=False),
    # rows nobody touched for a while are purged at the next failure (bounded table)
    Index("ix_auth_lockouts_updated_at", "updated_at"),
)
