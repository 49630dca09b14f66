"""The app API's account calls (spec section 2): ``GET /v1/me`` (≈ GetPersonInfo),
``GET /v1/authorized-people`` (≈ GetAuthorizedPeople, client-credentials) and
``DELETE /v1/records/{rid}/grant`` (≈ RemoveApplicationRecordAuthorization)."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime

from aiohttp import web
from sqlalchemy import Connection, select

from records_bridge import schema as records_schema
from records_bridge.people import person_in
from records_bridge.web.context import BridgeContext, context
from records_bridge.web.errors import JsonError
from records_bridge.web.refusals import Refusal

from . import schema as s
from .bearer import bearer
from .tokens import Acting, revoke_grant_in

PEOPLE_PAGE_DEFAULT = 100
PEOPLE_PAGE_MAX = 500
"""Spec section 2 (≈ GetAuthorizedPeople's num-results): default 100, at most 500."""


async def me(request: web.Request) -> web.Response:
    token = await bearer(request, kind=Acting.USER)
    ctx = context(request)
    assert token.person_id is not None

    def read(conn: Connection) -> dict[str, object]:
        person = person_in(conn, token.person_id)  # type: ignore[arg-type]
        g, r = s.grants, records_schema.records
        rows = conn.execute(
            select(g.c.record_id, g.c.auth_action, g.c.scopes, g.c.created_at, r.c.display_name)
            .join(r, r.c.id == g.c.record_id)
            .where(g.c.client_pk == token.client_pk, g.c.person_id == token.person_id, g.c.revoked_at.is_(None))
            .order_by(g.c.record_id)
        ).all()
        return {
            "person": {"id": str(token.person_id), "name": person.display_name if person else None,
                       "email": person.email if person else None},
            "selected_record": str(token.record_id) if token.record_id is not None else None,
            "records": [{"id": str(row.record_id), "name": row.display_name, "auth_action": row.auth_action,
                         "scopes": row.scopes.split(), "authorized_at": row.created_at.isoformat()}
                        for row in rows],
        }

    return web.json_response(await ctx.store.read(read))


def _cursor(value: str | None) -> int:
    """The opaque cursor is the last person id of the previous page, base64url-encoded."""
    if not value:
        return 0
    try:
        decoded = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        decoded = ""
    if not decoded.isdigit() or len(decoded) > 18:
        raise JsonError(400, "invalid_request", "cursor is not one this service returned")
    return int(decoded)


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


@dataclass(frozen=True, slots=True)
class _Page:
    people: list[dict[str, object]]
    more: bool
    last: int


async def authorized_people(request: web.Request) -> web.Response:
    token = await bearer(request, kind=Acting.CLIENT)
    ctx = context(request)
    after = _cursor(request.query.get("cursor"))
    since = _since(request.query.get("since"))
    raw_limit = request.query.get("limit", str(PEOPLE_PAGE_DEFAULT))
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= PEOPLE_PAGE_MAX:
        raise JsonError(400, "invalid_request", f"limit is 1..{PEOPLE_PAGE_MAX}")
    limit = int(raw_limit)
    g, c = s.grants, s.oauth_clients

    def read(conn: Connection) -> _Page:
        mine = [token.client_pk, *conn.execute(select(c.c.id).where(c.c.master_id == token.client_pk)).scalars()]
        live = [g.c.client_pk.in_(mine), g.c.revoked_at.is_(None), g.c.person_id > after]
        if since is not None:
            live.append(g.c.created_at >= since)
        ids = conn.execute(
            select(g.c.person_id).where(*live).group_by(g.c.person_id).order_by(g.c.person_id).limit(limit + 1)
        ).scalars().all()
        page = list(ids[:limit])
        people: list[dict[str, object]] = []
        for person_id in page:
            grants = conn.execute(
                select(g.c.record_id, g.c.auth_action, g.c.created_at)
                .where(*live[:2], g.c.person_id == person_id).order_by(g.c.record_id)
            ).all()
            person = person_in(conn, person_id)
            people.append({
                "person_id": str(person_id), "name": person.display_name if person else None,
                "records": [{"id": str(r.record_id), "auth_action": r.auth_action,
                             "authorized_at": r.created_at.isoformat()} for r in grants],
            })
        return _Page(people, len(ids) > limit, page[-1] if page else after)

    page = await ctx.store.read(read)
    body: dict[str, object] = {"people": page.people, "more_results": page.more}
    if page.more:
        body["next_cursor"] = base64.urlsafe_b64encode(str(page.last).encode()).decode().rstrip("=")
    return web.json_response(body)


async def delete_grant(request: web.Request) -> web.Response:
    token = await bearer(request, kind=Acting.USER)
    ctx = context(request)
    rid = request.match_info["rid"]
    if not rid.isdigit() or not token.allows_record(int(rid)):
        ctx.refusals.count(Refusal.FOREIGN_GRANT, client=token.client_id, record=rid[:20])
        raise JsonError(404, "not_found", "this token holds no grant on that record")
    at = ctx.clock()
    assert token.person_id is not None
    person_id = token.person_id
    await ctx.store.run(lambda conn: revoke_grant_in(conn, token.client_pk, person_id, int(rid), at=at))
    return web.Response(status=204)


def setup(app: web.Application, ctx: BridgeContext) -> None:
    app.router.add_get("/v1/me", me)
    app.router.add_get("/v1/authorized-people", authorized_people)
    app.router.add_delete("/v1/records/{rid}/grant", delete_grant)
