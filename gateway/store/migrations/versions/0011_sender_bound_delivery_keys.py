"""A delivery into a record is recognised by its sender and Message-ID, not the Message-ID alone.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04

``record_deliveries.message_key`` held the sender's Message-ID. A second,
different message from another sender with the same Message-ID (an EHR that
writes ``<12345@localhost>``, or a trusted sender reusing one on purpose) was
taken for a retry, answered "already delivered" and dropped. The key is now
``mid:`` and the SHA-256 of the signer-bound sender and the Message-ID
(``records_bridge.types.sent_key``). Existing rows are rewritten from their
message item's sender and Message-ID, so that a retry of a message delivered
before the upgrade is still recognised; rows whose item has no Message-ID
(keyed by a digest of the content) stay as they are.

The key's computation is written out here rather than imported: a migration
must keep doing what it did when the code it ran with changes.
"""

import hashlib
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_BATCH = 1000


def _sent_key(sender: str, message_id: str) -> str:
    sender = sender.lower()
    digest = hashlib.sha256(f"{len(sender)}:{sender}{message_id}".encode("utf-8", "surrogatepass"))
    return "mid:" + digest.hexdigest()


_ROWS = sa.text(
    "SELECT d.record_id, d.message_key, i.sender, i.message_id FROM record_deliveries d "
    "JOIN items i ON i.id = d.item_id WHERE i.sender IS NOT NULL AND i.message_id IS NOT NULL"
)
_REKEY = sa.text("UPDATE record_deliveries SET message_key = :new WHERE record_id = :record_id AND message_key = :old")


def _rekey(new_key: Callable[[Any], str | None]) -> None:
    """Each row's key to ``new_key(row)`` (None: unchanged), never onto a key its record
    already has (the table's primary key): that row keeps the key it had."""
    conn = op.get_bind()
    taken = {(r.record_id, r.message_key) for r in conn.execute(sa.text("SELECT record_id, message_key FROM record_deliveries"))}
    changes = []
    for r in conn.execute(_ROWS).all():
        new = new_key(r)
        if new is None or (r.record_id, new) in taken:
            continue
        taken.discard((r.record_id, r.message_key))
        taken.add((r.record_id, new))
        changes.append({"record_id": r.record_id, "old": r.message_key, "new": new})
    for start in range(0, len(changes), _BATCH):
        conn.execute(_REKEY, changes[start:start + _BATCH])


def upgrade() -> None:
    _rekey(lambda r: _sent_key(r.sender, r.message_id))


def downgrade() -> None:
    # Back to the bare Message-ID where it fits the column. Two senders' messages with one
    # Message-ID in one record cannot both have it: one keeps its new key, which the old
    # code never looks up (a retry of that message would be delivered again).
    _rekey(lambda r: r.message_id if r.message_key.startswith("mid:") and len(r.message_id) <= 255 else None)
