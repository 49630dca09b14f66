"""Small queries several stores share."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from . import schema
from .errors import StoreError, StoreProblem

# RFC 1035 section 2.3.1 labels (letters, digits, hyphens), at least two labels.
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def normalise_domain(name: str) -> str:
    """Lower case, no trailing dot; refuses what cannot be a mail domain."""
    value = name.strip().rstrip(".").lower()
    if not _DOMAIN.match(value):
        raise ValueError(f"{name!r} is not a domain name")
    return value


async def domain_id(conn: AsyncConnection, name: str) -> int:
    row = (
        await conn.execute(select(schema.domains.c.id).where(schema.domains.c.name == normalise_domain(name)))
    ).first()
    if row is None:
        raise StoreError(StoreProblem.NOT_FOUND, f"{name} is not a local domain (add it with `directgw domains add`)")
    return int(row.id)
