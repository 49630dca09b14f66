"""Bearer tokens on the app API (RFC 6750): ``await bearer(request, scopes=...)``.

A missing, unknown, expired or revoked token answers 401 ``invalid_token``
with ``WWW-Authenticate: Bearer`` (RFC 6750 3.1); a valid token lacking a
needed scope answers 403 ``insufficient_scope`` naming the scope. The token
is taken from the ``Authorization`` header only: never from the query
string, where it would end up in logs (RFC 6750 2.3 "SHOULD NOT").
"""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web

from records_bridge.web.context import context
from records_bridge.web.errors import JsonError
from records_bridge.web.refusals import Refusal

from .tokens import Acting, TokenContext, access_context_in

__all__ = ["Acting", "TokenContext", "bearer"]

MAX_TOKEN_LENGTH = 200
"""Ours are under 50 characters; anything much longer is not worth a database look-up."""


def _unauthorized(description: str, *, error: str | None = "invalid_token") -> JsonError:
    challenge = 'Bearer realm="records"' + (f', error="{error}", error_description="{description}"' if error else "")
    return JsonError(401, error or "invalid_token", description, headers={"WWW-Authenticate": challenge})


async def bearer(request: web.Request, *, scopes: Iterable[str] = (), kind: Acting | None = None) -> TokenContext:
    """The request's token context, holding every scope in ``scopes`` (and of ``kind`` when given)."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("an access token is required (Authorization: Bearer ...)", error=None)
    token = token.strip()
    if len(token) > MAX_TOKEN_LENGTH:
        raise _unauthorized("the access token is not valid")
    ctx = context(request)
    at = ctx.clock()
    found = await ctx.store.read(lambda conn: access_context_in(conn, token, at))
    if found is None:
        ctx.refusals.count(Refusal.INVALID_TOKEN, path=request.path, ip=request.remote)
        raise _unauthorized("the access token is unknown, expired or revoked")
    if kind is not None and found.kind is not kind:
        wanted = "a client-credentials token" if kind is Acting.CLIENT else "a token acting for a person"
        raise JsonError(403, "insufficient_scope", f"this call needs {wanted}")
    missing = sorted(set(scopes) - found.scopes)
    if missing:
        raise JsonError(403, "insufficient_scope", f"the token lacks the scope {' '.join(missing)}",
                        headers={"WWW-Authenticate": f'Bearer realm="records", error="insufficient_scope", '
                                                     f'scope="{" ".join(missing)}"'})
    return found
