"""Who may act on which record: a person's role on a record (spec section 1,
``RecordAccess``). A custodian reads and writes; a viewer only reads.

An app's access is a separate question, answered by its grant and token
(records_bridge.oauth.bearer): a token acts for a person, on the records of
its grants, within its scopes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError

from gateway.store import Store

from . import schema


class Role(enum.Enum):
    CUSTODIAN = "custodian"
    VIEWER = "viewer"


@dataclass(frozen=True, slots=True)
class PersonRecord:
    record_id: int
    display_name: str
    role: Role


class AccessError(Exception):
    """An access change the records cannot make (unknown person or record)."""


def can_read(role: Role | None) -> bool:
    return role is not None


def can_write(role: Role | None) -> bool:
    return role is Role.CUSTODIAN


def role_in(conn: Connection, person_id: int, record_id: int) -> Role | None:
    a = schema.record_access
    value = conn.execute(
        select(a.c.role).where(a.c.person_id == person_id, a.c.record_id == record_id)
    ).scalar_one_or_none()
    return Role(value) if value is not None else None


def records_of_in(conn: Connection, person_id: int) -> list[PersonRecord]:
    a, r = schema.record_access, schema.records
    rows = conn.execute(
        select(r.c.id, r.c.display_name, a.c.role)
        .join(a, a.c.record_id == r.c.id)
        .where(a.c.person_id == person_id, r.c.state == "active")
        .order_by(r.c.id)
    ).all()
    return [PersonRecord(row.id, row.display_name, Role(row.role)) for row in rows]


async def role(store: Store, person_id: int, record_id: int) -> Role | None:
    return await store.read(lambda conn: role_in(conn, person_id, record_id))


async def records_of(store: Store, person_id: int) -> list[PersonRecord]:
    """The active records a person may act on, by id."""
    return await store.read(lambda conn: records_of_in(conn, person_id))


def give_in(conn: Connection, person_id: int, record_id: int, given: Role, *, at: datetime) -> None:
    """Give ``person_id`` the role ``given`` on ``record_id`` (replacing any role they had)."""
    a = schema.record_access
    conn.execute(a.delete().where(a.c.person_id == person_id, a.c.record_id == record_id))
    conn.execute(a.insert().values(person_id=person_id, record_id=record_id, role=given.value, created_at=at))


async def give(store: Store, person_id: int, record_id: int, given: Role, *, at: datetime) -> None:
    try:
        await store.run(lambda conn: give_in(conn, person_id, record_id, given, at=at))
    except IntegrityError as exc:
        raise AccessError(f"no person {person_id} or no record {record_id}") from exc
