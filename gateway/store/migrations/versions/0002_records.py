"""Patients' records: persons, records, access, Direct addresses, items, blobs, deliveries.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

Spelled out here rather than imported from ``records_bridge.schema`` so that
later schema changes cannot rewrite history; tests/test_store.py checks the
two agree.
"""

import sqlalchemy as sa
from alembic import op

from gateway.store.schema import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "persons",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("display_name", sa.Text, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_persons"),
        sa.UniqueConstraint("email", name="uq_persons_email"),
    )
    op.create_table(
        "records",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("display_name", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_records"),
    )
    op.create_table(
        "record_access",
        sa.Column("person_id", sa.Integer, nullable=False),
        sa.Column("record_id", sa.Integer, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("person_id", "record_id", name="pk_record_access"),
        sa.ForeignKeyConstraint(
            ["person_id"], ["persons.id"], name="fk_record_access_person_id_persons", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["record_id"], ["records.id"], name="fk_record_access_record_id_records", ondelete="CASCADE"
        ),
    )
    op.create_table(
        "record_addresses",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("record_id", sa.Integer, nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_record_addresses"),
        sa.ForeignKeyConstraint(
            ["record_id"], ["records.id"], name="fk_record_addresses_record_id_records", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("address", name="uq_record_addresses_address"),
    )
    op.create_table(
        "items",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("uid", sa.String(36), nullable=False),
        sa.Column("record_id", sa.Integer, nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("version", sa.String(36), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("inbox_state", sa.String(16), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("source_kind", sa.String(16), nullable=False),
        sa.Column("source_ref", sa.Text, nullable=True),
        sa.Column("parent_id", sa.Integer, nullable=True),
        sa.Column("sender", sa.String(320), nullable=True),
        sa.Column("signer_sha256", sa.String(64), nullable=True),
        sa.Column("signer_subject", sa.Text, nullable=True),
        sa.Column("trust_decision", sa.Text, nullable=True),
        sa.Column("message_id", sa.Text, nullable=True),
        sa.Column("data", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_items"),
        sa.ForeignKeyConstraint(["record_id"], ["records.id"], name="fk_items_record_id_records", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["parent_id"], ["items.id"], name="fk_items_parent_id_items", ondelete="CASCADE"),
        sa.UniqueConstraint("uid", name="uq_items_uid"),
    )
    op.create_table(
        "blobs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("item_id", sa.Integer, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("content_type", sa.String(255), nullable=False),
        sa.Column("filename", sa.Text, nullable=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_blobs"),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], name="fk_blobs_item_id_items", ondelete="CASCADE"),
        sa.UniqueConstraint("item_id", "name", name="uq_blobs_item_name"),
    )
    op.create_table(
        "record_deliveries",
        sa.Column("record_id", sa.Integer, nullable=False),
        sa.Column("message_key", sa.String(255), nullable=False),
        sa.Column("item_id", sa.Integer, nullable=False),
        sa.Column("delivered_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("record_id", "message_key", name="pk_record_deliveries"),
        sa.ForeignKeyConstraint(
            ["record_id"], ["records.id"], name="fk_record_deliveries_record_id_records", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["item_id"], ["items.id"], name="fk_record_deliveries_item_id_items", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_items_record_id", "items", ["record_id"])
    op.create_index("ix_blobs_item_id", "blobs", ["item_id"])


def downgrade() -> None:
    op.drop_index("ix_blobs_item_id", "blobs")
    op.drop_index("ix_items_record_id", "items")
    for table in ("record_deliveries", "blobs", "items", "record_addresses", "record_access", "records", "persons"):
        op.drop_table(table)
