"""Messages into the record over HTTP (spec section 6).

``POST /v1/inbound/messages``: a trusted gateway's client-credentials token with scope
``inbound.messages``. 201 ``{"status": "delivered", "record_id", "items"}`` for a record's
address (200 ``"duplicate"`` for a repeat of the same ``message_id``, or of the same message
when it has none: nothing is added); 202 ``{"status": "held", "code", "expires_at", "contact"}`` for ``newuser@`` (the
gateway mails the code to the contact: the bridge has no mail sender); 404
``unknown_recipient`` otherwise, which the gateway turns into a bounce.

``POST /v1/records/{rid}/address``: the record's custodian, signed in (``X-CSRF-Token``),
gives the record an address on one of the gateway's domains.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from sqlalchemy.exc import IntegrityError

from gateway.domains import LocalDomains

from . import access
from .connect import edge
from .inbound import (
    Delivered,
    Held,
    InboundError,
    InboundProblem,
    check_record_address,
    parse_message,
)
from .oauth import scopes as sc
from .oauth.bearer import Acting, bearer
from .store import RecordError
from .web.context import BridgeContext, context
from .web.errors import JsonError
from .web.pages import check_csrf, current_person

MAX_INBOUND_REQUEST = 96 * 1024 * 1024
"""64 MiB of content (inbound.MAX_INBOUND_BYTES) is 85.4 MiB in base64, plus the JSON around it."""

_STATUS = {InboundProblem.INVALID_REQUEST: 400, InboundProblem.INVALID_SUBJECT: 400,
           InboundProblem.INVALID_ANSWER: 400, InboundProblem.TOO_LARGE: 413}


async def inbound_message(request: web.Request) -> web.Response:
    token = await bearer(request, scopes=[sc.INBOUND], kind=Acting.CLIENT)
    body = await edge.json_body(request, MAX_INBOUND_REQUEST)
    ctx = context(request)
    try:
        message = await asyncio.to_thread(parse_message, body)  # base64 of up to 64 MiB
        outcome = await edge.services(request).inbound.receive(token.client_id, message, at=ctx.clock())
    except InboundError as exc:
        raise JsonError(_STATUS[exc.problem], exc.problem.value, exc.detail) from None
    if isinstance(outcome, Delivered):
        return web.json_response({"status": "duplicate" if outcome.duplicate else "delivered",
                                  "record_id": str(outcome.record_id), "items": list(outcome.items)},
                                 status=200 if outcome.duplicate else 201)
    if isinstance(outcome, Held):
        return web.json_response({"status": "held", "code": outcome.package.code.display,
                                  "expires_at": edge.iso(outcome.package.expires_at), "contact": outcome.contact},
                                 status=202, headers={"Cache-Control": "no-store"})
    raise JsonError(404, "unknown_recipient", f"no record has the address {outcome.address}")


async def record_address(request: web.Request) -> web.Response:
    person = await current_person(request)
    if person is None:
        raise JsonError(401, "sign_in_required", "sign in first")
    await check_csrf(request, {})
    ctx = context(request)
    rid = request.match_info["rid"]
    if not rid.isdigit() or len(rid) > 18 or not access.can_write(await access.role(ctx.store, person.id, int(rid))):
        raise JsonError(403, "forbidden", "only the record's custodian may give it an address")
    body = await edge.json_body(request)
    try:
        address = check_record_address(body.get("address"), await LocalDomains(ctx.store).names())
        await ctx.records.add_address(int(rid), address, at=ctx.clock())
    except InboundError as exc:
        raise JsonError(400, exc.problem.value, exc.detail) from None
    except (RecordError, IntegrityError):
        raise JsonError(409, "address_taken", "that address belongs to a record already") from None
    return web.json_response({"record_id": rid, "address": address}, status=201)


def setup(app: web.Application, ctx: BridgeContext) -> None:
    edge.install(app, ctx)
    app.router.add_post("/v1/inbound/messages", inbound_message)
    app.router.add_post("/v1/records/{rid}/address", record_address)
