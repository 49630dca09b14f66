"""``/oauth/authorize``: sign-in, record selection and consent, then a code for the app (spec section 2).

GET checks the request and shows the consent page (after signing in);
the page's form posts the same parameters back with the person's choices,
and POST checks them all again, so nothing between the two is trusted or
kept on the server. Success is a redirect (303 after the POST, so the
browser does not repeat it: OAuth 2.0 Security BCP 4.12) to the app's
redirect URI with ``code``, ``state`` exactly as sent, and ``iss`` (RFC 9207),
or, for ``response_mode=form_post``, a page whose form posts them there.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web
from multidict import MultiMapping
from sqlalchemy import Connection

from records_bridge import access
from records_bridge.access import PersonRecord
from records_bridge.people import Person
from records_bridge.web.context import BridgeContext, context
from records_bridge.web.pages import allow_form_action, check_csrf, current_person, render
from records_bridge.web.refusals import Refusal

from . import schema as s
from . import scopes as sc
from .clients import client_in
from .request import (
    AuthRequest,
    PageError,
    PageProblem,
    RedirectError,
    ResponseMode,
    check_request,
    text_params,
)
from .tokens import digest, grant_in

CODE_LIFETIME = timedelta(seconds=60)
"""Spec section 2: a code lives 60 s (RFC 6749 4.1.2 recommends at most 10 minutes)."""
CODE_PREFIX = "rbc_"


def _redirect_to(ask: AuthRequest | RedirectError, request: web.Request, values: Mapping[str, str]) -> web.Response:
    """Deliver ``values`` to the app: a redirect, or the form_post page (OAuth 2.0 Form Post Response Mode)."""
    fields = dict(values)
    if ask.state is not None:
        fields["state"] = ask.state  # verbatim: it is the app's, we only echo it
    fields["iss"] = context(request).settings.issuer
    if ask.response_mode is ResponseMode.FORM_POST:
        allow_form_action(request, ask.redirect_uri)
        return render(request, "oauth_form_post.html", action=ask.redirect_uri, fields=fields,
                      app_name=ask.client.name)
    joiner = "&" if "?" in ask.redirect_uri else "?"
    status = 303 if request.method == "POST" else 302
    return web.Response(status=status, headers={"Location": ask.redirect_uri + joiner + urlencode(fields)})


def _error_page(request: web.Request, failed: PageError) -> web.Response:
    what = Refusal.UNKNOWN_CLIENT if failed.problem is PageProblem.UNKNOWN_CLIENT else Refusal.REDIRECT_MISMATCH
    context(request).refusals.count(what, detail=failed.detail[:200], ip=request.remote)
    return render(request, "error.html", status=400, heading="This app cannot be authorized",
                  message=failed.problem.value, detail=None)


def _eligible(ask: AuthRequest, mine: list[PersonRecord]) -> list[PersonRecord]:
    """Records the person may give this app: custodians only when the app may change anything."""
    writes = any((p := sc.parse(x)) is not None and (set(p.ops) - {"r", "s"}) for x in ask.required | ask.optional)
    return [r for r in mine if (access.can_write(r.role) if writes else access.can_read(r.role))]


def _consent(request: web.Request, ask: AuthRequest, records: list[PersonRecord], *, error: str | None = None,
             status: int = 200) -> web.Response:
    allow_form_action(request, ask.redirect_uri)  # the answer is a redirect there (CSP form-action covers it)
    hinted = ask.record_hint if any(str(r.record_id) == ask.record_hint for r in records) else None
    chosen = hinted or (str(records[0].record_id) if records else None)
    return render(
        request, "oauth_consent.html", status=status, app_name=ask.client.name, error=error,
        records=records, chosen=chosen, multi=ask.client.multi_record, params=ask.params,
        required=[(x, sc.describe(x)) for x in sorted(ask.required)],
        optional=[(x, sc.describe(x)) for x in sorted(ask.optional)],
        offline=sc.describe(sc.OFFLINE) if ask.offline_offered else None,
    )


async def _check(request: web.Request, given: MultiMapping[Any]) -> AuthRequest | PageError | RedirectError:
    params = text_params(given)
    client_id = params.get("client_id", "")
    store = context(request).store
    client = await store.read(lambda conn: client_in(conn, client_id)) if client_id else None
    return check_request(params, client)


async def authorize_page(request: web.Request) -> web.Response:
    ask = await _check(request, request.query)
    if isinstance(ask, PageError):
        return _error_page(request, ask)
    if isinstance(ask, RedirectError):
        return _redirect_to(ask, request, {"error": ask.error, "error_description": ask.description})
    person = await current_person(request)
    if person is None or ask.prompt == "login":
        where = "/signup" if ask.prompt == "create" else "/signin"
        if ask.prompt == "login":
            query = {k: v for k, v in request.query.items() if k != "prompt"}
            next_url = "/oauth/authorize?" + urlencode(query)
        else:
            next_url = request.path_qs
        raise web.HTTPFound(f"{where}?next=" + quote(next_url, safe=""))
    records = _eligible(ask, await access.records_of(context(request).store, person.id))
    if not records:
        return render(request, "error.html", status=403, heading="No record to share",
                      message=f"You have no record that {ask.client.name} can be given.", detail=None)
    return _consent(request, ask, records)


def _issue_code(conn: Connection, ask: AuthRequest, person: Person, record_ids: list[int], granted: frozenset[str],
                offline: bool, code: str, at: datetime) -> None:
    for record_id in record_ids:
        grant_in(conn, ask.client.pk, person.id, record_id, granted, offline=offline, at=at)
    conn.execute(s.oauth_codes.insert().values(
        code_hash=digest(code), client_pk=ask.client.pk, person_id=person.id,
        record_ids=",".join(str(r) for r in record_ids), scopes=sc.join(granted), redirect_uri=ask.redirect_uri,
        code_challenge=ask.code_challenge, created_at=at, expires_at=at + CODE_LIFETIME, used_at=None,
    ))


async def authorize_answer(request: web.Request) -> web.Response:
    ctx = context(request)
    form = await request.post()
    await check_csrf(request, form)
    ask = await _check(request, form)
    if isinstance(ask, PageError):
        return _error_page(request, ask)
    if isinstance(ask, RedirectError):
        return _redirect_to(ask, request, {"error": ask.error, "error_description": ask.description})
    person = await current_person(request)
    if person is None:
        raise web.HTTPSeeOther("/signin?next=" + quote("/oauth/authorize?" + urlencode(ask.params), safe=""))
    if form.get("decision") != "allow":
        return _redirect_to(ask, request, {"error": "access_denied",
                                           "error_description": "the person declined to authorize the app"})
    records = _eligible(ask, await access.records_of(ctx.store, person.id))
    by_id = {str(r.record_id): r for r in records}
    picked = [str(v) for v in form.getall("record", [])]
    if any(p not in by_id for p in picked):
        ctx.refusals.count(Refusal.FOREIGN_RECORD, person=person.id, client=ask.client.client_id)
    if not picked or any(p not in by_id for p in picked) or (len(picked) > 1 and not ask.client.multi_record):
        return _consent(request, ask, records, status=400,
                        error="Choose the record to share." if not picked or len(picked) == 1
                        else "Choose one record to share.")
    chosen_optional = frozenset(str(v) for v in form.getall("optional", [])) & ask.optional
    offline = ask.offline_offered and form.get("offline") == "on"
    granted = ask.required | chosen_optional | ({sc.OFFLINE} if offline else frozenset())
    code = CODE_PREFIX + secrets.token_urlsafe(32)
    at = ctx.clock()
    record_ids = [int(p) for p in dict.fromkeys(picked)]
    accepted = ask
    await ctx.store.run(lambda conn: _issue_code(conn, accepted, person, record_ids, granted, offline, code, at))
    return _redirect_to(ask, request, {"code": code})


def setup(app: web.Application, ctx: BridgeContext) -> None:
    app.router.add_get("/oauth/authorize", authorize_page)
    app.router.add_post("/oauth/authorize", authorize_answer)
