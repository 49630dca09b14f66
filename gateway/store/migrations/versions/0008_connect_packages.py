"""The records bridge's Patient Connect requests, Drop-Off/Pick-Up packages and notifications (issue 10).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

Spelled out here rather than imported from ``records_bridge.connect.schema``
and ``records_bridge.packages.schema`` so that later schema changes cannot
rewrite history; tests/test_store.py checks the two agree.
"""

import sqlalchemy as sa
from alembic import op

from gateway.store.schema import UtcDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_LIVE = "state IN ('pending', 'authorized')"


def upgrade() -> None:
    op.create_table(
        "connect_requests",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("external_id", sa.String(255), nullable=False),
        sa.Column("friendly_name", sa.String(255), nullable=False),
        sa.Column("question", sa.String(255), nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=True),
        sa.Column("answer_salt", sa.LargeBinary, nullable=True),
        sa.Column("answer_hash", sa.LargeBinary, nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("expires_at", UtcDateTime, nullable=False),
        sa.Column("authorized_at", UtcDateTime, nullable=True),
        sa.Column("retrievable_until", UtcDateTime, nullable=True),
        sa.Column("person_id", sa.Integer, nullable=True),
        sa.Column("record_id", sa.Integer, nullable=True),
        sa.Column("grant_id", sa.Integer, nullable=True),
        sa.Column("ticket_hash", sa.String(64), nullable=True),
        sa.Column("ticket_person_id", sa.Integer, nullable=True),
        sa.Column("ticket_expires_at", UtcDateTime, nullable=True),
        sa.Column("deleted_at", UtcDateTime, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_connect_requests"),
        sa.UniqueConstraint("code_hash", name="uq_connect_requests_code_hash"),
        sa.UniqueConstraint("ticket_hash", name="uq_connect_requests_ticket_hash"),
    )
    op.create_index(
        "ix_connect_requests_live_external_id", "connect_requests", ["client_id", "external_id"], unique=True,
        sqlite_where=sa.text(_LIVE), postgresql_where=sa.text(_LIVE),
    )
    op.create_index("ix_connect_requests_authorized_at", "connect_requests", ["client_id", "authorized_at"])
    op.create_table(
        "packages",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("external_id", sa.String(255), nullable=True),
        sa.Column("friendly_name", sa.String(255), nullable=True),
        sa.Column("question", sa.String(255), nullable=True),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("envelope", sa.LargeBinary, nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("expires_at", UtcDateTime, nullable=False),
        sa.Column("picked_up_at", UtcDateTime, nullable=True),
        sa.Column("picked_up_by", sa.Integer, nullable=True),
        sa.Column("record_id", sa.Integer, nullable=True),
        sa.Column("item_count", sa.Integer, nullable=True),
        sa.Column("deleted_at", UtcDateTime, nullable=True),
        sa.Column("purged_at", UtcDateTime, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_packages"),
        sa.UniqueConstraint("code_hash", name="uq_packages_code_hash"),
    )
    op.create_index("ix_packages_client_external_id", "packages", ["client_id", "external_id"])
    op.create_index("ix_packages_state_expires_at", "packages", ["state", "expires_at"])
    op.create_table(
        "bridge_notifications",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("record_id", sa.Integer, nullable=True),
        sa.Column("package_id", sa.Integer, nullable=True),
        sa.Column("recipient", sa.String(320), nullable=True),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("sent_at", UtcDateTime, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_bridge_notifications"),
    )


def downgrade() -> None:
    op.drop_table("bridge_notifications")
    op.drop_index("ix_packages_state_expires_at", table_name="packages")
    op.drop_index("ix_packages_client_external_id", table_name="packages")
    op.drop_table("packages")
    op.drop_index("ix_connect_requests_authorized_at", table_name="connect_requests")
    op.drop_index("ix_connect_requests_live_external_id", table_name="connect_requests")
    op.drop_table("connect_requests")
