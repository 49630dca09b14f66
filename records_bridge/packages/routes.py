"""Drop-Off/Pick-Up over HTTP (spec section 4): the app API, the patient API and the pickup pages.

App API (client-credentials token with scope ``packages``): ``POST /v1/packages:allocate``,
``POST /v1/packages`` (an app-sealed ``envelope`` into an allocated ``code``, or the convenience
mode's ``answer`` and ``items``), ``DELETE /v1/packages/{code}``, ``DELETE /v1/packages?external_id=``,
``PATCH /v1/packages/{code}``. There is deliberately no status endpoint: an app cannot learn
whether or when a package was picked up (HealthVault parity), and deleting answers 204 alike
for a pending and a picked-up package.

Patient API (signed-in person, ``X-CSRF-Token``, rate-limited): ``POST /v1/pickup/lookup`` and
``POST /v1/pickup/redeem``. Pages: ``/pickup`` (code), its question with the record choice, done.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from .. import access
from ..codes import Question, Refused, WrongAnswer
from ..connect import edge
from ..oauth import scopes as sc
from ..oauth.bearer import Acting, bearer
from ..people import Person
from ..web.context import BridgeContext, context
from ..web.errors import JsonError
from ..web.pages import check_csrf, render, require_person
from . import envelope
from .store import DropOff, PackageError, PackageProblem, Redeemed, Unreadable
from .sweep import sweeping

MAX_PACKAGE_REQUEST = envelope.MAX_ENVELOPE_BYTES + 64 * 1024
"""An envelope at its limit plus the few short fields beside it."""

_STATUS = {
    PackageProblem.INVALID_REQUEST: 400,
    PackageProblem.INVALID_QUESTION: 400,
    PackageProblem.INVALID_ANSWER: 400,
    PackageProblem.INVALID_ITEMS: 400,
    PackageProblem.NOT_FOUND: 404,
    PackageProblem.EXISTS: 409,
    PackageProblem.EXPIRED: 410,
}


def _error(exc: PackageError) -> JsonError:
    return JsonError(_STATUS[exc.problem], exc.problem.value, exc.detail)


# ------------------------------------------------------------------ app API


async def allocate(request: web.Request) -> web.Response:
    token = await bearer(request, scopes=[sc.PACKAGES], kind=Acting.CLIENT)
    created = await edge.services(request).packages.allocate(token.client_id, at=context(request).clock())
    return web.json_response({"code": created.code.display, "expires_at": edge.iso(created.expires_at)},
                             status=201, headers={"Cache-Control": "no-store"})


async def drop_off(request: web.Request) -> web.Response:
    token = await bearer(request, scopes=[sc.PACKAGES], kind=Acting.CLIENT)
    body = await edge.json_body(request, MAX_PACKAGE_REQUEST)
    svc = edge.services(request).packages
    at = context(request).clock()
    code = edge.code_of(body["code"]) if body.get("code") is not None else None
    try:
        about = DropOff.of(body.get("external_id"), body.get("friendly_name"), body.get("question"))
        if "envelope" in body:
            if "answer" in body or "items" in body:
                raise JsonError(400, "invalid_request", "send either an envelope or answer and items, not both")
            if code is None:
                raise JsonError(400, "invalid_request",
                                "an envelope is bound to its code: allocate one (POST /v1/packages:allocate) first")
            try:
                env = await asyncio.to_thread(envelope.parse, body["envelope"])  # base64 of up to 36 MiB
            except envelope.EnvelopeError as exc:
                raise JsonError(400, exc.problem.value, exc.detail) from None
            created = await svc.drop_off(token.client_id, code, about, env, at=at)
        else:
            created = await svc.drop_off_sealing(token.client_id, code, about, body.pop("answer", None),
                                                 body.get("items"), at=at)
    except PackageError as exc:
        raise _error(exc) from None
    return web.json_response({"code": created.code.display, "expires_at": edge.iso(created.expires_at)},
                             status=201, headers={"Cache-Control": "no-store"})


async def delete_one(request: web.Request) -> web.Response:
    token = await bearer(request, scopes=[sc.PACKAGES], kind=Acting.CLIENT)
    code = edge.code_of(request.match_info["code"])
    try:
        await edge.services(request).packages.delete(token.client_id, code, at=context(request).clock())
    except PackageError as exc:
        raise _error(exc) from None
    return web.Response(status=204)


async def delete_external(request: web.Request) -> web.Response:
    token = await bearer(request, scopes=[sc.PACKAGES], kind=Acting.CLIENT)
    external_id = request.query.get("external_id")
    if not external_id:
        raise JsonError(400, "invalid_request", "external_id is required")
    try:
        await edge.services(request).packages.delete_external(token.client_id, external_id, at=context(request).clock())
    except PackageError as exc:
        raise _error(exc) from None
    return web.Response(status=204)


async def rename(request: web.Request) -> web.Response:
    token = await bearer(request, scopes=[sc.PACKAGES], kind=Acting.CLIENT)
    code = edge.code_of(request.match_info["code"])
    body = await edge.json_body(request)
    try:
        await edge.services(request).packages.rename(token.client_id, code, body.get("new_external_id"))
    except PackageError as exc:
        raise _error(exc) from None
    return web.json_response({"external_id": body["new_external_id"]})


# ------------------------------------------------------------------ patient API




async def lookup(request: web.Request) -> web.Response:
    return await edge.question(request, lambda services: services.packages)


async def redeem(request: web.Request) -> web.Response:
    person = await edge.api_person(request)
    ctx = context(request)
    body = await edge.json_body(request)
    code = edge.code_of(body.get("code"))
    answer, rid = body.get("answer"), body.get("record_id")
    if not isinstance(answer, str):
        raise JsonError(400, "invalid_request", "answer must be a string")
    text = str(rid) if isinstance(rid, (int, str)) and not isinstance(rid, bool) else ""
    if not text.isdigit() or len(text) > 18:
        raise JsonError(400, "invalid_request", "record_id must be a record id")
    if not access.can_write(await access.role(ctx.store, person.id, int(text))):
        raise JsonError(403, "forbidden", "you may not add to that record")
    at = ctx.clock()
    edge.limit_code_entry(request, ctx, at)
    outcome = await edge.services(request).packages.redeem(code, answer, person.id, int(text), at=at)
    edge.observe(request, outcome, at)
    return _redeemed_json(outcome)


def _redeemed_json(outcome: Redeemed | WrongAnswer | Refused | Unreadable) -> web.Response:
    if isinstance(outcome, Refused):
        raise edge.refused(outcome)
    if isinstance(outcome, WrongAnswer):
        raise edge.wrong(outcome)
    if isinstance(outcome, Unreadable):
        raise JsonError(422, "invalid_package", "the package opened but holds nothing readable; ask the sender")
    return web.json_response({"friendly_name": outcome.friendly_name, "imported": list(outcome.imported)})


# ------------------------------------------------------------------ pages


async def code_page(request: web.Request) -> web.Response:
    await require_person(request)
    return render(request, "pickup_code.html", code=request.query.get("code", "")[:64], error=None)


async def code_form(request: web.Request) -> web.Response:
    person = await require_person(request)
    found = await edge.typed_code(request, "pickup_code.html", lambda services: services.packages)
    if isinstance(found, web.Response):
        return found
    code, question = found
    return await _answer_page(request, person, code.display, question)


async def _answer_page(request: web.Request, person: Person, code: str, question: Question, *,
                       error: str | None = None, status: int = 200, chosen: int | None = None) -> web.Response:
    records = [r for r in await access.records_of(context(request).store, person.id) if access.can_write(r.role)]
    return render(request, "pickup_answer.html", status=status, code=code, question=question.question,
                  records=records, chosen=chosen if chosen is not None else (records[0].record_id if records else None),
                  error=error)


async def redeem_form(request: web.Request) -> web.Response:
    person = await require_person(request)
    form = await request.post()
    await check_csrf(request, form)
    ctx = context(request)
    typed, answer, raw = str(form.get("code", ""))[:64], str(form.get("answer", "")), str(form.get("record", ""))
    at = ctx.clock()
    try:
        code = edge.code_of(typed)
    except JsonError:
        return render(request, "pickup_code.html", status=400, code=typed, error="That is not a code.")
    svc = edge.services(request).packages
    writable = {r.record_id: r for r in await access.records_of(ctx.store, person.id) if access.can_write(r.role)}
    record = writable.get(int(raw)) if raw.isdigit() and len(raw) <= 18 else None
    if record is None:
        question = await svc.lookup(code, at=at)
        if isinstance(question, Refused):
            return render(request, "pickup_code.html", status=edge.STATUS[question.reason], code=typed,
                          error=edge.WORDS[question.reason])
        return await _answer_page(request, person, code.display, question, status=400,
                                  error="Choose one of your records.")
    if not edge.allowed(request, ctx, at):
        return render(request, "pickup_code.html", status=429, code=typed, error="Too many tries. Wait a minute.")
    outcome = await svc.redeem(code, answer, person.id, record.record_id, at=at)
    edge.observe(request, outcome, at)
    if isinstance(outcome, Refused):
        return render(request, "pickup_code.html", status=edge.STATUS[outcome.reason], code=typed,
                      error=edge.WORDS[outcome.reason])
    if isinstance(outcome, WrongAnswer):
        if outcome.attempts_remaining == 0:
            return render(request, "pickup_code.html", status=423, code=typed, error=edge.wrong_words(outcome))
        question = await svc.lookup(code, at=at)
        assert isinstance(question, Question)
        return await _answer_page(request, person, code.display, question, status=401, chosen=record.record_id,
                                  error=edge.wrong_words(outcome))
    if isinstance(outcome, Unreadable):
        return render(request, "pickup_code.html", status=422, code=typed,
                      error="The package opened but holds nothing readable. Ask whoever sent it.")
    return render(request, "pickup_done.html", friendly_name=outcome.friendly_name, count=len(outcome.imported),
                  record=record)


def setup(app: web.Application, ctx: BridgeContext) -> None:
    svc = edge.install(app, ctx)
    app.cleanup_ctx.append(sweeping(svc.connect, svc.packages, ctx.clock))
    app.router.add_post("/v1/packages:allocate", allocate)
    app.router.add_post("/v1/packages", drop_off)
    app.router.add_delete("/v1/packages", delete_external)
    app.router.add_delete("/v1/packages/{code}", delete_one)
    app.router.add_patch("/v1/packages/{code}", rename)
    app.router.add_post("/v1/pickup/lookup", lookup)
    app.router.add_post("/v1/pickup/redeem", redeem)
    app.router.add_get("/pickup", code_page)
    app.router.add_post("/pickup", code_form)
    app.router.add_post("/pickup/redeem", redeem_form)


