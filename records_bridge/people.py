"""People who sign in to the bridge: accounts with argon2id password hashes.

argon2id (RFC 9106) with argon2-cffi's defaults (t=3, m=64 MiB, p=4; RFC 9106
section 4's second recommended option) costs tens of milliseconds of CPU, so
hashing and verifying run in a worker thread, never on the event loop.
Signing in with an unknown e-mail address verifies against a fixed dummy
hash, so the answer takes as long as for a known address and the timing does
not reveal who has an account.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Connection, select, update
from sqlalchemy.exc import IntegrityError

from gateway.store import Store

from . import schema

PASSWORD_MIN_LENGTH = 10
"""NIST SP 800-63B 5.1.1.2 asks for at least 8; 10 because the record holds medical data."""
PASSWORD_MAX_LENGTH = 1024
"""Bounds the hashing work one request can ask for (argon2 itself takes any length)."""
EMAIL_MAX_LENGTH = 320
"""RFC 3696 errata 1690: 64 + 1 + 255."""
NAME_MAX_LENGTH = 200

_HASHER = PasswordHasher()  # argon2id; parameters are stored in each hash, so raising them later is safe
_DUMMY_HASH = _HASHER.hash("records-bridge timing equaliser")


@dataclass(frozen=True, slots=True)
class Person:
    id: int
    email: str | None
    display_name: str


class SignUpProblem(enum.Enum):
    EMAIL_INVALID = "Enter an e-mail address such as name@example.com."
    EMAIL_TAKEN = "An account with this e-mail address already exists. Sign in instead."
    PASSWORD_SHORT = f"Choose a password of at least {PASSWORD_MIN_LENGTH} characters."
    PASSWORD_LONG = f"Choose a password of at most {PASSWORD_MAX_LENGTH} characters."
    NAME_MISSING = "Enter your name."


class PeopleError(Exception):
    def __init__(self, problem: SignUpProblem) -> None:
        self.problem = problem
        super().__init__(problem.value)


def normalise_email(email: str) -> str:
    return email.strip().lower()


def check_email(email: str) -> str:
    value = normalise_email(email)
    local, at, domain = value.rpartition("@")
    if (not at or not local or "." not in domain or len(value) > EMAIL_MAX_LENGTH
            or any(c.isspace() or ord(c) < 0x20 for c in value)):
        raise PeopleError(SignUpProblem.EMAIL_INVALID)
    return value


def check_password(password: str) -> None:
    if len(password) < PASSWORD_MIN_LENGTH:
        raise PeopleError(SignUpProblem.PASSWORD_SHORT)
    if len(password) > PASSWORD_MAX_LENGTH:
        raise PeopleError(SignUpProblem.PASSWORD_LONG)


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_HASHER.hash, password)


def _verify(stored: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(stored or _DUMMY_HASH, password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _row_person(row: object) -> Person:
    return Person(row.id, row.email, row.display_name)  # type: ignore[attr-defined]


class PersonStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def create(self, email: str, display_name: str, password: str | None, *, at: datetime) -> Person:
        """A new account; ``password`` None makes one that cannot sign in until a password is set."""
        address = check_email(email)
        name = display_name.strip()[:NAME_MAX_LENGTH]
        if not name:
            raise PeopleError(SignUpProblem.NAME_MISSING)
        hashed = None
        if password is not None:
            check_password(password)
            hashed = await hash_password(password)
        p = schema.persons

        def insert(conn: Connection) -> int:
            return int(conn.execute(
                p.insert().values(email=address, display_name=name, created_at=at, password_hash=hashed)
                .returning(p.c.id)
            ).scalar_one())

        try:
            person_id = await self.store.run(insert)
        except IntegrityError as exc:
            raise PeopleError(SignUpProblem.EMAIL_TAKEN) from exc
        return Person(person_id, address, name)

    async def set_password(self, person_id: int, password: str) -> None:
        check_password(password)
        hashed = await hash_password(password)
        p = schema.persons
        await self.store.run(lambda conn: conn.execute(update(p).where(p.c.id == person_id).values(password_hash=hashed)))

    async def authenticate(self, email: str, password: str) -> Person | None:
        """The person if the password is theirs; None otherwise, at the same cost either way
        (an unknown address, an account without a password, or an over-long password verify
        against the dummy hash)."""
        p = schema.persons
        address = normalise_email(email)
        row = await self.store.read(lambda conn: conn.execute(select(p).where(p.c.email == address)).first())
        stored = row.password_hash if row is not None and len(password) <= PASSWORD_MAX_LENGTH else None
        ok = await asyncio.to_thread(_verify, stored, password[:PASSWORD_MAX_LENGTH])
        return _row_person(row) if ok and row is not None else None

    async def by_id(self, person_id: int) -> Person | None:
        return await self.store.read(lambda conn: person_in(conn, person_id))

    async def by_email(self, email: str) -> Person | None:
        p = schema.persons
        address = normalise_email(email)
        row = await self.store.read(lambda conn: conn.execute(select(p).where(p.c.email == address)).first())
        return _row_person(row) if row is not None else None


def person_in(conn: Connection, person_id: int) -> Person | None:
    p = schema.persons
    row = conn.execute(select(p.c.id, p.c.email, p.c.display_name).where(p.c.id == person_id)).first()
    return _row_person(row) if row is not None else None
