"""Packages' and bridge notifications' tables (spec sections 4, 6 and 7.4).

A package row holds the envelope (scrypt salt, nonce, AES-GCM ciphertext)
and never the answer, not even hashed: the envelope is the verifier. The
code is stored as its HMAC under the server pepper. After pickup, expiry,
lockout or deletion the envelope is purged and the row stays as the audit
trail (who picked it up into which record, when).

``kind`` tells an app's package from a *holding package*: a message to
``newuser@`` kept sealed for a person who has no record yet (section 6).

``bridge_notifications`` records each e-mail notification the bridge owes
(new items in a record's inbox, a holding package waiting). The bridge has
no mail sender yet: rows stay unsent (``sent_at`` NULL) for a sender to
pick up; see docs/bridge.md.
"""

from __future__ import annotations

from sqlalchemy import Column, Index, Integer, LargeBinary, String, Table, Text

from gateway.store.schema import UtcDateTime, metadata

packages = Table(
    "packages",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # 'app' or 'holding' (PackageKind)
    Column("kind", String(16), nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("external_id", String(255), nullable=True),
    Column("friendly_name", String(255), nullable=True),
    Column("question", String(255), nullable=True),
    # HMAC-SHA256(pepper, canonical code), hex; kept after purge so a second redeem is told "gone"
    Column("code_hash", String(64), nullable=False, unique=True),
    # envelope v1 JSON; NULL while allocated and once purged
    Column("envelope", LargeBinary, nullable=True),
    # allocated, pending, picked_up, expired, locked, deleted (PackageState)
    Column("state", String(16), nullable=False),
    Column("failures", Integer, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("picked_up_at", UtcDateTime, nullable=True),
    Column("picked_up_by", Integer, nullable=True),
    Column("record_id", Integer, nullable=True),
    Column("item_count", Integer, nullable=True),
    Column("deleted_at", UtcDateTime, nullable=True),
    Column("purged_at", UtcDateTime, nullable=True),
)
Index("ix_packages_client_external_id", packages.c.client_id, packages.c.external_id)
Index("ix_packages_state_expires_at", packages.c.state, packages.c.expires_at)

bridge_notifications = Table(
    "bridge_notifications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # 'inbox_items' or 'holding_package' (NotificationKind)
    Column("kind", String(32), nullable=False),
    Column("record_id", Integer, nullable=True),
    Column("package_id", Integer, nullable=True),
    # the address to write to; NULL: the record's custodians, resolved when sent
    Column("recipient", String(320), nullable=True),
    Column("detail", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("sent_at", UtcDateTime, nullable=True),
)
