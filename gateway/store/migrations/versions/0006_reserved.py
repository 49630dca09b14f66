"""Reserved in the chain for the delivery monitor and providers' mailboxes (issue 9).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

Each of 0005-0008 is reserved now so that work on them can proceed side by
side without forking the chain; a revision that adds nothing yet is a no-op.
"""

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
