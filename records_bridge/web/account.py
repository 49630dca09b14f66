"""The patient's account pages: sign up (``prompt=create``), sign in, sign out, and the home page.

Signing up makes the person's own record too, with them as its custodian
(HealthVault made a record with every account): the authorization and
pickup flows that follow always have a record to choose.
"""

from __future__ import annotations

from datetime import datetime

from aiohttp import web
from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from records_bridge import access, schema
from records_bridge.people import (
    NAME_MAX_LENGTH,
    PASSWORD_MIN_LENGTH,
    PeopleError,
    Person,
    PersonStore,
    SignUpProblem,
    check_email,
    check_password,
    hash_password,
)

from .context import BridgeContext, context
from .pages import check_csrf, current_person, render, require_person
from .refusals import Refusal
from .sessions import end_session, start_session

SIGN_IN_FAILED = "The e-mail address or password is not right."
"""One message for an unknown address and a wrong password: the page does not reveal who has an account."""
TOO_MANY = "Too many attempts. Wait a minute, then try again."


def safe_next(value: object) -> str:
    """Where to go after signing in: a path on this site only (never ``//host`` or ``/\\host``: no open redirect)."""
    if not isinstance(value, str) or not value.startswith("/") or value.startswith(("//", "/\\")):
        return "/"
    if any(ord(c) < 0x21 or c == "\\" for c in value):
        return "/"
    return value


def see_other(location: str) -> web.Response:
    """303: after a form, the browser fetches ``location`` with GET (RFC 9110 15.4.4)."""
    return web.Response(status=303, headers={"Location": location})


def client_ip(request: web.Request) -> str:
    return request.remote or "unknown"


async def home(request: web.Request) -> web.Response:
    person = await require_person(request)
    records = await access.records_of(context(request).store, person.id)
    return render(request, "home.html", records=records)


async def signin_page(request: web.Request) -> web.Response:
    await current_person(request)
    return render(request, "signin.html", next=safe_next(request.query.get("next")), email="", error=None)


async def signin(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    form = await request.post()
    await check_csrf(request, form)
    email, password = str(form.get("email", "")), str(form.get("password", ""))
    target = safe_next(form.get("next"))
    at = ctx.clock()
    limiter = ctx.limits.sign_in
    if not (limiter.allow("ip:" + client_ip(request), at=at) and limiter.allow("email:" + email.strip().lower(), at=at)):
        ctx.refusals.count(Refusal.RATE_LIMITED, path=request.path, ip=client_ip(request))
        return render(request, "signin.html", status=429, next=target, email=email, error=TOO_MANY)
    person = await PersonStore(ctx.store).authenticate(email, password)
    if person is None:
        ctx.refusals.count(Refusal.SIGN_IN_FAILED, ip=client_ip(request))
        return render(request, "signin.html", status=401, next=target, email=email, error=SIGN_IN_FAILED)
    response = see_other(target)
    await start_session(request, response, person)
    return response


async def signup_page(request: web.Request) -> web.Response:
    await current_person(request)
    return render(request, "signup.html", next=safe_next(request.query.get("next")), name="", email="", error=None,
                  min_length=PASSWORD_MIN_LENGTH)


def _create_in(conn: Connection, email: str, name: str, hashed: str, at: datetime) -> int:
    person_id = int(conn.execute(
        schema.persons.insert().values(email=email, display_name=name, created_at=at, password_hash=hashed)
        .returning(schema.persons.c.id)
    ).scalar_one())
    record_id = int(conn.execute(
        schema.records.insert().values(display_name=name, state="active", created_at=at)
        .returning(schema.records.c.id)
    ).scalar_one())
    access.give_in(conn, person_id, record_id, access.Role.CUSTODIAN, at=at)
    return person_id


async def sign_up(ctx: BridgeContext, email: str, name: str, password: str, *, at: datetime) -> Person:
    """A new account with its own record (custodian); raises ``PeopleError``."""
    address = check_email(email)
    display = name.strip()[:NAME_MAX_LENGTH]
    if not display:
        raise PeopleError(SignUpProblem.NAME_MISSING)
    check_password(password)
    hashed = await hash_password(password)
    try:
        person_id = await ctx.store.run(lambda conn: _create_in(conn, address, display, hashed, at))
    except IntegrityError as exc:
        raise PeopleError(SignUpProblem.EMAIL_TAKEN) from exc
    return Person(person_id, address, display)


async def signup(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    form = await request.post()
    await check_csrf(request, form)
    email, name, password = (str(form.get(k, "")) for k in ("email", "name", "password"))
    target = safe_next(form.get("next"))
    at = ctx.clock()
    if not ctx.limits.sign_in.allow("ip:" + client_ip(request), at=at):
        ctx.refusals.count(Refusal.RATE_LIMITED, path=request.path, ip=client_ip(request))
        return render(request, "signup.html", status=429, next=target, name=name, email=email, error=TOO_MANY,
                      min_length=PASSWORD_MIN_LENGTH)
    try:
        person = await sign_up(ctx, email, name, password, at=at)
    except PeopleError as exc:
        return render(request, "signup.html", status=400, next=target, name=name, email=email,
                      error=exc.problem.value, min_length=PASSWORD_MIN_LENGTH)
    response = see_other(target)
    await start_session(request, response, person)
    return response


async def signout(request: web.Request) -> web.StreamResponse:
    await check_csrf(request)
    response = see_other("/signin")
    await end_session(request, response)
    return response


def setup(app: web.Application, ctx: BridgeContext) -> None:
    app.router.add_get("/", home)
    app.router.add_get("/signin", signin_page)
    app.router.add_post("/signin", signin)
    app.router.add_get("/signup", signup_page)
    app.router.add_post("/signup", signup)
    app.router.add_post("/signout", signout)
