"""Persistent state: one SQLAlchemy Core data layer over SQLite and PostgreSQL.

    store = await open_store(config.storage_url)   # migrates to head
    async with store.begin() as conn: ...
    await store.close()
"""

from . import messaging, schema
from .engine import Store, head_revision, open_store
from .errors import StoreError, StoreProblem

__all__ = ["Store", "StoreError", "StoreProblem", "head_revision", "messaging", "open_store", "schema"]
