"""EHR accounts for submission (port 587) and the lockout of client addresses after failed logins.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

Spelled out here rather than imported from ``gateway.accounts.schema`` so that
later schema changes cannot rewrite history; tests/test_store.py checks the two agree.
"""

import sqlalchemy as sa
from alembic import op

from gateway.store.schema import UtcDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("domain_id", sa.Integer, nullable=False),
        sa.Column("password_hash", sa.String(256), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("password_changed_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_accounts"),
        sa.ForeignKeyConstraint(["domain_id"], ["domains.id"], name="fk_accounts_domain_id_domains", ondelete="CASCADE"),
        sa.UniqueConstraint("name", name="uq_accounts_name"),
    )
    op.create_table(
        "auth_lockouts",
        sa.Column("client", sa.String(64), nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("window_start", UtcDateTime, nullable=False),
        sa.Column("locked_until", UtcDateTime, nullable=True),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("client", name="pk_auth_lockouts"),
    )
    op.create_index("ix_auth_lockouts_updated_at", "auth_lockouts", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_auth_lockouts_updated_at", table_name="auth_lockouts")
    op.drop_table("auth_lockouts")
    op.drop_table("accounts")
