"""A record's size is summed from its blobs when asked, no longer kept in ``records.size_bytes``.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03

Every delivery into a record added its bytes to that one row. On PostgreSQL
the UPDATE held the record's row lock until COMMIT, so concurrent deliveries
into one record queued behind each other's commits, and each waiter cost the
server CPU: bench/smtp_inbound.py's PostgreSQL figures rose by half without
it (docs/receive.md). SQLite's DROP COLUMN (3.35 and later) is used rather
than a batch copy, which would drop and re-create ``records`` under the
foreign keys that cascade from it.
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE records DROP COLUMN size_bytes")


def downgrade() -> None:
    op.execute("ALTER TABLE records ADD COLUMN size_bytes BIGINT NOT NULL DEFAULT 0")
    op.execute(sa.text(
        "UPDATE records SET size_bytes = COALESCE((SELECT SUM(blobs.size) FROM blobs "
        "JOIN items ON items.id = blobs.item_id WHERE items.record_id = records.id), 0)"
    ))
