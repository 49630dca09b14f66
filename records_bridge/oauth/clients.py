"""OAuth clients: registration by the administrator (``directgw clients add``)
or by a native app's install (RFC 7591 instances of a public master), redirect
URI rules (exact match; RFC 8252 loopback with any port), and client secrets.

Client secrets are 256-bit random values shown once; the database keeps
``HMAC-SHA256(bridge key, secret)``. A memory-hard hash (argon2) protects
*low-entropy* secrets against offline guessing; these cannot be guessed, so
its cost would buy nothing and would add tens of milliseconds of CPU to every
token request. The HMAC key (derived from the bridge key file, not in the
database) means a stolen database alone does not even let one test a
candidate secret.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import Connection, and_, delete, exists, select, update
from sqlalchemy.engine import Row

from gateway.store import Store
from records_bridge import access

from . import schema as s
from . import scopes as sc

UNUSED_INSTANCE_LIFETIME = timedelta(hours=24)
"""Spec section 5: an RFC 7591 instance nobody authorized is deleted after 24 h."""
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1"})
"""RFC 8252 8.3: loopback IP literals; "localhost" is NOT RECOMMENDED (it may resolve elsewhere)."""
MAX_REDIRECT_URI = 2000
MAX_NAME = 200


class ClientType(enum.Enum):
    CONFIDENTIAL = "confidential"
    PUBLIC = "public"


class AuthAction(enum.Enum):
    NONE = "none"
    REAUTH_REQUIRED = "reauth_required"
    REAUTH_NOT_POSSIBLE = "reauth_not_possible"


class ClientError(ValueError):
    """A client definition that cannot be registered: says which part and why."""


@dataclass(frozen=True, slots=True)
class Client:
    pk: int
    client_id: str
    name: str
    type: ClientType
    redirect_uris: tuple[str, ...]
    allowed_scopes: frozenset[str]
    required_scopes: frozenset[str]
    optional_scopes: frozenset[str]
    multi_record: bool
    offline_allowed: bool
    connect_enabled: bool
    writes_to_inbox: bool
    created_at: datetime
    master_id: str | None = None
    """For an RFC 7591 instance: the master's client_id (whose settings these are)."""
    secret_hash: str | None = field(default=None, repr=False)

    @property
    def public(self) -> bool:
        return self.type is ClientType.PUBLIC

    def redirect_allowed(self, uri: str) -> bool:
        return any(redirect_matches(registered, uri) for registered in self.redirect_uris)


@dataclass(frozen=True, slots=True)
class NewClient:
    client: Client
    secret: str | None = field(repr=False)
    """Shown once (confidential clients); never stored."""


def secret_hash(key: bytes, secret: str) -> str:
    return hmac.new(key, secret.encode(), hashlib.sha256).hexdigest()


def check_redirect_uri(uri: str) -> str:
    """A redirect URI we accept at registration (RFC 6749 3.1.2, RFC 8252 7), or ClientError."""
    if len(uri) > MAX_REDIRECT_URI or any(ord(c) < 0x21 or c == "\\" for c in uri):
        raise ClientError(f"redirect URI {uri!r}: too long or contains spaces or control characters")
    parts = urlsplit(uri)
    if parts.fragment or "#" in uri:
        raise ClientError(f"redirect URI {uri}: must not contain a fragment (RFC 6749 3.1.2)")
    if parts.scheme == "https" and parts.hostname:
        return uri
    if parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS:
        return uri
    if parts.scheme == "http":
        raise ClientError(f"redirect URI {uri}: plain http only for loopback (http://127.0.0.1/ or http://[::1]/, RFC 8252 7.3)")
    if parts.scheme and "." in parts.scheme and not parts.netloc:
        return uri  # private-use scheme in reverse-domain form, e.g. com.example.app:/oauth2redirect (RFC 8252 7.1)
    raise ClientError(f"redirect URI {uri}: expected https://, http://127.0.0.1 loopback, or a reverse-domain "
                      "private-use scheme such as com.example.app:/callback")


def redirect_matches(registered: str, given: str) -> bool:
    """Exact string match, except that a loopback URI matches on any port (RFC 8252 7.3)."""
    if registered == given:
        return True
    r, g = urlsplit(registered), urlsplit(given)
    if r.scheme != "http" or g.scheme != "http" or r.hostname not in LOOPBACK_HOSTS or g.hostname != r.hostname:
        return False
    try:
        g.port  # noqa: B018 -- raises on a malformed port
    except ValueError:
        return False
    return (r.path or "/") == (g.path or "/") and r.query == g.query and not g.fragment and g.username is None


@dataclass(frozen=True, slots=True)
class ClientSpec:
    """What ``clients add`` asks for; ``build`` derives the stored settings."""

    name: str
    redirect_uris: tuple[str, ...]
    public: bool = False
    scopes: tuple[str, ...] = ()
    required_scopes: tuple[str, ...] | None = None
    optional_scopes: tuple[str, ...] = ()
    multi_record: bool = False
    offline: bool = False
    connect: bool = False
    writes_to_inbox: bool = True


@dataclass(frozen=True, slots=True)
class _Settings:
    allowed: frozenset[str]
    required: frozenset[str]
    optional: frozenset[str]
    offline: bool
    connect: bool


def _derive(spec: ClientSpec) -> _Settings:
    given = set(spec.scopes) | set(spec.required_scopes or ()) | set(spec.optional_scopes)
    if spec.offline:
        given.add(sc.OFFLINE)
    if spec.connect:
        given.add(sc.CONNECT)
    bad = sc.invalid(given)
    if bad:
        raise ClientError(f"not a scope: {', '.join(sorted(bad))} (records.<type>.<crud>, patient/DocumentReference.rs, "
                          "offline_access, connect, packages, inbound.messages, ...)")
    if spec.public and given & sc.PUBLIC_FORBIDDEN:
        raise ClientError(f"a public client may not have {', '.join(sorted(given & sc.PUBLIC_FORBIDDEN))} (spec section 5)")
    person_scopes = given - sc.CLIENT_SCOPES - {sc.OFFLINE}
    for name, listed in (("required", spec.required_scopes or ()), ("optional", spec.optional_scopes)):
        odd = set(listed) & (sc.CLIENT_SCOPES | {sc.OFFLINE})
        if odd:
            raise ClientError(f"{', '.join(sorted(odd))} cannot be {name}: it is not a person's consent to give")
    required = frozenset(spec.required_scopes) if spec.required_scopes is not None else frozenset(
        person_scopes - set(spec.optional_scopes))
    optional = frozenset(spec.optional_scopes) - required
    return _Settings(frozenset(given), required, optional, sc.OFFLINE in given, sc.CONNECT in given)


def _row_client(row: Row[tuple[object, ...]], uris: Iterable[str], master: str | None) -> Client:
    m = row._mapping
    return Client(
        pk=m["id"], client_id=m["client_id"], name=m["name"], type=ClientType(m["type"]),
        redirect_uris=tuple(sorted(uris)),
        allowed_scopes=frozenset(sc.split(m["allowed_scopes"])),
        required_scopes=frozenset(sc.split(m["required_scopes"])),
        optional_scopes=frozenset(sc.split(m["optional_scopes"])),
        multi_record=m["multi_record"], offline_allowed=m["offline_allowed"], connect_enabled=m["connect_enabled"],
        writes_to_inbox=m["writes_to_inbox"], created_at=m["created_at"], master_id=master,
        secret_hash=m["secret_hash"],
    )


def _uris_in(conn: Connection, pk: int) -> list[str]:
    u = s.oauth_redirect_uris
    return list(conn.execute(select(u.c.uri).where(u.c.client_pk == pk)).scalars())


def client_in(conn: Connection, client_id: str) -> Client | None:
    """The client, an RFC 7591 instance carrying its master's settings (scopes, flags, redirect URIs)."""
    c = s.oauth_clients
    row = conn.execute(select(c).where(c.c.client_id == client_id)).first()
    if row is None:
        return None
    if row.master_id is None:
        return _row_client(row, _uris_in(conn, row.id), None)
    master = conn.execute(select(c).where(c.c.id == row.master_id)).first()
    if master is None:
        return None
    inherited = _row_client(master, _uris_in(conn, master.id), None)
    return Client(
        pk=row.id, client_id=row.client_id, name=row.name, type=ClientType.PUBLIC,
        redirect_uris=inherited.redirect_uris, allowed_scopes=inherited.allowed_scopes - sc.PUBLIC_FORBIDDEN,
        required_scopes=inherited.required_scopes, optional_scopes=inherited.optional_scopes,
        multi_record=inherited.multi_record, offline_allowed=inherited.offline_allowed, connect_enabled=False,
        writes_to_inbox=inherited.writes_to_inbox, created_at=row.created_at, master_id=master.client_id,
    )


def client_by_pk_in(conn: Connection, pk: int) -> Client | None:
    c = s.oauth_clients
    client_id = conn.execute(select(c.c.client_id).where(c.c.id == pk)).scalar_one_or_none()
    return client_in(conn, client_id) if client_id is not None else None


def new_client_id() -> str:
    """A fresh client id: 128 random bits, URL-safe, never starting with "-", which a
    command line would read as an option (`directgw clients remove -x...` failed so)."""
    while (value := secrets.token_urlsafe(16)).startswith("-"):
        pass
    return value


class ClientStore:
    def __init__(self, store: Store, secret_key: bytes) -> None:
        self.store = store
        self._key = secret_key

    async def add(self, spec: ClientSpec, *, at: datetime) -> NewClient:
        name = spec.name.strip()
        if not name or len(name) > MAX_NAME:
            raise ClientError(f"a client's name is 1..{MAX_NAME} characters")
        if not spec.redirect_uris and not (set(spec.scopes) and set(spec.scopes) <= sc.CLIENT_SCOPES):
            raise ClientError("give at least one --redirect-uri (only a client-credentials-only client has none)")
        uris = tuple(dict.fromkeys(check_redirect_uri(u) for u in spec.redirect_uris))
        derived = _derive(spec)
        secret = None if spec.public else secrets.token_urlsafe(32)
        client_id = new_client_id()
        c = s.oauth_clients

        def insert(conn: Connection) -> Client:
            pk = conn.execute(c.insert().values(
                client_id=client_id, name=name,
                type=(ClientType.PUBLIC if spec.public else ClientType.CONFIDENTIAL).value,
                secret_hash=secret_hash(self._key, secret) if secret else None,
                allowed_scopes=sc.join(derived.allowed), required_scopes=sc.join(derived.required),
                optional_scopes=sc.join(derived.optional), multi_record=spec.multi_record,
                offline_allowed=derived.offline, connect_enabled=derived.connect,
                writes_to_inbox=spec.writes_to_inbox, master_id=None, created_at=at,
            ).returning(c.c.id)).scalar_one()
            if uris:
                conn.execute(s.oauth_redirect_uris.insert(), [{"client_pk": pk, "uri": u} for u in uris])
            client = client_in(conn, client_id)
            assert client is not None
            return client

        return NewClient(await self.store.run(insert), secret)

    async def get(self, client_id: str) -> Client | None:
        return await self.store.read(lambda conn: client_in(conn, client_id))

    async def list(self) -> list[Client]:
        c = s.oauth_clients

        def read(conn: Connection) -> list[Client]:
            ids = conn.execute(select(c.c.client_id).where(c.c.master_id.is_(None)).order_by(c.c.id)).scalars().all()
            return [client for i in ids if (client := client_in(conn, i)) is not None]

        return await self.store.read(read)

    async def remove(self, client_id: str) -> bool:
        """Remove a client with its instances, grants and tokens (cascade); False if unknown."""
        c = s.oauth_clients
        return bool(await self.store.run(
            lambda conn: conn.execute(delete(c).where(c.c.client_id == client_id)).rowcount
        ))

    def authenticate(self, client: Client, secret: str) -> bool:
        if client.secret_hash is None:
            return False
        return hmac.compare_digest(client.secret_hash, secret_hash(self._key, secret))

    async def set_scopes(self, client_id: str, *, required: Iterable[str] | None = None,
                         optional: Iterable[str] | None = None, at: datetime) -> Client:
        """Change a client's required or optional scopes. Grown required scopes mark the
        grants that lack them ``reauth_required`` (spec section 2, "Rule changes"):
        their tokens keep working for what was granted until the person authorizes again."""
        c, g = s.oauth_clients, s.grants

        def change(conn: Connection) -> Client:
            client = client_in(conn, client_id)
            if client is None or client.master_id is not None:
                raise ClientError(f"no client {client_id}")
            new_required = frozenset(required) if required is not None else client.required_scopes
            new_optional = (frozenset(optional) if optional is not None else client.optional_scopes) - new_required
            bad = sc.invalid(new_required | new_optional)
            if bad:
                raise ClientError(f"not a scope: {', '.join(sorted(bad))}")
            allowed = client.allowed_scopes | new_required | new_optional
            if client.public and allowed & sc.PUBLIC_FORBIDDEN:
                raise ClientError("a public client may not have connect or packages")
            conn.execute(update(c).where(c.c.id == client.pk).values(
                required_scopes=sc.join(new_required), optional_scopes=sc.join(new_optional),
                allowed_scopes=sc.join(allowed)))
            if not new_required <= client.required_scopes:
                family = [client.pk, *conn.execute(select(c.c.id).where(c.c.master_id == client.pk)).scalars()]
                for grant in conn.execute(select(g.c.id, g.c.scopes, g.c.person_id, g.c.record_id).where(
                        g.c.client_pk.in_(family), g.c.revoked_at.is_(None))).all():
                    if not new_required <= set(sc.split(grant.scopes)):
                        action = _reauth(new_required, access.role_in(conn, grant.person_id, grant.record_id))
                        conn.execute(update(g).where(g.c.id == grant.id).values(auth_action=action.value))
            updated = client_in(conn, client_id)
            assert updated is not None
            return updated

        return await self.store.run(change)

    async def register_instance(self, master_id: str, name: str, *, at: datetime) -> Client:
        """An RFC 7591 per-install instance of the public client ``master_id``."""
        c = s.oauth_clients
        instance_id = new_client_id()

        def insert(conn: Connection) -> Client:
            purge_instances_in(conn, at)
            master = client_in(conn, master_id)
            if master is None or master.master_id is not None:
                raise ClientError(f"software_id {master_id!r} is not a registered application")
            if not master.public:
                raise ClientError("per-install registration is for public (native) applications")
            conn.execute(c.insert().values(
                client_id=instance_id, name=name.strip()[:MAX_NAME] or master.name, type=ClientType.PUBLIC.value,
                secret_hash=None, allowed_scopes="", required_scopes="", optional_scopes="", multi_record=False,
                offline_allowed=False, connect_enabled=False, writes_to_inbox=master.writes_to_inbox,
                master_id=master.pk, created_at=at,
            ))
            client = client_in(conn, instance_id)
            assert client is not None
            return client

        return await self.store.run(insert)


def _reauth(required: frozenset[str], role: access.Role | None) -> AuthAction:
    """Whether the person who gave the grant could give the new required scopes (HV's
    ``reauth_not_possible``: a viewer cannot give an app the right to change the record)."""
    writes = any((p := sc.parse(x)) is not None and set(p.ops) - {"r", "s"} for x in required)
    if role is None or (writes and not access.can_write(role)):
        return AuthAction.REAUTH_NOT_POSSIBLE
    return AuthAction.REAUTH_REQUIRED


def purge_instances_in(conn: Connection, at: datetime) -> int:
    """Delete RFC 7591 instances older than a day that no one authorized."""
    c, g, codes = s.oauth_clients, s.grants, s.oauth_codes
    unused = and_(
        c.c.master_id.is_not(None),
        c.c.created_at < at - UNUSED_INSTANCE_LIFETIME,
        ~exists().where(g.c.client_pk == c.c.id),
        ~exists().where(codes.c.client_pk == c.c.id),
    )
    return int(conn.execute(delete(c).where(unused)).rowcount)


__all__ = [
    "AuthAction", "Client", "ClientError", "ClientSpec", "ClientStore", "ClientType", "NewClient",
    "check_redirect_uri", "client_in", "purge_instances_in", "redirect_matches",
]
