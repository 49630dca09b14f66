"""Messages, their recipients, the audit trail and the outbound queue.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

Spelled out here rather than imported from ``messaging`` so that later
schema changes cannot rewrite history; tests/test_store.py checks the two agree.
"""

import sqlalchemy as sa
from alembic import op

from gateway.store.schema import UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "messages",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("direction", sa.String(8), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("received_at", UtcDateTime, nullable=False),
        sa.Column("peer", sa.String(64), nullable=True),
        sa.Column("helo", sa.String(255), nullable=True),
        sa.Column("mail_from", sa.String(320), nullable=False),
        sa.Column("message_id", sa.Text, nullable=True),
        sa.Column("sender", sa.String(320), nullable=True),
        sa.Column("subject", sa.Text, nullable=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("raw", sa.LargeBinary, nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("detail", sa.Text, nullable=True),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_messages"),
    )
    op.create_table(
        "message_recipients",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.Integer, nullable=False),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("detail", sa.Text, nullable=True),
        sa.Column("record_id", sa.Integer, nullable=True),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_message_recipients"),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name="fk_message_recipients_message_id_messages", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("message_id", "recipient", name="uq_message_recipients_message_recipient"),
    )
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", UtcDateTime, nullable=False),
        sa.Column("message_id", sa.Integer, nullable=True),
        sa.Column("recipient", sa.String(320), nullable=True),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("detail", sa.Text, nullable=True),
        sa.Column("peer", sa.String(64), nullable=True),
        sa.Column("node", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit"),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"], name="fk_audit_message_id_messages", ondelete="SET NULL"),
    )
    op.create_table(
        "outbound",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.Integer, nullable=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("sender", sa.String(320), nullable=False),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UtcDateTime, nullable=False),
        sa.Column("expires_at", UtcDateTime, nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", UtcDateTime, nullable=True),
        sa.Column("sent_message_id", sa.Text, nullable=True),
        sa.Column("relates_to", sa.Text, nullable=True),
        sa.Column("last_code", sa.Integer, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_outbound"),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"], name="fk_outbound_message_id_messages", ondelete="CASCADE"),
    )
    op.create_index("ix_outbound_state_next_attempt_at", "outbound", ["state", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_outbound_state_next_attempt_at", "outbound")
    for table in ("outbound", "audit", "message_recipients", "messages"):
        op.drop_table(table)
