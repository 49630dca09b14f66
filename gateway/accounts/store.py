"""The accounts and the lockout counts in the database (``Store.run`` / ``Store.read`` only).

Each operation is one transaction of fixed statements. The lockout update is a
read-modify-write of one row: the row is made to exist first (insert, ignoring
a duplicate) and then read ``FOR UPDATE``, so on PostgreSQL two nodes counting
failures of one address at once take turns on that row instead of losing a
count; SQLite's ``BEGIN IMMEDIATE`` already serialises writers (and SQLAlchemy
renders no FOR UPDATE there). One code path for both.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, bindparam, delete, select, update
from sqlalchemy.exc import IntegrityError

from gateway.store import Store, schema
from gateway.store.dialects import insert_ignoring_duplicates
from gateway.store.lookups import normalise_domain

from .lockout import FailureCount, LockoutPolicy, after_failure
from .schema import MAX_NAME, accounts, auth_lockouts

# A login an administrator types and an EHR stores: letters, digits and . _ - @ +
# (so an address works as a name too); compared in lower case.
_NAME = re.compile(rf"[a-z0-9][a-z0-9._@+-]{{0,{MAX_NAME - 1}}}")


class AccountProblem(enum.Enum):
    BAD_NAME = "bad-name"
    EXISTS = "exists"
    NO_SUCH_ACCOUNT = "no-such-account"
    NO_SUCH_DOMAIN = "no-such-domain"


class AccountError(Exception):
    def __init__(self, problem: AccountProblem, detail: str) -> None:
        self.problem = problem
        self.detail = detail
        super().__init__(detail)


def account_name(text: str) -> str:
    """The stored form of a name (lower case), or AccountError(BAD_NAME)."""
    name = text.strip().lower()
    if not _NAME.fullmatch(name):
        raise AccountError(
            AccountProblem.BAD_NAME,
            f"{text!r} is not an account name (1-{MAX_NAME} of a-z 0-9 . _ @ + -, starting with a letter or digit)",
        )
    return name


@dataclass(frozen=True, slots=True)
class Account:
    name: str
    domain: str
    created_at: datetime
    password_changed_at: datetime


@dataclass(frozen=True, slots=True)
class StoredLogin:
    """What checking a login needs: the account's name and domain, and its hash (never shown)."""

    name: str
    domain: str
    password_hash: str = field(repr=False)


_ACCOUNT = (
    select(accounts.c.name, schema.domains.c.name.label("domain"), accounts.c.created_at,
           accounts.c.password_changed_at, accounts.c.password_hash)
    .join(schema.domains, schema.domains.c.id == accounts.c.domain_id)
)


_ACCOUNT_BY_NAME = _ACCOUNT.where(accounts.c.name == bindparam("login"))
"""Built once: AUTH and each submission ask it, and building the join per call was most of its cost."""


def _account_by_name(conn: Connection, name: str) -> StoredLogin | None:
    row = conn.execute(_ACCOUNT_BY_NAME, {"login": name}).first()
    return StoredLogin(row.name, row.domain, row.password_hash) if row is not None else None


class Accounts:
    """The ``accounts`` table: built once over the shared ``Store``."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def add(self, name: str, domain: str, password_hash: str, *, at: datetime) -> Account:
        name = account_name(name)
        domain = normalise_domain(domain)

        def work(conn: Connection) -> Account:
            did = conn.scalar(select(schema.domains.c.id).where(schema.domains.c.name == domain))
            if did is None:
                raise AccountError(AccountProblem.NO_SUCH_DOMAIN, f"{domain} is not a local domain")
            conn.execute(accounts.insert().values(name=name, domain_id=did, password_hash=password_hash,
                                                  created_at=at, password_changed_at=at))
            return Account(name, domain, at, at)

        try:
            return await self._store.run(work)
        except IntegrityError:
            raise AccountError(AccountProblem.EXISTS, f"an account named {name} already exists") from None

    async def all(self) -> list[Account]:
        rows = await self._store.read(lambda conn: conn.execute(_ACCOUNT.order_by(accounts.c.name)).all())
        return [Account(r.name, r.domain, r.created_at, r.password_changed_at) for r in rows]

    async def remove(self, name: str) -> None:
        name = account_name(name)
        removed = await self._store.run(lambda conn: conn.execute(delete(accounts).where(accounts.c.name == name)))
        if removed.rowcount != 1:
            raise AccountError(AccountProblem.NO_SUCH_ACCOUNT, f"no account named {name}")

    async def set_password(self, name: str, password_hash: str, *, at: datetime) -> None:
        name = account_name(name)
        changed = await self._store.run(lambda conn: conn.execute(
            update(accounts).where(accounts.c.name == name).values(password_hash=password_hash,
                                                                   password_changed_at=at)))
        if changed.rowcount != 1:
            raise AccountError(AccountProblem.NO_SUCH_ACCOUNT, f"no account named {name}")

    async def login(self, name: str) -> StoredLogin | None:
        """The account a login names (None for an unknown or malformed name)."""
        try:
            name = account_name(name)
        except AccountError:
            return None
        return await self._store.read(lambda conn: _account_by_name(conn, name))

    async def domain_of(self, name: str) -> str | None:
        """The account's domain, or None once it was removed."""
        found = await self.login(name)
        return found.domain if found is not None else None


class Lockouts:
    """The ``auth_lockouts`` table under one ``LockoutPolicy``."""

    def __init__(self, store: Store, policy: LockoutPolicy) -> None:
        self._store = store
        self.policy = policy
        self._insert = insert_ignoring_duplicates(store.dialect, auth_lockouts)

    async def state(self, client: str) -> FailureCount | None:
        return await self._store.read(lambda conn: _state(conn, client, lock=False))

    async def locked(self, client: str, at: datetime) -> bool:
        found = await self.state(client)
        return found is not None and found.locked(at)

    async def failed(self, client: str, at: datetime) -> FailureCount:
        """Count one failure (the rule: ``lockout.after_failure``); the new count."""
        policy = self.policy

        def work(conn: Connection) -> FailureCount:
            # purge what no longer counts, so the table stays as small as the recent failures
            conn.execute(delete(auth_lockouts).where(auth_lockouts.c.updated_at < at - policy.forget_after))
            conn.execute(self._insert.values(client=client, failures=0, window_start=at, locked_until=None,
                                             updated_at=at))
            # (a row made just now holds no failure and starts its window now: the same as none)
            now = after_failure(_state(conn, client, lock=True), at, policy)
            conn.execute(update(auth_lockouts).where(auth_lockouts.c.client == client).values(
                failures=now.failures, window_start=now.window_start, locked_until=now.locked_until, updated_at=at))
            return now

        return await self._store.run(work)

    async def succeeded(self, client: str) -> None:
        await self._store.run(lambda conn: conn.execute(delete(auth_lockouts).where(auth_lockouts.c.client == client)))


def _state(conn: Connection, client: str, *, lock: bool) -> FailureCount | None:
    query = select(auth_lockouts.c.failures, auth_lockouts.c.window_start, auth_lockouts.c.locked_until).where(
        auth_lockouts.c.client == client)
    row = conn.execute(query.with_for_update() if lock else query).first()
    return FailureCount(row.failures, row.window_start, row.locked_until) if row is not None else None
