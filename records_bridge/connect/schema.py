"""Connect requests' table (spec sections 3 and 7.3), on the gateway's one ``MetaData``.

Neither the code nor the answer is stored: ``code_hash`` is the code's
HMAC under the server pepper, ``answer_salt``/``answer_hash`` its scrypt
verifier. Deleting a request destroys the code (the hash and verifier are
cleared) and keeps the row for the audit trail. A verified answer yields a
short ticket, stored hashed too, bound to the person who answered.

At most one live (pending or authorized) request per (client, external_id):
a partial unique index, which SQLite and PostgreSQL both have.
"""

from __future__ import annotations

from sqlalchemy import Column, Index, Integer, LargeBinary, String, Table, text

from gateway.store.schema import UtcDateTime, metadata

connect_requests = Table(
    "connect_requests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("client_id", String(64), nullable=False),
    Column("external_id", String(255), nullable=False),
    Column("friendly_name", String(255), nullable=False),
    Column("question", String(255), nullable=False),
    # HMAC-SHA256(pepper, canonical code), hex; NULL once deleted
    Column("code_hash", String(64), nullable=True, unique=True),
    Column("answer_salt", LargeBinary, nullable=True),
    Column("answer_hash", LargeBinary, nullable=True),
    # pending, authorized, expired, locked, deleted (connect.states.ConnectState)
    Column("state", String(16), nullable=False),
    Column("failures", Integer, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("authorized_at", UtcDateTime, nullable=True),
    Column("retrievable_until", UtcDateTime, nullable=True),
    Column("person_id", Integer, nullable=True),
    Column("record_id", Integer, nullable=True),
    Column("grant_id", Integer, nullable=True),
    # SHA-256 of the ticket, hex; single use, 5 minutes, for ticket_person_id only
    Column("ticket_hash", String(64), nullable=True, unique=True),
    Column("ticket_person_id", Integer, nullable=True),
    Column("ticket_expires_at", UtcDateTime, nullable=True),
    Column("deleted_at", UtcDateTime, nullable=True),
)

Index(
    "ix_connect_requests_live_external_id",
    connect_requests.c.client_id,
    connect_requests.c.external_id,
    unique=True,
    sqlite_where=text("state IN ('pending', 'authorized')"),
    postgresql_where=text("state IN ('pending', 'authorized')"),
)
Index("ix_connect_requests_authorized_at", connect_requests.c.client_id, connect_requests.c.authorized_at)
