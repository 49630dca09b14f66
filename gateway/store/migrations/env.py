"""Alembic environment: migrates on the connection ``open_store`` passes in.

Run only through ``gateway.store.open_store`` (which supplies the connection
from the async engine); there is no alembic.ini and no offline mode.
"""

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through gateway.store.open_store(url)")

context.configure(connection=connection, target_metadata=None, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
