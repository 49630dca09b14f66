"""The audit trail and the outbound queue indexed by message, and jobs by the message they relate to.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04

``directgw messages show`` and the admin API read a message's audit rows and
its outbound jobs by ``message_id``. Without these indexes each read scans
the whole table: ten audit rows a sent message, so a gateway a year old
answered in minutes. Deleting a message (its jobs cascade, its audit rows
are set NULL) scanned both tables on PostgreSQL for the same reason. A
verified message for a provider's mailbox looks for a job already queued for
it by Message-ID (``relates_to``, a sender's retry after a lost 250): that
read scanned the whole queue, sent jobs included, once per message.
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_audit_message_id", "audit", ["message_id"])
    op.create_index("ix_outbound_message_id", "outbound", ["message_id"])
    op.create_index("ix_outbound_relates_to", "outbound", ["relates_to"])


def downgrade() -> None:
    op.drop_index("ix_outbound_relates_to", table_name="outbound")
    op.drop_index("ix_outbound_message_id", table_name="outbound")
    op.drop_index("ix_audit_message_id", table_name="audit")
