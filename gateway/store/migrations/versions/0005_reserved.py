"""Reserved in the chain for EHR accounts for submission and the submission port's lockout (issue 9).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

Each of 0005-0008 is reserved now so that work on them can proceed side by
side without forking the chain; a revision that adds nothing yet is a no-op.
"""

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
