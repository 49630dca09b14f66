"""``POST /oauth/token`` and ``POST /oauth/revoke`` (RFC 6749 section 3.2, 4.1.3, 4.4, 6; RFC 7636 4.6; RFC 7009).

``client_credentials`` answers two questions: with ``scope`` alone, a token
for the client itself (``connect``, ``packages``, ``inbound.messages``); with
``record_id`` (and ``person_id`` when several people granted that record), a
token acting on the client's offline grant on that record (``_record_grant``;
docs/bridge.md says why this shape rather than RFC 8693 or SMART Backend
Services).

Each grant runs as one transaction that returns an outcome instead of
raising, so that what a failure must change (a replayed code or refresh
token revokes the family it started) is committed with the refusal.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote_plus

from aiohttp import web
from sqlalchemy import Connection, select, update

from records_bridge import access
from records_bridge.web.context import BridgeContext, context
from records_bridge.web.errors import json_error
from records_bridge.web.refusals import Refusal

from . import schema as s
from . import scopes as sc
from .clients import Client, ClientStore, client_in
from .tokens import (
    Issued,
    TokenKind,
    digest,
    issue_in,
    live_grants_in,
    new_family_in,
    revoke_family_in,
)

VERIFIER_MIN, VERIFIER_MAX = 43, 128
"""RFC 7636 4.1: code_verifier is 43..128 unreserved characters."""
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
"""RFC 6749 5.1: token responses must not be cached."""


class GrantError(enum.Enum):
    INVALID_REQUEST = "invalid_request"
    INVALID_CLIENT = "invalid_client"
    INVALID_GRANT = "invalid_grant"
    UNAUTHORIZED_CLIENT = "unauthorized_client"
    UNSUPPORTED_GRANT_TYPE = "unsupported_grant_type"
    INVALID_SCOPE = "invalid_scope"


@dataclass(frozen=True, slots=True)
class Refused:
    error: GrantError
    description: str
    abuse: Refusal | None = None
    """Set when the refusal is one to count (web/refusals.py)."""


@dataclass(frozen=True, slots=True)
class Granted:
    issued: Issued
    person_id: int | None = None
    record_id: int | None = None
    records: tuple[tuple[int, str], ...] = ()
    """(record id, auth_action) of the live grants."""


def _refused(request: web.Request, refused: Refused) -> web.Response:
    if refused.abuse is not None:
        context(request).refusals.count(refused.abuse, path=request.path, ip=request.remote)
    return _refuse(refused.error, refused.description)


def _refuse(error: GrantError, description: str) -> web.Response:
    status = 401 if error is GrantError.INVALID_CLIENT else 400
    headers = dict(NO_STORE)
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="records"'
    return json_error(status, error.value, description, headers=headers)


def pkce_ok(verifier: str, challenge: str) -> bool:
    """RFC 7636 4.6: BASE64URL(SHA256(ASCII(code_verifier))) == code_challenge."""
    if not VERIFIER_MIN <= len(verifier) <= VERIFIER_MAX or not set(verifier) <= _UNRESERVED:
        return False
    computed = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).decode().rstrip("=")
    return hmac.compare_digest(computed, challenge)


def _basic(header: str) -> tuple[str, str] | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, colon, password = decoded.partition(":")
    if not colon:
        return None
    # RFC 6749 2.3.1: id and secret are form-urlencoded before Basic encoding
    return unquote_plus(user), unquote_plus(password)


async def authenticate(request: web.Request, form: Any) -> Client | Refused:
    """The calling client: confidential ones by ``client_secret_basic``, public ones by ``client_id``."""
    ctx = context(request)
    clients = ClientStore(ctx.store, ctx.settings.secret("client-secret"))
    header = request.headers.get("Authorization")
    if header is not None:
        pair = _basic(header)
        if pair is None:
            return Refused(GrantError.INVALID_CLIENT, "Authorization must be Basic client_id:client_secret")
        client = await clients.get(pair[0])
        if client is None or client.public or not clients.authenticate(client, pair[1]):
            return Refused(GrantError.INVALID_CLIENT, "client authentication failed", Refusal.INVALID_CLIENT)
        if form.get("client_id") not in (None, client.client_id):
            return Refused(GrantError.INVALID_REQUEST, "client_id does not match the authenticated client")
        return client
    if "client_secret" in form:
        return Refused(GrantError.INVALID_CLIENT, "send the client secret with HTTP Basic (client_secret_basic)")
    client_id = form.get("client_id")
    client = await clients.get(client_id) if isinstance(client_id, str) and client_id else None
    if client is None:
        return Refused(GrantError.INVALID_CLIENT, "unknown client")
    if not client.public:
        return Refused(GrantError.INVALID_CLIENT, "this client must authenticate (client_secret_basic)")
    return client


def _code_grant(conn: Connection, client: Client, code: str, redirect_uri: str, verifier: str,
                at: datetime) -> Granted | Refused:
    c = s.oauth_codes
    row = conn.execute(select(c).where(c.c.code_hash == digest(code))).first()
    if row is None or row.client_pk != client.pk:
        return Refused(GrantError.INVALID_GRANT, "unknown authorization code")
    claimed = conn.execute(update(c).where(c.c.id == row.id, c.c.used_at.is_(None)).values(used_at=at)).rowcount
    if not claimed:
        # RFC 6749 4.1.2: a code used twice revokes what it was exchanged for
        f = s.token_families
        for family_id in conn.execute(select(f.c.id).where(f.c.code_id == row.id)).scalars().all():
            revoke_family_in(conn, family_id, at=at)
        return Refused(GrantError.INVALID_GRANT, "the authorization code was already used; its tokens are revoked",
                       Refusal.CODE_REPLAY)
    if row.expires_at <= at:
        return Refused(GrantError.INVALID_GRANT, "the authorization code has expired")
    if redirect_uri != row.redirect_uri:
        return Refused(GrantError.INVALID_GRANT, "redirect_uri differs from the authorization request's")
    if not pkce_ok(verifier, row.code_challenge):
        return Refused(GrantError.INVALID_GRANT, "code_verifier missing or does not match the code_challenge")
    record_ids = [int(r) for r in row.record_ids.split(",") if r]
    g = s.grants
    grant_ids = conn.execute(select(g.c.id).where(
        g.c.client_pk == client.pk, g.c.person_id == row.person_id, g.c.record_id.in_(record_ids),
        g.c.revoked_at.is_(None))).scalars().all()
    if not grant_ids:
        return Refused(GrantError.INVALID_GRANT, "the authorization was revoked")
    scopes = frozenset(sc.split(row.scopes))
    offline = sc.OFFLINE in scopes
    family = new_family_in(conn, client_pk=client.pk, person_id=row.person_id, record_id=record_ids[0],
                           scopes=scopes, offline=offline, grant_ids=grant_ids, code_id=row.id, at=at)
    issued = issue_in(conn, family, scopes, refresh=offline, at=at)
    live = live_grants_in(conn, family)
    return Granted(issued, row.person_id, record_ids[0], tuple((r, a) for _, r, a in live))


def _refresh_grant(conn: Connection, client: Client, token: str, scope: str | None, at: datetime) -> Granted | Refused:
    t, f = s.oauth_tokens, s.token_families
    row = conn.execute(
        select(t.c.id, t.c.scopes, t.c.used_at, t.c.revoked_at, f.c.id.label("family_id"), f.c.client_pk,
               f.c.person_id, f.c.record_id, f.c.revoked_at.label("family_revoked"))
        .join(f, f.c.id == t.c.family_id)
        .where(t.c.token_hash == digest(token), t.c.kind == TokenKind.REFRESH.value)
    ).first()
    if row is None or row.client_pk != client.pk:
        return Refused(GrantError.INVALID_GRANT, "unknown refresh token")
    if row.revoked_at is not None or row.family_revoked is not None:
        return Refused(GrantError.INVALID_GRANT, "the refresh token was revoked")
    claimed = conn.execute(update(t).where(t.c.id == row.id, t.c.used_at.is_(None)).values(used_at=at)).rowcount
    if row.used_at is not None or not claimed:
        # OAuth 2.0 Security BCP 4.14.2: a rotated token presented again means
        # two parties hold the family; revoke it so neither can go on.
        revoke_family_in(conn, row.family_id, at=at)
        return Refused(GrantError.INVALID_GRANT,
                       "the refresh token was already used; the authorization's tokens are revoked", Refusal.REFRESH_REUSE)
    had = frozenset(sc.split(row.scopes))
    wanted = frozenset(sc.split(scope)) if scope else had
    if not wanted <= had:
        return Refused(GrantError.INVALID_SCOPE, "a refresh cannot widen the granted scopes")
    live = live_grants_in(conn, row.family_id)
    if not live:
        revoke_family_in(conn, row.family_id, at=at)
        return Refused(GrantError.INVALID_GRANT, "the authorization was revoked")
    issued = issue_in(conn, row.family_id, wanted, refresh=True, at=at)
    records = {r for _, r, _ in live}
    return Granted(issued, row.person_id, row.record_id if row.record_id in records else None,
                   tuple((r, a) for _, r, a in live))


def _client_grant(conn: Connection, client: Client, scope: str | None, at: datetime) -> Granted | Refused:
    if client.public:
        return Refused(GrantError.UNAUTHORIZED_CLIENT, "client_credentials is for confidential clients")
    mine = client.allowed_scopes & sc.CLIENT_SCOPES
    if not client.connect_enabled:
        mine -= {sc.CONNECT}
    wanted = frozenset(sc.split(scope)) if scope else mine
    if not wanted or not wanted <= mine:
        return Refused(GrantError.INVALID_SCOPE, f"this client may ask for: {' '.join(sorted(mine)) or 'nothing'}")
    family = new_family_in(conn, client_pk=client.pk, person_id=None, record_id=None, scopes=wanted, offline=False,
                           grant_ids=(), code_id=None, at=at)
    return Granted(issue_in(conn, family, wanted, refresh=False, at=at))


MAX_ID_DIGITS = 18
"""Record and person ids are 64-bit integers at most: 18 digits always fit (records_bridge.api.guard)."""


def _id(value: str) -> int | None:
    return int(value) if value.isdigit() and len(value) <= MAX_ID_DIGITS else None


def _record_grant(conn: Connection, client: Client, record_id: int, person_id: int | None, scope: str | None,
                  at: datetime) -> Granted | Refused:
    """Client credentials naming a record: a token acting on the client's offline grant on it.

    HealthVault's offline access (the grants Patient Connect creates, and any
    authorization with ``offline_access``) let an app act on a record with its
    own credentials and the person and record ids it was told of. The token is
    exactly a user token on that grant: the grant's person and record, at most
    the grant's scopes, checked against the live grant at every use (so
    revoking the grant stops it at once). No refresh token: the client can
    present its credentials again.
    """
    if client.public:
        # Spec section 5: a public client holds no secret, so nothing but a person's
        # presence (authorization code + PKCE) may stand for its right to a record.
        return Refused(GrantError.UNAUTHORIZED_CLIENT, "client_credentials is for confidential clients")
    g = s.grants
    query = select(g.c.id, g.c.person_id, g.c.scopes, g.c.offline, g.c.revoked_at, g.c.auth_action).where(
        g.c.client_pk == client.pk, g.c.record_id == record_id)
    if person_id is not None:
        query = query.where(g.c.person_id == person_id)
    rows = conn.execute(query).all()
    if not rows:
        # one client asking for a record no one gave it: the token-endpoint form of reading another's record
        return Refused(GrantError.INVALID_GRANT, "this client holds no grant on that record", Refusal.FOREIGN_GRANT)
    live = [r for r in rows if r.revoked_at is None]
    if not live:
        return Refused(GrantError.INVALID_GRANT, "the grant on that record was revoked")
    offline = [r for r in live if r.offline]
    if not offline:
        return Refused(GrantError.INVALID_GRANT,
                       "the grant on that record is not offline: the person must be present (authorization code)")
    if len(offline) > 1:
        return Refused(GrantError.INVALID_REQUEST,
                       "several people granted this client that record: name one with person_id")
    grant = offline[0]
    if not access.can_read(access.role_in(conn, grant.person_id, record_id)):
        # the guard would refuse every call with this token anyway; say so now
        return Refused(GrantError.INVALID_GRANT, "the person who gave the grant no longer has access to that record")
    # Spec section 2, rule changes: under reauth_required (or reauth_not_possible) the
    # grant keeps the scopes given before, as refresh does (HealthVault: "applications
    # using offline access may continue to use the existing authorized access"); the
    # response's auth_action tells the app to ask the person again.
    mine = (frozenset(sc.split(grant.scopes)) & client.allowed_scopes) - {sc.OFFLINE}
    wanted = frozenset(sc.split(scope)) if scope else mine
    if not wanted or not wanted <= mine:
        return Refused(GrantError.INVALID_SCOPE,
                       f"the grant on that record gives: {' '.join(sorted(mine)) or 'nothing'}")
    family = new_family_in(conn, client_pk=client.pk, person_id=grant.person_id, record_id=record_id, scopes=wanted,
                           offline=False, grant_ids=(grant.id,), code_id=None, at=at)
    issued = issue_in(conn, family, wanted, refresh=False, at=at)
    return Granted(issued, grant.person_id, record_id, ((record_id, grant.auth_action),))


def _body(granted: Granted) -> dict[str, Any]:
    issued = granted.issued
    body: dict[str, Any] = {"access_token": issued.access_token, "token_type": "Bearer",
                            "expires_in": issued.expires_in, "scope": sc.join(issued.scopes)}
    if issued.refresh_token is not None:
        body["refresh_token"] = issued.refresh_token
    if granted.person_id is not None:
        body["person"] = str(granted.person_id)
        if granted.record_id is not None:
            body["patient"] = str(granted.record_id)  # SMART launch context: the selected record
        body["records"] = [{"id": str(r), "auth_action": a} for r, a in granted.records]
    return body


def _single(form: Any, name: str) -> str | None:
    values = form.getall(name, [])
    if len(values) > 1:
        raise ValueError(name)
    return str(values[0]) if values else None


async def token(request: web.Request) -> web.Response:
    if request.content_type != "application/x-www-form-urlencoded":
        return _refuse(GrantError.INVALID_REQUEST, "send application/x-www-form-urlencoded (RFC 6749 4.1.3)")
    form = await request.post()
    try:
        grant_type, code, redirect_uri, verifier, refresh, scope, record, person = (
            _single(form, n) for n in ("grant_type", "code", "redirect_uri", "code_verifier", "refresh_token", "scope",
                                       "record_id", "person_id"))
    except ValueError as dup:
        return _refuse(GrantError.INVALID_REQUEST, f"{dup} is given more than once")
    client = await authenticate(request, form)
    if isinstance(client, Refused):
        return _refused(request, client)
    ctx = context(request)
    at = ctx.clock()
    outcome: Granted | Refused
    if grant_type == "authorization_code":
        if not code or not redirect_uri:
            return _refuse(GrantError.INVALID_REQUEST, "code and redirect_uri are required")
        outcome = await ctx.store.run(lambda conn: _code_grant(conn, client, code, redirect_uri, verifier or "", at))
    elif grant_type == "refresh_token":
        if not refresh:
            return _refuse(GrantError.INVALID_REQUEST, "refresh_token is required")
        outcome = await ctx.store.run(lambda conn: _refresh_grant(conn, client, refresh, scope, at))
    elif grant_type == "client_credentials" and (record is not None or person is not None):
        record_id, person_id = _id(record or ""), _id(person) if person is not None else None
        if record_id is None or (person is not None and person_id is None):
            return _refuse(GrantError.INVALID_REQUEST, "record_id (and person_id, if given) must be ids")
        outcome = await ctx.store.run(lambda conn: _record_grant(conn, client, record_id, person_id, scope, at))
    elif grant_type == "client_credentials":
        outcome = await ctx.store.run(lambda conn: _client_grant(conn, client, scope, at))
    else:
        return _refuse(GrantError.UNSUPPORTED_GRANT_TYPE,
                       "grant_type is authorization_code, refresh_token or client_credentials")
    if isinstance(outcome, Refused):
        return _refused(request, outcome)
    return web.json_response(_body(outcome), headers=NO_STORE)


def _revoke(conn: Connection, client: Client, value: str, at: datetime) -> None:
    t, f = s.oauth_tokens, s.token_families
    row = conn.execute(
        select(t.c.id, t.c.kind, t.c.family_id, f.c.client_pk).join(f, f.c.id == t.c.family_id)
        .where(t.c.token_hash == digest(value))
    ).first()
    if row is None or row.client_pk != client.pk:
        return  # RFC 7009 2.2: an unknown (or another client's) token is answered 200 all the same
    if row.kind == TokenKind.REFRESH.value:
        revoke_family_in(conn, row.family_id, at=at)  # RFC 7009 2.1: and the access tokens of that grant
    else:
        conn.execute(update(t).where(t.c.id == row.id, t.c.revoked_at.is_(None)).values(revoked_at=at))


async def revoke(request: web.Request) -> web.Response:
    form = await request.post()
    client = await authenticate(request, form)
    if isinstance(client, Refused):
        return _refused(request, client)
    value = form.get("token")
    if not isinstance(value, str) or not value:
        return _refuse(GrantError.INVALID_REQUEST, "token is required")
    ctx = context(request)
    at = ctx.clock()
    await ctx.store.run(lambda conn: _revoke(conn, client, value, at))
    return web.Response(status=200, headers=NO_STORE)


def setup(app: web.Application, ctx: BridgeContext) -> None:
    app.router.add_post("/oauth/token", token)
    app.router.add_post("/oauth/revoke", revoke)


__all__ = ["authenticate", "client_in", "pkce_ok", "setup"]
