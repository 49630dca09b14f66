"""The records bridge's people and OAuth state: password hashes, sessions, clients
with their redirect URIs, grants, authorization codes, token families and tokens (issue 10).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

Spelled out by hand (see 0002); ``records_bridge.oauth.schema`` declares the
same tables and tests/test_store.py checks the two agree.
"""

import sqlalchemy as sa
from alembic import op

from gateway.store.schema import UtcDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("persons") as batch:
        batch.add_column(sa.Column("password_hash", sa.Text, nullable=True))
    op.create_table(
        "bridge_sessions",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("person_id", sa.Integer, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("expires_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("token_hash", name="pk_bridge_sessions"),
        sa.ForeignKeyConstraint(["person_id"], ["persons.id"], name="fk_bridge_sessions_person_id_persons",
                                ondelete="CASCADE"),
    )
    op.create_index("ix_bridge_sessions_person_id", "bridge_sessions", ["person_id"])
    op.create_table(
        "oauth_clients",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=True),
        sa.Column("allowed_scopes", sa.Text, nullable=False),
        sa.Column("required_scopes", sa.Text, nullable=False),
        sa.Column("optional_scopes", sa.Text, nullable=False),
        sa.Column("multi_record", sa.Boolean, nullable=False),
        sa.Column("offline_allowed", sa.Boolean, nullable=False),
        sa.Column("connect_enabled", sa.Boolean, nullable=False),
        sa.Column("writes_to_inbox", sa.Boolean, nullable=False),
        sa.Column("master_id", sa.Integer, nullable=True),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_oauth_clients"),
        sa.UniqueConstraint("client_id", name="uq_oauth_clients_client_id"),
        sa.ForeignKeyConstraint(["master_id"], ["oauth_clients.id"], name="fk_oauth_clients_master_id_oauth_clients",
                                ondelete="CASCADE"),
    )
    op.create_index("ix_oauth_clients_master_id", "oauth_clients", ["master_id"])
    op.create_table(
        "oauth_redirect_uris",
        sa.Column("client_pk", sa.Integer, nullable=False),
        sa.Column("uri", sa.String(2000), nullable=False),
        sa.PrimaryKeyConstraint("client_pk", "uri", name="pk_oauth_redirect_uris"),
        sa.ForeignKeyConstraint(["client_pk"], ["oauth_clients.id"],
                                name="fk_oauth_redirect_uris_client_pk_oauth_clients", ondelete="CASCADE"),
    )
    op.create_table(
        "grants",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("client_pk", sa.Integer, nullable=False),
        sa.Column("person_id", sa.Integer, nullable=False),
        sa.Column("record_id", sa.Integer, nullable=False),
        sa.Column("scopes", sa.Text, nullable=False),
        sa.Column("offline", sa.Boolean, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("revoked_at", UtcDateTime, nullable=True),
        sa.Column("auth_action", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_grants"),
        sa.UniqueConstraint("client_pk", "person_id", "record_id", name="uq_grants_client_pk"),
        sa.ForeignKeyConstraint(["client_pk"], ["oauth_clients.id"], name="fk_grants_client_pk_oauth_clients",
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["person_id"], ["persons.id"], name="fk_grants_person_id_persons", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["record_id"], ["records.id"], name="fk_grants_record_id_records", ondelete="CASCADE"),
    )
    op.create_index("ix_grants_person_id", "grants", ["person_id"])
    op.create_index("ix_grants_record_id", "grants", ["record_id"])
    op.create_table(
        "oauth_codes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("client_pk", sa.Integer, nullable=False),
        sa.Column("person_id", sa.Integer, nullable=False),
        sa.Column("record_ids", sa.Text, nullable=False),
        sa.Column("scopes", sa.Text, nullable=False),
        sa.Column("redirect_uri", sa.String(2000), nullable=False),
        sa.Column("code_challenge", sa.String(64), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("expires_at", UtcDateTime, nullable=False),
        sa.Column("used_at", UtcDateTime, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_oauth_codes"),
        sa.UniqueConstraint("code_hash", name="uq_oauth_codes_code_hash"),
        sa.ForeignKeyConstraint(["client_pk"], ["oauth_clients.id"], name="fk_oauth_codes_client_pk_oauth_clients",
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["person_id"], ["persons.id"], name="fk_oauth_codes_person_id_persons",
                                ondelete="CASCADE"),
    )
    op.create_table(
        "token_families",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("client_pk", sa.Integer, nullable=False),
        sa.Column("person_id", sa.Integer, nullable=True),
        sa.Column("code_id", sa.Integer, nullable=True),
        sa.Column("record_id", sa.Integer, nullable=True),
        sa.Column("scopes", sa.Text, nullable=False),
        sa.Column("offline", sa.Boolean, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("revoked_at", UtcDateTime, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_token_families"),
        sa.ForeignKeyConstraint(["client_pk"], ["oauth_clients.id"],
                                name="fk_token_families_client_pk_oauth_clients", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["person_id"], ["persons.id"], name="fk_token_families_person_id_persons",
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["code_id"], ["oauth_codes.id"], name="fk_token_families_code_id_oauth_codes",
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["record_id"], ["records.id"], name="fk_token_families_record_id_records",
                                ondelete="CASCADE"),
    )
    op.create_index("ix_token_families_client_pk", "token_families", ["client_pk"])
    op.create_index("ix_token_families_code_id", "token_families", ["code_id"])
    op.create_table(
        "family_grants",
        sa.Column("family_id", sa.Integer, nullable=False),
        sa.Column("grant_id", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("family_id", "grant_id", name="pk_family_grants"),
        sa.ForeignKeyConstraint(["family_id"], ["token_families.id"],
                                name="fk_family_grants_family_id_token_families", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["grant_id"], ["grants.id"], name="fk_family_grants_grant_id_grants",
                                ondelete="CASCADE"),
    )
    op.create_index("ix_family_grants_grant_id", "family_grants", ["grant_id"])
    op.create_table(
        "oauth_tokens",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("family_id", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("scopes", sa.Text, nullable=False),
        sa.Column("issued_at", UtcDateTime, nullable=False),
        sa.Column("expires_at", UtcDateTime, nullable=True),
        sa.Column("used_at", UtcDateTime, nullable=True),
        sa.Column("revoked_at", UtcDateTime, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_oauth_tokens"),
        sa.UniqueConstraint("token_hash", name="uq_oauth_tokens_token_hash"),
        sa.ForeignKeyConstraint(["family_id"], ["token_families.id"],
                                name="fk_oauth_tokens_family_id_token_families", ondelete="CASCADE"),
    )
    op.create_index("ix_oauth_tokens_family_id", "oauth_tokens", ["family_id"])


def downgrade() -> None:
    for table in ("oauth_tokens", "family_grants", "token_families", "oauth_codes", "grants",
                  "oauth_redirect_uris", "oauth_clients", "bridge_sessions"):
        op.drop_table(table)
    with op.batch_alter_table("persons") as batch:
        batch.drop_column("password_hash")
