"""Patient Connect over HTTP (spec section 3): the app API, the patient API and the patient pages.

App API (client-credentials token with scope ``connect``; public clients never get one):
``POST /v1/connect-requests``, ``DELETE`` and ``PATCH /v1/connect-requests/{external_id}``,
``GET /v1/connect-requests/authorized``.

Patient API (signed-in person, ``X-CSRF-Token``, code entry rate-limited):
``POST /v1/connect/lookup``, ``/v1/connect/verify``, ``/v1/connect/authorize``.

Pages (no JavaScript): ``/connect`` (enter the code), its question, the record choice and the
app's permissions in words, then done. Pages and API call the same ``ConnectRequests``.
Authorizing creates or renews an offline grant through the OAuth module's ``grant_in``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web
from sqlalchemy import Connection, select

from .. import access
from ..codes import Question, Refused, WrongAnswer
from ..oauth import schema as oauth_schema
from ..oauth import scopes as sc
from ..oauth.bearer import Acting, bearer
from ..oauth.clients import Client, client_in
from ..oauth.tokens import grant_in
from ..web.context import BridgeContext, context
from ..web.errors import JsonError
from ..web.pages import check_csrf, render, require_person
from . import edge
from .store import DEFAULT_PAGE, MAX_PAGE, ConnectError, ConnectProblem, GrantWriter, Verified

_STATUS = {
    ConnectProblem.INVALID_REQUEST: 400,
    ConnectProblem.INVALID_QUESTION: 400,
    ConnectProblem.INVALID_ANSWER: 400,
    ConnectProblem.DUPLICATE_EXTERNAL_ID: 409,
    ConnectProblem.NOT_FOUND: 404,
}


class ClientGone(Exception):
    """The app that made the request is no longer registered: nothing to authorize."""


class NotOptional(Exception):
    """Scopes asked for as optional that the app does not offer as optional."""


def connect_grant(optional: Iterable[str]) -> GrantWriter:
    """Creates or renews the offline grant: the client's required scopes and the optional ones chosen."""
    chosen = frozenset(optional)

    def write(conn: Connection, client_id: str, person_id: int, record_id: int, at: datetime) -> tuple[int, bool]:
        client = client_in(conn, client_id)
        if client is None:
            raise ClientGone(client_id)
        g = oauth_schema.grants
        existed = conn.scalar(select(g.c.id).where(
            g.c.client_pk == client.pk, g.c.person_id == person_id, g.c.record_id == record_id,
            g.c.revoked_at.is_(None))) is not None
        if not chosen <= client.optional_scopes:
            raise NotOptional(" ".join(sorted(chosen - client.optional_scopes)))
        scopes = client.required_scopes | chosen
        return grant_in(conn, client.pk, person_id, record_id, scopes, offline=True, at=at), existed

    return write


def _error(exc: ConnectError) -> JsonError:
    return JsonError(_STATUS[exc.problem], exc.problem.value, exc.detail)


# ------------------------------------------------------------------ app API


async def create(request: web.Request) -> web.Response:
    token = await bearer(request, scopes=[sc.CONNECT], kind=Acting.CLIENT)
    body = await edge.json_body(request)
    ctx = context(request)
    try:
        created = await edge.services(request).connect.create(
            token.client_id, body.get("external_id"), body.get("friendly_name"), body.get("question"),
            body.get("answer"), at=ctx.clock())
    except ConnectError as exc:
        raise _error(exc) from None
    return web.json_response({
        "code": created.code.display, "expires_at": edge.iso(created.expires_at),
        "pickup_url": f"{ctx.settings.base_url}/connect?code={quote(created.code.display)}",
    }, status=201, headers={"Cache-Control": "no-store"})


async def delete(request: web.Request) -> web.Response:
    token = await bearer(request, scopes=[sc.CONNECT], kind=Acting.CLIENT)
    try:
        await edge.services(request).connect.delete(token.client_id, request.match_info["external_id"],
                                                    at=context(request).clock())
    except ConnectError as exc:
        raise _error(exc) from None
    return web.Response(status=204)


async def rename(request: web.Request) -> web.Response:
    token = await bearer(request, scopes=[sc.CONNECT], kind=Acting.CLIENT)
    body = await edge.json_body(request)
    try:
        await edge.services(request).connect.rename(token.client_id, request.match_info["external_id"],
                                                    body.get("new_external_id"), at=context(request).clock())
    except ConnectError as exc:
        raise _error(exc) from None
    return web.json_response({"external_id": body["new_external_id"]})


def _since(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise JsonError(400, "invalid_datetime", "since must be an RFC 3339 date-time with a time zone") from None
    if at.tzinfo is None:
        raise JsonError(400, "invalid_datetime", "since must carry a time zone (e.g. Z or +00:00)")
    return at


def _cursor(value: str | None) -> int | None:
    if not value:
        return None
    try:
        decoded = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        decoded = ""
    if not decoded.isdigit() or len(decoded) > 18:
        raise JsonError(400, "invalid_request", "cursor is not one this service returned")
    return int(decoded)


async def authorized(request: web.Request) -> web.Response:
    """Oldest first; when more follow, ``Link: <...>; rel="next"`` carries the cursor (RFC 8288)."""
    token = await bearer(request, scopes=[sc.CONNECT], kind=Acting.CLIENT)
    since = _since(request.query.get("since"))
    after = _cursor(request.query.get("cursor"))
    raw_limit = request.query.get("limit", str(DEFAULT_PAGE))
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_PAGE:
        raise JsonError(400, "invalid_request", f"limit is 1..{MAX_PAGE}")
    page, more = await edge.services(request).connect.authorized(
        token.client_id, since=since, after_id=after, limit=int(raw_limit), at=context(request).clock())
    headers = {}
    if more and page:
        query = {k: v for k, v in request.query.items() if k != "cursor"}
        query["cursor"] = base64.urlsafe_b64encode(str(page[-1].id).encode()).decode().rstrip("=")
        headers["Link"] = f'<{context(request).settings.base_url}{request.path}?{urlencode(query)}>; rel="next"'
    return web.json_response([
        {"external_id": r.external_id, "person_id": str(r.person_id), "record_id": str(r.record_id),
         "client_record_id": r.client_record_id, "authorized_at": edge.iso(r.authorized_at)}
        for r in page
    ], headers=headers)


# ------------------------------------------------------------------ patient API


async def lookup(request: web.Request) -> web.Response:
    return await edge.question(request, lambda services: services.connect)


async def verify(request: web.Request) -> web.Response:
    person = await edge.api_person(request)
    ctx = context(request)
    body = await edge.json_body(request)
    code = edge.code_of(body.get("code"))
    answer = body.get("answer")
    if not isinstance(answer, str):
        raise JsonError(400, "invalid_request", "answer must be a string")
    at = ctx.clock()
    edge.limit_code_entry(request, ctx, at)
    outcome = await edge.services(request).connect.verify(code, answer, person.id, at=at)
    edge.observe(request, outcome, at)
    if isinstance(outcome, Refused):
        raise edge.refused(outcome)
    if isinstance(outcome, WrongAnswer):
        raise edge.wrong(outcome)
    return web.json_response({"ticket": outcome.ticket, "friendly_name": outcome.friendly_name},
                             headers={"Cache-Control": "no-store"})


async def authorize_api(request: web.Request) -> web.Response:
    person = await edge.api_person(request)
    ctx = context(request)
    body = await edge.json_body(request)
    ticket, rid, optional = body.get("ticket"), body.get("record_id"), body.get("optional_scopes", [])
    if not isinstance(ticket, str) or not isinstance(optional, list) or not all(isinstance(s, str) for s in optional):
        raise JsonError(400, "invalid_request", "ticket is a string and optional_scopes a list of scopes")
    record_id = _record_id(rid)
    if not access.can_write(await access.role(ctx.store, person.id, record_id)):
        raise JsonError(403, "forbidden", "you may not authorize apps on that record")
    try:
        done = await edge.services(request).connect.authorize(ticket, person.id, record_id, connect_grant(optional),
                                                              at=ctx.clock())
    except ClientGone:
        raise JsonError(410, "client_gone", "the app that made this request is no longer registered") from None
    except NotOptional as exc:
        raise JsonError(400, "invalid_scope", f"not among the app's optional scopes: {exc}") from None
    if done is None:
        raise JsonError(400, "invalid_ticket", "the ticket is unknown, used, expired or not yours; answer again")
    return web.json_response({"record_id": str(record_id), "grant_id": str(done.grant_id), "again": done.again},
                             status=200 if done.again else 201)


def _record_id(value: object) -> int:
    text = str(value) if isinstance(value, (int, str)) and not isinstance(value, bool) else ""
    if not text.isdigit() or len(text) > 18:
        raise JsonError(400, "invalid_request", "record_id must be a record id")
    return int(text)




# ------------------------------------------------------------------ pages


async def code_page(request: web.Request) -> web.Response:
    await require_person(request)
    return render(request, "connect_code.html", code=request.query.get("code", "")[:64], error=None)


async def code_form(request: web.Request) -> web.Response:
    await require_person(request)
    found = await edge.typed_code(request, "connect_code.html", lambda services: services.connect)
    if isinstance(found, web.Response):
        return found
    code, question = found
    return _question(request, code.display, question)


def _question(request: web.Request, code: str, question: Question, *, error: str | None = None,
              status: int = 200) -> web.Response:
    return render(request, "connect_question.html", status=status, code=code, question=question.question, error=error)


async def answer_form(request: web.Request) -> web.Response:
    person = await require_person(request)
    form = await request.post()
    await check_csrf(request, form)
    ctx = context(request)
    typed, answer = str(form.get("code", ""))[:64], str(form.get("answer", ""))
    at = ctx.clock()
    try:
        code = edge.code_of(typed)
    except JsonError:
        return render(request, "connect_code.html", status=400, code=typed, error="That is not a code.")
    if not edge.allowed(request, ctx, at):
        return render(request, "connect_code.html", status=429, code=typed, error="Too many tries. Wait a minute.")
    svc = edge.services(request).connect
    outcome = await svc.verify(code, answer, person.id, at=at)
    edge.observe(request, outcome, at)
    if isinstance(outcome, Refused):
        return render(request, "connect_code.html", status=edge.STATUS[outcome.reason], code=typed,
                      error=edge.WORDS[outcome.reason])
    if isinstance(outcome, WrongAnswer):
        if outcome.attempts_remaining == 0:
            return render(request, "connect_code.html", status=423, code=typed, error=edge.wrong_words(outcome))
        question = await svc.lookup(code, at=at)
        assert isinstance(question, Question)
        return _question(request, code.display, question, status=401, error=edge.wrong_words(outcome))
    return await _authorize_page(request, person.id, outcome)


async def _authorize_page(request: web.Request, person_id: int, verified: Verified, *, error: str | None = None,
                          status: int = 200) -> web.Response:
    ctx = context(request)
    ticketed = await edge.services(request).connect.ticket(verified.ticket, person_id, at=ctx.clock())
    client = await ctx.store.read(lambda conn: client_in(conn, ticketed.client_id)) if ticketed else None
    if ticketed is None or client is None:
        return render(request, "connect_code.html", status=400, code="",
                      error="This step has expired. Enter the code and answer again.")
    records = [r for r in await access.records_of(ctx.store, person_id) if access.can_write(r.role)]
    return render(request, "connect_authorize.html", status=status, ticket=verified.ticket,
                  app_name=verified.friendly_name, records=records, error=error, **_scopes_in_words(client))


def _scopes_in_words(client: Client) -> dict[str, Any]:
    return {
        "required": sorted((s, sc.describe(s)) for s in client.required_scopes),
        "optional": sorted((s, sc.describe(s)) for s in client.optional_scopes),
        "offline": sc.describe(sc.OFFLINE),
    }


async def authorize_form(request: web.Request) -> web.Response:
    person = await require_person(request)
    form = await request.post()
    await check_csrf(request, form)
    ctx = context(request)
    ticket = str(form.get("ticket", ""))
    friendly = str(form.get("app_name", ""))[:255]
    if form.get("decision") != "allow":
        return render(request, "connect_done.html", connected=False, app_name=friendly, record=None)
    raw = str(form.get("record", ""))
    records = {r.record_id: r for r in await access.records_of(ctx.store, person.id) if access.can_write(r.role)}
    record = records.get(int(raw)) if raw.isdigit() and len(raw) <= 18 else None
    if record is None:
        return await _authorize_page(request, person.id, Verified(ticket, friendly), status=400,
                                     error="Choose one of your records.")
    optional = [str(v) for v in form.getall("optional", [])]
    try:
        done = await edge.services(request).connect.authorize(ticket, person.id, record.record_id,
                                                              connect_grant(optional), at=ctx.clock())
    except (ClientGone, NotOptional):
        done = None  # the form offers only the app's optional scopes; anything else is a forged form
    if done is None:
        return render(request, "connect_code.html", status=400, code="",
                      error="This step has expired. Enter the code and answer again.")
    return render(request, "connect_done.html", connected=True, app_name=done.friendly_name, record=record)


def setup(app: web.Application, ctx: BridgeContext) -> None:
    edge.install(app, ctx)
    app.router.add_post("/v1/connect-requests", create)
    app.router.add_get("/v1/connect-requests/authorized", authorized)
    app.router.add_delete("/v1/connect-requests/{external_id}", delete)
    app.router.add_patch("/v1/connect-requests/{external_id}", rename)
    app.router.add_post("/v1/connect/lookup", lookup)
    app.router.add_post("/v1/connect/verify", verify)
    app.router.add_post("/v1/connect/authorize", authorize_api)
    app.router.add_get("/connect", code_page)
    app.router.add_post("/connect", code_form)
    app.router.add_post("/connect/answer", answer_form)
    app.router.add_post("/connect/authorize", authorize_form)
