"""Domains, their keys, trust anchors and trust bundles.

Revision ID: 0001
Revises:
Create Date: 2026-11-28

Spelled out here rather than imported from ``schema`` so that later schema
changes cannot rewrite history; tests/test_store.py checks the two agree.
"""

import sqlalchemy as sa
from alembic import op

from gateway.store.schema import UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "domains",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(253), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_domains"),
        sa.UniqueConstraint("name", name="uq_domains_name"),
    )
    op.create_table(
        "keys",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("domain_id", sa.Integer, nullable=False),
        sa.Column("address", sa.String(320), nullable=True),
        sa.Column("cert_der", sa.LargeBinary, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("key_pem", sa.LargeBinary, nullable=False),
        sa.Column("can_sign", sa.Boolean, nullable=False),
        sa.Column("can_encrypt", sa.Boolean, nullable=False),
        sa.Column("not_before", UtcDateTime, nullable=False),
        sa.Column("not_after", UtcDateTime, nullable=False),
        sa.Column("added_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_keys"),
        sa.ForeignKeyConstraint(["domain_id"], ["domains.id"], name="fk_keys_domain_id_domains", ondelete="CASCADE"),
        sa.UniqueConstraint("domain_id", "sha256", name="uq_keys_domain_cert"),
    )
    op.create_table(
        "anchors",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("domain_id", sa.Integer, nullable=False),
        sa.Column("direction", sa.String(16), nullable=False),
        sa.Column("cert_der", sa.LargeBinary, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("not_after", UtcDateTime, nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("added_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_anchors"),
        sa.ForeignKeyConstraint(
            ["domain_id"], ["domains.id"], name="fk_anchors_domain_id_domains", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("domain_id", "direction", "sha256", "source", name="uq_anchors_cert"),
    )
    op.create_table(
        "bundles",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("domain_id", sa.Integer, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("directions", sa.String(32), nullable=False),
        sa.Column("refresh_seconds", sa.Integer, nullable=False),
        sa.Column("signer_der", sa.LargeBinary, nullable=True),
        sa.Column("last_good", sa.LargeBinary, nullable=True),
        sa.Column("checksum", sa.String(64), nullable=True),
        sa.Column("last_refresh_at", UtcDateTime, nullable=True),
        sa.Column("last_status", sa.String(32), nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("next_refresh_at", UtcDateTime, nullable=False),
        sa.Column("added_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_bundles"),
        sa.ForeignKeyConstraint(
            ["domain_id"], ["domains.id"], name="fk_bundles_domain_id_domains", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("domain_id", "url", name="uq_bundles_domain_url"),
    )


def downgrade() -> None:
    op.drop_table("bundles")
    op.drop_table("anchors")
    op.drop_table("keys")
    op.drop_table("domains")
