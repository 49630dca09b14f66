"""SMTP AUTH against the accounts: the ``Authenticator`` the submission edge asks.

In order: a locked-out client address is refused at once (no password check,
no argon2 work for an attacker, and the lock is not extended); otherwise the
password is checked against the account's argon2 hash, in a thread and at
most ``MAX_CONCURRENT_CHECKS`` at a time (each check takes tens of
milliseconds of CPU and 64 MiB); an unknown account is checked against a
throwaway hash so that it takes as long as a wrong password (no account
enumeration by timing). A failure is counted for the address (which may lock
it); a success clears its count.

The edge never sees the database: it gets ``Authenticated(name)`` or an
``AuthRefusal``. Passwords are never logged; names of failed logins are, as
``login`` (the operator needs to see which EHR is misconfigured).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from datetime import datetime

import structlog
from sqlalchemy.exc import SQLAlchemyError

from gateway.smtp.interface import Authenticated, AuthRefusal, Credentials
from gateway.store import StoreError

from .lockout import client_key
from .passwords import hash_password, needs_rehash, verify_password
from .store import Accounts, Lockouts

log = structlog.get_logger("directgw.accounts")

MAX_CONCURRENT_CHECKS = 2
"""Password checks running at once per process: one per core of the 2-core
machines this runs on; more would only queue in the CPU and multiply the 64 MiB
each argon2 check holds. Further logins wait their turn."""

MAX_LOGGED_LOGIN = 64


class AccountAuthenticator:
    def __init__(self, accounts: Accounts, lockouts: Lockouts, clock: Callable[[], datetime]) -> None:
        self._accounts = accounts
        self._lockouts = lockouts
        self._clock = clock
        self._checks = asyncio.Semaphore(MAX_CONCURRENT_CHECKS)
        self._decoy: str | None = None

    async def authenticate(self, peer: str, credentials: Credentials) -> Authenticated | AuthRefusal:
        at = self._clock()
        client = client_key(peer)
        login = credentials.login[:MAX_LOGGED_LOGIN]
        try:
            if await self._lockouts.locked(client, at):
                log.info("auth.locked-out", peer=peer, login=login)
                return AuthRefusal.LOCKED_OUT
            stored = await self._accounts.login(credentials.login)
            encoded = stored.password_hash if stored is not None else await self._decoy_hash()
            async with self._checks:
                matches = await asyncio.to_thread(verify_password, encoded, credentials.password)
            if stored is not None and matches:
                await self._lockouts.succeeded(client)
                if await asyncio.to_thread(needs_rehash, stored.password_hash):
                    await self._rehash(stored.name, credentials.password, at)
                log.info("auth.accepted", peer=peer, account=stored.name)
                return Authenticated(stored.name)
            count = await self._lockouts.failed(client, at)
        except (StoreError, SQLAlchemyError, OSError) as exc:
            log.error("auth.unavailable", peer=peer, error=repr(exc))
            return AuthRefusal.UNAVAILABLE
        if count.locked(at):
            log.warning("auth.lockout", peer=peer, client=client, login=login,
                        until=count.locked_until.isoformat() if count.locked_until else None)
        else:
            log.info("auth.refused", peer=peer, login=login, known=stored is not None, failures=count.failures)
        return AuthRefusal.INVALID

    async def _decoy_hash(self) -> str:
        if self._decoy is None:
            self._decoy = await asyncio.to_thread(hash_password, secrets.token_urlsafe(16))
        return self._decoy

    async def _rehash(self, name: str, password: bytes, at: datetime) -> None:
        try:
            text = password.decode("utf-8")
        except UnicodeDecodeError:
            return  # it matched as bytes; a hash of another text would not: keep the old one
        async with self._checks:
            encoded = await asyncio.to_thread(hash_password, text)
        await self._accounts.set_password(name, encoded, at=at)
        log.info("auth.rehashed", account=name)
