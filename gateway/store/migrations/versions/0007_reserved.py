"""Reserved in the chain for the records bridge: people, sessions, OAuth clients, grants and tokens (issue 10).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

Each of 0005-0008 is reserved now so that work on them can proceed side by
side without forking the chain; a revision that adds nothing yet is a no-op.
"""

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
