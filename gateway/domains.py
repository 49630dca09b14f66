"""Our local domains and their keys: what we sign with, decrypt with and publish.

A domain has an org-bound certificate (dNSName = the domain, Direct item 12)
and may have address-bound ones (rfc822Name, or the legacy emailAddress in the
subject). Adding a second key for a domain or address is a rollover: every key
stays in the key ring for decryption, and ``signing_pair`` picks the newest
valid one. Key usage decides what a certificate is used for (Direct item 13):
digitalSignature to sign, keyEncipherment to be encrypted to.

Private keys are stored in the database as unencrypted PKCS#8 PEM, so every
node of a PostgreSQL deployment sees the same keys; docs/storage.md explains
the choice and what it asks of the database's protection.
"""

from __future__ import annotations

import enum
import hashlib
import stat
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from sqlalchemy import bindparam, delete, select
from sqlalchemy.exc import IntegrityError

from gateway.core.certs import CertRef, KeyPair, load_private_key
from gateway.store import Store, StoreError, StoreProblem, schema
from gateway.store.dialects import insert_ignoring_duplicates
from gateway.store.lookups import domain_id, normalise_domain


class DomainProblem(enum.Enum):
    NOT_BOUND = "not-bound"
    KEY_FILE_EXPOSED = "key-file-exposed"
    KEY_FILE_UNREADABLE = "key-file-unreadable"
    DUPLICATE = "duplicate"
    UNUSABLE_CERTIFICATE = "unusable-certificate"


class DomainError(Exception):
    def __init__(self, problem: DomainProblem, detail: str) -> None:
        self.problem = problem
        self.detail = detail
        super().__init__(detail)


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: int
    domain: str
    address: str | None
    certificate: CertRef
    can_sign: bool
    can_encrypt: bool
    added_at: datetime


@dataclass(frozen=True, slots=True)
class DomainRecord:
    name: str
    created_at: datetime
    keys: tuple[KeyRecord, ...]


def check_key_file(path: Path) -> None:
    """Refuse a private key file others can read: a key that leaked on disk
    before import is not one to trust (the same rule as ssh's private keys)."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise DomainError(DomainProblem.KEY_FILE_UNREADABLE, f"cannot read {path}: {exc.strerror}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise DomainError(
            DomainProblem.KEY_FILE_EXPOSED,
            f"{path} is readable by group or others (mode {stat.S_IMODE(mode):04o}); "
            f"run `chmod 600 {path}` and, if others could read it, replace the key",
        )


def check_binding(cert: CertRef, domain: str, address: str | None = None) -> None:
    """Direct item 12: a domain certificate names the domain in dNSName; an
    address certificate names the address in rfc822Name or emailAddress."""
    if address is None:
        if domain not in cert.dns_names:
            found = ", ".join(cert.dns_names) or "no dNSName"
            raise DomainError(
                DomainProblem.NOT_BOUND,
                f"the certificate {cert.subject} is not bound to {domain}: its subjectAltName has {found}",
            )
        return
    if address not in cert.email_addresses:
        found = ", ".join(cert.email_addresses) or "no address"
        raise DomainError(
            DomainProblem.NOT_BOUND,
            f"the certificate {cert.subject} is not bound to {address}: it names {found}",
        )


def split_address(address: str) -> tuple[str, str]:
    local, sep, domain = address.strip().lower().rpartition("@")
    if not sep or not local:
        raise ValueError(f"{address!r} is not an address (local@domain)")
    return local, normalise_domain(domain)


def _key_pem(pair: KeyPair) -> bytes:
    return pair.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


_KEYS = (
    select(schema.keys, schema.domains.c.name.label("domain"))
    .join(schema.domains, schema.domains.c.id == schema.keys.c.domain_id)
)

# asked for every message: fixed statements, compiled once
_KEY_RING = (
    _KEYS.where(schema.domains.c.name == bindparam("domain"))
    .where(schema.keys.c.can_encrypt.is_(True))
    .order_by(schema.keys.c.not_before.desc(), schema.keys.c.id.desc())
)
_NAMES = select(schema.domains.c.name)


PARSED_KEYS_HELD = 1024
"""Parsed key pairs kept per ``LocalDomains``: more than any deployment's keys, so the bound only
stops growth from rollovers over years."""


class _ParsedKeys:
    """Loading an RSA private key checks it (tens of milliseconds of CPU: more than opening a
    message), so each stored key is parsed once, keyed by its exact stored bytes; the key
    ring is still read from the database on every call, so a rollover shows at once."""

    def __init__(self) -> None:
        self._pairs: dict[bytes, KeyPair] = {}

    def pair(self, row: object) -> KeyPair:
        r = row._mapping  # type: ignore[attr-defined]
        key_pem, cert_der = bytes(r["key_pem"]), bytes(r["cert_der"])
        digest = hashlib.sha256(len(key_pem).to_bytes(4, "big") + key_pem + cert_der).digest()
        found = self._pairs.get(digest)
        if found is None:
            if len(self._pairs) >= PARSED_KEYS_HELD:
                self._pairs.clear()
            found = self._pairs[digest] = KeyPair(load_private_key(key_pem), CertRef(cert_der))
        return found


class LocalDomains:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._parsed = _ParsedKeys()

    async def create(self, domain: str, *, at: datetime) -> bool:
        """Make sure the domain exists (keys come later); True if it is new."""
        name = normalise_domain(domain)
        insert = insert_ignoring_duplicates(self._store.dialect, schema.domains)
        async with self._store.begin() as conn:
            # one statement, so two administrators adding it at once both succeed
            created = await conn.execute(
                insert.values(name=name, created_at=at).returning(schema.domains.c.id)
            )
            return created.first() is not None

    async def add_key(self, domain: str, pair: KeyPair, *, at: datetime, address: str | None = None) -> KeyRecord:
        """Add a key (creating the domain if needed); a second key is a rollover."""
        name = normalise_domain(domain)
        if address is not None:
            address = address.strip().lower()
            _, addr_domain = split_address(address)
            if addr_domain != name:
                raise DomainError(DomainProblem.NOT_BOUND, f"{address} is not an address of {name}")
        try:
            pair.cert.x509.extensions  # noqa: B018 -- parsed lazily; a damaged one fails here, typed
        except ValueError as exc:
            raise DomainError(DomainProblem.UNUSABLE_CERTIFICATE, f"the certificate does not parse: {exc}") from exc
        check_binding(pair.cert, name, address)
        await self.create(name, at=at)
        cert = pair.cert
        try:
            async with self._store.begin() as conn:
                did = await domain_id(conn, name)
                result = await conn.execute(
                    schema.keys.insert().values(
                        domain_id=did, address=address, cert_der=cert.der, sha256=cert.sha256, key_pem=_key_pem(pair),
                        can_sign=cert.can_sign, can_encrypt=cert.can_encrypt, not_before=cert.not_before,
                        not_after=cert.not_after, added_at=at,
                    )
                )
                assert result.inserted_primary_key is not None
                key_id = int(result.inserted_primary_key[0])
        except IntegrityError:
            raise DomainError(DomainProblem.DUPLICATE, f"{cert.subject} is already a key of {name}") from None
        return KeyRecord(key_id, name, address, cert, cert.can_sign, cert.can_encrypt, at)

    async def names(self) -> frozenset[str]:
        """The local domains' names (one light query: the SMTP edge asks at every RCPT)."""
        return await self._store.read(lambda conn: frozenset(conn.scalars(_NAMES).all()))

    async def all(self) -> list[DomainRecord]:
        async with self._store.engine.connect() as conn:
            domains = (await conn.execute(select(schema.domains).order_by(schema.domains.c.name))).all()
            keys = (await conn.execute(_KEYS.order_by(schema.keys.c.id))).all()
        out = []
        for d in domains:
            records = tuple(
                KeyRecord(k.id, k.domain, k.address, CertRef(bytes(k.cert_der)), k.can_sign, k.can_encrypt, k.added_at)
                for k in keys
                if k.domain == d.name
            )
            out.append(DomainRecord(d.name, d.created_at, records))
        return out

    async def remove(self, domain: str) -> None:
        """The domain, its keys, anchors and bundles (foreign keys cascade)."""
        async with self._store.begin() as conn:
            did = await domain_id(conn, domain)
            await conn.execute(delete(schema.domains).where(schema.domains.c.id == did))

    async def key_ring(self, domain: str) -> list[KeyPair]:
        """Every decryption key of the domain and its addresses, expired and
        rolled-over ones included: mail encrypted to a certificate we rolled
        away from must still open. Signing-only certificates are left out
        (no sender encrypts to them, Direct item 13)."""
        name = normalise_domain(domain)
        rows = await self._store.read(lambda conn: conn.execute(_KEY_RING, {"domain": name}).all())
        return [self._parsed.pair(r) for r in rows]

    async def signing_pair(self, address: str, at: datetime) -> KeyPair | None:
        """The key to sign mail from ``address`` at ``at``: its own certificate
        before the domain's, valid at ``at``, allowed to sign, newest first."""
        address = address.strip().lower()
        _, domain = split_address(address)
        query = (
            _KEYS.where(schema.domains.c.name == domain)
            .where((schema.keys.c.address == address) | schema.keys.c.address.is_(None))
            .where(schema.keys.c.can_sign.is_(True))
            .where(schema.keys.c.not_before <= at)
            .where(schema.keys.c.not_after >= at)
        )
        async with self._store.engine.connect() as conn:
            rows = list((await conn.execute(query)).all())
        rows.sort(key=lambda r: (r.address is not None, r.not_before, r.id), reverse=True)
        return self._parsed.pair(rows[0]) if rows else None

    async def published_certificates(
        self, domain: str, *, at: datetime | None = None
    ) -> list[tuple[str, CertRef]]:
        """(DNS owner name, certificate) for CERT records (Direct item 16):
        ``local.domain`` for an address-bound certificate, ``domain`` for the
        org-bound one, newest first within each name. Only certificates a
        sender can encrypt to: discovery exists to find those (a signing
        certificate travels in every signature), and a published signing-only
        certificate would only be fetched and discarded (Direct item 20).
        With ``at``, only those valid then."""
        query = (
            _KEYS.where(schema.domains.c.name == normalise_domain(domain))
            .where(schema.keys.c.can_encrypt.is_(True))
            .order_by(schema.keys.c.address, schema.keys.c.not_before.desc(), schema.keys.c.id.desc())
        )
        if at is not None:
            query = query.where(schema.keys.c.not_before <= at).where(schema.keys.c.not_after >= at)
        async with self._store.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        out = []
        for r in rows:
            owner = r.domain if r.address is None else f"{split_address(r.address)[0]}.{r.domain}"
            out.append((owner, CertRef(bytes(r.cert_der))))
        return out


__all__ = [
    "DomainError", "DomainProblem", "DomainRecord", "KeyRecord", "LocalDomains", "StoreError", "StoreProblem",
    "check_binding", "check_key_file", "split_address",
]
