"""The trust store in the database, per local domain and direction.

Rows in ``anchors`` are either added by hand (source ``manual``) or copied
from a trust bundle's last good copy (source ``bundle:<id>``, replaced as a
whole on every successful refresh, in the same transaction as the copy).
``DbAnchors.anchors`` therefore answers with one query, and the set's
version (``AnchorSet.of`` hashes the certificates) changes exactly when the
certificates do, which is what the trust engine's decision cache keys on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.core.certs import CertRef
from gateway.store import Store, StoreError, StoreProblem, schema
from gateway.store.dialects import insert_ignoring_duplicates
from gateway.store.lookups import domain_id, normalise_domain

from .source import AnchorSet, Direction

MANUAL = "manual"


def bundle_source(bundle_id: int) -> str:
    return f"bundle:{bundle_id}"


@dataclass(frozen=True, slots=True)
class AnchorRecord:
    id: int
    domain: str
    direction: Direction
    sha256: str
    subject: str
    not_after: datetime
    source: str
    added_at: datetime


@dataclass(frozen=True, slots=True)
class Added:
    """What ``add`` did: the new rows, and certificates that were already there."""

    added: tuple[AnchorRecord, ...]
    already_present: tuple[tuple[Direction, CertRef], ...]


def _record(row: object) -> AnchorRecord:
    r = row._mapping  # type: ignore[attr-defined]
    return AnchorRecord(
        r["id"], r["name"], Direction(r["direction"]), r["sha256"], r["subject"], r["not_after"], r["source"],
        r["added_at"],
    )


_LISTED = (
    select(
        schema.anchors.c.id, schema.domains.c.name, schema.anchors.c.direction, schema.anchors.c.sha256,
        schema.anchors.c.subject, schema.anchors.c.not_after, schema.anchors.c.source, schema.anchors.c.added_at,
    )
    .join(schema.domains, schema.domains.c.id == schema.anchors.c.domain_id)
    .order_by(schema.domains.c.name, schema.anchors.c.direction, schema.anchors.c.id)
)


class DbAnchors:
    """``AnchorSource`` over the database, plus the administrator's operations."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def anchors(self, domain: str, direction: Direction) -> AnchorSet:
        query = (
            select(schema.anchors.c.cert_der)
            .join(schema.domains, schema.domains.c.id == schema.anchors.c.domain_id)
            .where(schema.domains.c.name == domain.strip().rstrip(".").lower())
            .where(schema.anchors.c.direction == direction.value)
        )
        async with self._store.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return AnchorSet.of(domain, direction, (CertRef(bytes(r.cert_der)) for r in rows))

    async def add(
        self, domain: str, directions: Iterable[Direction], certs: Sequence[CertRef], *, at: datetime
    ) -> Added:
        async with self._store.begin() as conn:
            did = await domain_id(conn, domain)
            return await add_rows(conn, self._store.dialect, did, list(directions), certs, MANUAL, at)

    async def all(self, domain: str | None = None) -> list[AnchorRecord]:
        query = _LISTED
        if domain is not None:
            query = query.where(schema.domains.c.name == normalise_domain(domain))
        async with self._store.engine.connect() as conn:
            return [_record(r) for r in (await conn.execute(query)).all()]

    async def remove(self, anchor_id: int) -> AnchorRecord:
        """Remove one manual anchor. Bundle anchors go with their bundle."""
        async with self._store.begin() as conn:
            row = (await conn.execute(_LISTED.where(schema.anchors.c.id == anchor_id))).first()
            if row is None:
                raise StoreError(StoreProblem.NOT_FOUND, f"no anchor with id {anchor_id}")
            record = _record(row)
            if record.source != MANUAL:
                raise StoreError(
                    StoreProblem.CONFLICT,
                    f"anchor {anchor_id} comes from {record.source.replace(':', ' ')}; "
                    "it returns on the next refresh, so remove the bundle instead",
                )
            await conn.execute(delete(schema.anchors).where(schema.anchors.c.id == anchor_id))
            return record


async def add_rows(
    conn: AsyncConnection,
    dialect: str,
    did: int,
    directions: Sequence[Direction],
    certs: Sequence[CertRef],
    source: str,
    at: datetime,
) -> Added:
    """Insert anchors for each direction, skipping certificates already there
    from the same source (a concurrent add of the same file is harmless)."""
    existing = {
        (r.direction, r.sha256)
        for r in (
            await conn.execute(
                select(schema.anchors.c.direction, schema.anchors.c.sha256)
                .where(schema.anchors.c.domain_id == did)
                .where(schema.anchors.c.source == source)
            )
        ).all()
    }
    rows: list[tuple[Direction, CertRef, dict[str, Any]]] = []
    present: list[tuple[Direction, CertRef]] = []
    for direction in directions:
        for cert in dict.fromkeys(certs):
            if (direction.value, cert.sha256) in existing:
                present.append((direction, cert))
                continue
            existing.add((direction.value, cert.sha256))
            row: dict[str, Any] = {
                "domain_id": did, "direction": direction.value, "cert_der": cert.der, "sha256": cert.sha256,
                "subject": cert.subject, "not_after": cert.not_after, "source": source, "added_at": at,
            }
            rows.append((direction, cert, row))
    added: list[AnchorRecord] = []
    inserted: list[int] = []
    insert = insert_ignoring_duplicates(dialect, schema.anchors).returning(schema.anchors.c.id)
    for direction, cert, row in rows:
        # RETURNING names only the rows this statement wrote: a concurrent
        # add of the same certificate reports it once, not twice
        new_id = (await conn.execute(insert.values(row))).scalar()
        if new_id is None:
            present.append((direction, cert))
        else:
            inserted.append(int(new_id))
    if inserted:
        added = [_record(r) for r in (await conn.execute(_LISTED.where(schema.anchors.c.id.in_(inserted)))).all()]
    return Added(tuple(added), tuple(present))


async def replace_bundle_rows(
    conn: AsyncConnection, dialect: str, did: int, bundle_id: int, directions: Sequence[Direction],
    certs: Sequence[CertRef], at: datetime,
) -> None:
    """Swap a bundle's anchors for its new contents, inside the caller's transaction."""
    source = bundle_source(bundle_id)
    await conn.execute(delete(schema.anchors).where(schema.anchors.c.source == source))
    await add_rows(conn, dialect, did, directions, certs, source, at)
