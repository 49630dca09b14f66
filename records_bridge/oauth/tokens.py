"""Grants, token families, and the access and refresh tokens issued from them.

Tokens are 256-bit random strings (with a prefix saying what they are, so
secret scanners and logs can recognise them); the database keeps their
SHA-256. An access token lives ``ACCESS_TOKEN_LIFETIME``; a refresh token has
no absolute expiry (spec section 2: HealthVault's offline authorization never
expired) but is single-use: each refresh marks it used and issues a new pair
in the same family, and presenting a used one again revokes the family
(OAuth 2.0 Security BCP 4.14.2, refresh token rotation).

Everything here is a synchronous function over one ``Connection``, called
inside ``Store.run``/``Store.read``: each OAuth step is one transaction.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, select, update

from . import schema as s
from . import scopes as sc
from .clients import AuthAction

ACCESS_TOKEN_LIFETIME = timedelta(seconds=600)
"""Spec section 2: ``expires_in: 600``; short, because a bearer token cannot be recalled from a stolen copy."""
ACCESS_PREFIX = "rba_"
REFRESH_PREFIX = "rbr_"


class TokenKind(enum.Enum):
    ACCESS = "access"
    REFRESH = "refresh"


class Acting(enum.Enum):
    """For whom a token acts."""

    USER = "user"
    """A person, on the records of their grants (authorization code, or client credentials naming a record)."""
    CLIENT = "client"
    """The client itself (client credentials without a record)."""


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class TokenContext:
    """What a valid access token lets its bearer do."""

    client_id: str
    client_pk: int
    kind: Acting
    scopes: frozenset[str]
    person_id: int | None = None
    record_id: int | None = None
    """The record selected at authorization (SMART ``patient``), if it is still granted."""
    record_ids: frozenset[int] = frozenset()
    """Every record the token's live grants cover (several for a multi-record app)."""
    family_id: int = 0
    grant_ids: frozenset[int] = field(default=frozenset(), repr=False)

    def allows_record(self, record_id: int) -> bool:
        return record_id in self.record_ids

    def has(self, scope: str) -> bool:
        return scope in self.scopes

    def permits(self, item_type: str, op: str) -> bool:
        """Whether the scopes allow ``op`` (c, r, u, d) on items of ``item_type`` (records.oauth.scopes.permits)."""
        return sc.permits(self.scopes, item_type, op)


@dataclass(frozen=True, slots=True)
class Issued:
    access_token: str = field(repr=False)
    expires_in: int
    scopes: frozenset[str]
    refresh_token: str | None = field(default=None, repr=False)


# ------------------------------------------------------------------ grants

def grant_in(conn: Connection, client_pk: int, person_id: int, record_id: int, scopes: Iterable[str],
             *, offline: bool, at: datetime) -> int:
    """Create or renew the grant of ``client_pk`` for ``person_id`` on ``record_id``.

    Authorizing again replaces the granted scopes, revives a revoked grant and
    clears ``auth_action`` (the person has now seen the current scopes). Offline
    access, once granted, stays until the grant is revoked: grants end only by
    revocation (spec section 1), so signing in to an app again without ticking
    offline access does not silently cut off what Patient Connect set up."""
    g = s.grants
    wanted = sc.join(scopes)
    existing = conn.execute(select(g.c.id, g.c.offline, g.c.revoked_at).where(
        g.c.client_pk == client_pk, g.c.person_id == person_id, g.c.record_id == record_id)).first()
    if existing is not None:
        keep_offline = bool(existing.offline) and existing.revoked_at is None
        conn.execute(update(g).where(g.c.id == existing.id).values(
            scopes=wanted, offline=offline or keep_offline, revoked_at=None, auth_action=AuthAction.NONE.value))
        return int(existing.id)
    return int(conn.execute(g.insert().values(
        client_pk=client_pk, person_id=person_id, record_id=record_id, scopes=wanted, offline=offline,
        created_at=at, revoked_at=None, auth_action=AuthAction.NONE.value,
    ).returning(g.c.id)).scalar_one())


def revoke_grant_in(conn: Connection, client_pk: int, person_id: int, record_id: int, *, at: datetime) -> bool:
    """End a grant (spec: grants end only by revocation); its tokens stop covering the record at once."""
    g = s.grants
    return bool(conn.execute(update(g).where(
        g.c.client_pk == client_pk, g.c.person_id == person_id, g.c.record_id == record_id,
        g.c.revoked_at.is_(None)).values(revoked_at=at)).rowcount)


# ------------------------------------------------------------------ families and tokens

def new_family_in(conn: Connection, *, client_pk: int, person_id: int | None, record_id: int | None,
                  scopes: Iterable[str], offline: bool, grant_ids: Iterable[int], code_id: int | None,
                  at: datetime) -> int:
    f = s.token_families
    family_id = int(conn.execute(f.insert().values(
        client_pk=client_pk, person_id=person_id, code_id=code_id, record_id=record_id, scopes=sc.join(scopes),
        offline=offline, created_at=at, revoked_at=None,
    ).returning(f.c.id)).scalar_one())
    links = [{"family_id": family_id, "grant_id": g} for g in grant_ids]
    if links:
        conn.execute(s.family_grants.insert(), links)
    return family_id


def issue_in(conn: Connection, family_id: int, scopes: Iterable[str], *, refresh: bool, at: datetime) -> Issued:
    t = s.oauth_tokens
    granted = frozenset(scopes)
    access = ACCESS_PREFIX + secrets.token_urlsafe(32)
    rows = [{"token_hash": digest(access), "family_id": family_id, "kind": TokenKind.ACCESS.value,
             "scopes": sc.join(granted), "issued_at": at, "expires_at": at + ACCESS_TOKEN_LIFETIME,
             "used_at": None, "revoked_at": None}]
    refresh_token = None
    if refresh:
        refresh_token = REFRESH_PREFIX + secrets.token_urlsafe(32)
        rows.append({**rows[0], "token_hash": digest(refresh_token), "kind": TokenKind.REFRESH.value,
                     "expires_at": None})
    conn.execute(t.insert(), rows)
    return Issued(access, int(ACCESS_TOKEN_LIFETIME.total_seconds()), granted, refresh_token)


def revoke_family_in(conn: Connection, family_id: int, *, at: datetime) -> None:
    f, t = s.token_families, s.oauth_tokens
    conn.execute(update(f).where(f.c.id == family_id, f.c.revoked_at.is_(None)).values(revoked_at=at))
    conn.execute(update(t).where(t.c.family_id == family_id, t.c.revoked_at.is_(None)).values(revoked_at=at))


def live_grants_in(conn: Connection, family_id: int) -> list[tuple[int, int, str]]:
    """(grant id, record id, auth_action) of the family's grants not revoked."""
    g, fg = s.grants, s.family_grants
    rows = conn.execute(
        select(g.c.id, g.c.record_id, g.c.auth_action).join(fg, fg.c.grant_id == g.c.id)
        .where(fg.c.family_id == family_id, g.c.revoked_at.is_(None)).order_by(g.c.record_id)
    ).all()
    return [(r.id, r.record_id, r.auth_action) for r in rows]


def access_context_in(conn: Connection, token: str, at: datetime) -> TokenContext | None:
    """The context of a live access token, or None (unknown, expired, revoked, or all its grants revoked)."""
    t, f, c = s.oauth_tokens, s.token_families, s.oauth_clients
    row = conn.execute(
        select(t.c.scopes, t.c.expires_at, t.c.revoked_at, f.c.id.label("family_id"), f.c.person_id,
               f.c.record_id, f.c.revoked_at.label("family_revoked"), c.c.id.label("client_pk"), c.c.client_id)
        .join(f, f.c.id == t.c.family_id).join(c, c.c.id == f.c.client_pk)
        .where(t.c.token_hash == digest(token), t.c.kind == TokenKind.ACCESS.value)
    ).first()
    if row is None or row.revoked_at is not None or row.family_revoked is not None:
        return None
    if row.expires_at is None or row.expires_at <= at:
        return None
    scopes = frozenset(sc.split(row.scopes))
    if row.person_id is None:
        return TokenContext(row.client_id, row.client_pk, Acting.CLIENT, scopes, family_id=row.family_id)
    grants = live_grants_in(conn, row.family_id)
    if not grants:
        return None
    records = frozenset(r for _, r, _ in grants)
    return TokenContext(
        row.client_id, row.client_pk, Acting.USER, scopes, person_id=row.person_id,
        record_id=row.record_id if row.record_id in records else None, record_ids=records,
        family_id=row.family_id, grant_ids=frozenset(g for g, _, _ in grants),
    )
