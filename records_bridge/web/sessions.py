"""Signed-in sessions (DB-backed) and CSRF tokens.

A session is a 256-bit random value in an ``HttpOnly``, ``SameSite=Lax``
cookie (``Secure`` and ``__Host-``-prefixed unless ``cookie_secure`` is off
for plain-HTTP loopback tests); the database keeps only its SHA-256, so a
copy of the database signs no one in. Sessions live in the database rather
than in signed cookies so that signing out ends them everywhere, they survive
a restart, and every node of a cluster sees them.

CSRF protection is a synchronizer token without server state: a form carries
``HMAC(csrf key, csrf cookie | session hash)``. The cookie is random per
browser and unreadable to other sites, so another site can neither read nor
compute the token; binding the session hash in means a token does not
outlive the session it was shown in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import datetime, timedelta
from http.cookies import SimpleCookie
from urllib.parse import quote

from aiohttp import web
from markupsafe import Markup
from sqlalchemy import Connection, delete, select

from records_bridge.oauth import schema as oauth_schema
from records_bridge.people import Person, person_in

from .context import context
from .errors import JsonError
from .refusals import Refusal

SESSION_LIFETIME = timedelta(hours=12)
"""A working day: a shared family computer does not stay signed in overnight
(HealthVault's web sessions likewise ended within the day)."""
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"

PERSON: web.RequestKey[Person | None] = web.RequestKey("rb.person", Person)
"""The signed-in person of this request, once ``current_person`` looked."""
_CSRF_NEW = web.RequestKey("rb.csrf_new", str)


def _names(secure: bool) -> tuple[str, str]:
    # __Host-: the browser accepts the cookie only from this origin over HTTPS,
    # with Path=/ and no Domain, so a sibling subdomain cannot plant it.
    return ("__Host-rb_session", "__Host-rb_csrf") if secure else ("rb_session", "rb_csrf")


def session_cookie(request: web.Request) -> str:
    return _names(context(request).settings.cookie_secure)[0]


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _session_in(conn: Connection, token_hash: str, at: datetime) -> Person | None:
    s = oauth_schema.bridge_sessions
    person_id = conn.execute(
        select(s.c.person_id).where(s.c.token_hash == token_hash, s.c.expires_at > at)
    ).scalar_one_or_none()
    return person_in(conn, person_id) if person_id is not None else None


async def current_person(request: web.Request) -> Person | None:
    """The signed-in person, or None (looked up once per request)."""
    if PERSON in request:
        return request[PERSON]
    ctx = context(request)
    token = request.cookies.get(session_cookie(request))
    person = None
    if token:
        at = ctx.clock()
        person = await ctx.store.read(lambda conn: _session_in(conn, _digest(token), at))
    request[PERSON] = person
    return person


async def require_person(request: web.Request) -> Person:
    """The signed-in person; otherwise a redirect to the sign-in page, coming back here after."""
    person = await current_person(request)
    if person is None:
        raise web.HTTPFound("/signin?next=" + quote(request.path_qs, safe=""))
    return person


def _set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str,
                max_age: int | None) -> None:
    response.set_cookie(name, value, path="/", httponly=True, samesite="Lax", max_age=max_age,
                        secure=context(request).settings.cookie_secure)


async def start_session(request: web.Request, response: web.StreamResponse, person: Person) -> None:
    """Sign ``person`` in: a new session (never a reused one: no session fixation)."""
    ctx = context(request)
    at = ctx.clock()
    token = secrets.token_urlsafe(32)
    s = oauth_schema.bridge_sessions
    old = request.cookies.get(session_cookie(request))

    def write(conn: Connection) -> None:
        if old:
            conn.execute(delete(s).where(s.c.token_hash == _digest(old)))
        conn.execute(delete(s).where(s.c.person_id == person.id, s.c.expires_at <= at))
        conn.execute(s.insert().values(token_hash=_digest(token), person_id=person.id, created_at=at,
                                       expires_at=at + SESSION_LIFETIME))

    await ctx.store.run(write)
    _set_cookie(request, response, session_cookie(request), token, int(SESSION_LIFETIME.total_seconds()))
    request[PERSON] = person


async def end_session(request: web.Request, response: web.StreamResponse) -> None:
    ctx = context(request)
    token = request.cookies.get(session_cookie(request))
    if token:
        s = oauth_schema.bridge_sessions
        await ctx.store.run(lambda conn: conn.execute(delete(s).where(s.c.token_hash == _digest(token))))
    response.del_cookie(session_cookie(request), path="/")
    request[PERSON] = None


# ---------------------------------------------------------------------- CSRF

def _anchor(request: web.Request) -> str:
    name = _names(context(request).settings.cookie_secure)[1]
    value = request.get(_CSRF_NEW) or request.cookies.get(name)
    if not value:
        value = secrets.token_urlsafe(32)
        request[_CSRF_NEW] = value
    return str(value)


def csrf_token(request: web.Request) -> str:
    """The CSRF token for forms (and ``X-CSRF-Token`` on JSON calls) shown in this response."""
    key = context(request).settings.secret("csrf")
    session = request.cookies.get(session_cookie(request), "")
    mac = hmac.new(key, f"{_anchor(request)}|{_digest(session) if session else ''}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")


def csrf_field(request: web.Request) -> Markup:
    return Markup('<input type="hidden" name="{}" value="{}">').format(CSRF_FIELD, csrf_token(request))


class CsrfRejected(web.HTTPForbidden):
    """A form or call without a valid CSRF token: 403, nothing done."""


async def check_csrf(request: web.Request, form: object | None = None) -> None:
    """Refuse (403) unless the form field or the ``X-CSRF-Token`` header carries this browser's token."""
    given = request.headers.get(CSRF_HEADER)
    if given is None:
        if form is None:
            form = await request.post()
        value = form.get(CSRF_FIELD) if hasattr(form, "get") else None
        given = value if isinstance(value, str) else None
    name = _names(context(request).settings.cookie_secure)[1]
    if not given or not request.cookies.get(name) or not hmac.compare_digest(given, csrf_token(request)):
        context(request).refusals.count(Refusal.CSRF, path=request.path, ip=request.remote)
        if request.headers.get(CSRF_HEADER) is not None or request.content_type == "application/json":
            raise JsonError(403, "csrf", "missing or invalid CSRF token; reload the page and try again")
        raise CsrfRejected(
            text="This form has expired or did not come from this site. Go back, reload the page and try again.",
        )


def set_csrf_cookie(request: web.Request, response: web.StreamResponse) -> None:
    """(Response hook) Give the browser its CSRF cookie the first time a token was made for it."""
    value = request.get(_CSRF_NEW)
    if value:
        # The hook runs after aiohttp has turned ``response.cookies`` into
        # headers, so the cookie is written as a header here.
        jar: SimpleCookie = SimpleCookie()
        secure = context(request).settings.cookie_secure
        name = _names(secure)[1]
        jar[name] = value
        morsel = jar[name]
        morsel["path"] = "/"
        morsel["httponly"] = True
        morsel["samesite"] = "Lax"
        morsel["secure"] = secure
        response.headers.add("Set-Cookie", jar[name].OutputString())
