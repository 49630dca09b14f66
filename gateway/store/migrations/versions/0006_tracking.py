"""The delivery monitor's ``tracking`` table (issue 9): one row per submitted message and recipient.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

Spelled out here rather than imported from ``gateway.monitor.schema`` so that
later schema changes cannot rewrite history; tests/test_store.py checks the two agree.
"""

import sqlalchemy as sa
from alembic import op

from gateway.store.schema import UtcDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tracking",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.Integer, nullable=False),
        sa.Column("job_id", sa.Integer, nullable=True),
        sa.Column("sender", sa.String(320), nullable=False),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("original_message_id", sa.Text, nullable=False),
        sa.Column("reliable", sa.Boolean, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("detail", sa.Text, nullable=True),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.Column("sent_at", UtcDateTime, nullable=True),
        sa.Column("deadline_at", UtcDateTime, nullable=True),
        sa.Column("processed_at", UtcDateTime, nullable=True),
        sa.Column("dispatched_at", UtcDateTime, nullable=True),
        sa.Column("failed_at", UtcDateTime, nullable=True),
        sa.Column("final_notice_at", UtcDateTime, nullable=True),
        sa.Column("final_outcome", sa.String(16), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_tracking"),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"], name="fk_tracking_message_id_messages",
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["job_id"], ["outbound.id"], name="fk_tracking_job_id_outbound", ondelete="SET NULL"),
        sa.UniqueConstraint("message_id", "recipient", name="uq_tracking_message_recipient"),
    )
    op.create_index("ix_tracking_original_message_id", "tracking", ["original_message_id"])
    op.create_index("ix_tracking_deadline_at", "tracking", ["deadline_at"])
    op.create_index("ix_tracking_job_id", "tracking", ["job_id"])


def downgrade() -> None:
    op.drop_index("ix_tracking_job_id", table_name="tracking")
    op.drop_index("ix_tracking_deadline_at", table_name="tracking")
    op.drop_index("ix_tracking_original_message_id", table_name="tracking")
    op.drop_table("tracking")
