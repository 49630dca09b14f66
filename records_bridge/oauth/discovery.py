"""Metadata documents (RFC 8414, SMART App Launch 2.0 ``.well-known/smart-configuration``)
and per-install client registration (RFC 7591, spec section 5)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from records_bridge.web.account import client_ip
from records_bridge.web.context import BridgeContext, context
from records_bridge.web.errors import json_error
from records_bridge.web.refusals import Refusal

from . import scopes as sc
from .clients import ClientError, ClientStore

MAX_REGISTRATION_BYTES = 16 * 1024
"""A registration is a few hundred bytes of JSON; more is not one."""

SUPPORTED_SCOPES = sorted({
    "openid", "fhirUser", "launch/patient", sc.OFFLINE, "patient/DocumentReference.rs", "patient/DocumentReference.c",
    "patient/DocumentReference.crs", "patient/Binary.r", "records.*.r", "records.*.cr", "records.file.cr",
    sc.CONNECT, sc.PACKAGES, sc.INBOUND,
})


def _endpoints(base: str) -> dict[str, Any]:
    return {
        "issuer": base,
        "authorization_endpoint": f"{base}/oauth/authorize",
        "token_endpoint": f"{base}/oauth/token",
        "revocation_endpoint": f"{base}/oauth/revoke",
        "registration_endpoint": f"{base}/oauth/register",
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "none"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": SUPPORTED_SCOPES,
    }


async def oauth_metadata(request: web.Request) -> web.Response:
    base = context(request).settings.base_url
    return web.json_response({
        **_endpoints(base),
        "response_modes_supported": ["query", "form_post"],
        "authorization_response_iss_parameter_supported": True,
    })


async def smart_configuration(request: web.Request) -> web.Response:
    base = context(request).settings.base_url
    return web.json_response({
        **_endpoints(base),
        "capabilities": [
            "launch-standalone", "client-public", "client-confidential-symmetric", "context-standalone-patient",
            "permission-offline", "permission-patient", "permission-v2",
        ],
    })


async def register(request: web.Request) -> web.Response:
    """RFC 7591 3: ``software_id`` names the master (public) client; the instance inherits its settings."""
    ctx = context(request)
    at = ctx.clock()
    if not ctx.limits.registration.allow("ip:" + client_ip(request), at=at):
        ctx.refusals.count(Refusal.RATE_LIMITED, path=request.path, ip=client_ip(request))
        return json_error(429, "too_many_requests", "too many registrations from this address; try later",
                          headers={"Retry-After": "3600"})
    raw = await request.content.read(MAX_REGISTRATION_BYTES + 1)
    if len(raw) > MAX_REGISTRATION_BYTES:
        return json_error(400, "invalid_client_metadata", "registration too large")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return json_error(400, "invalid_client_metadata", "the body must be a JSON object")
    if not isinstance(body, dict):
        return json_error(400, "invalid_client_metadata", "the body must be a JSON object")
    software_id, name = body.get("software_id"), body.get("client_name", "")
    if not isinstance(software_id, str) or not isinstance(name, str):
        return json_error(400, "invalid_client_metadata", "software_id (the app's client_id) is required")
    method = body.get("token_endpoint_auth_method", "none")
    if method != "none":
        return json_error(400, "invalid_client_metadata", "instances are public clients: token_endpoint_auth_method none")
    clients = ClientStore(ctx.store, ctx.settings.secret("client-secret"))
    try:
        instance = await clients.register_instance(software_id, name, at=at)
    except ClientError as exc:
        return json_error(400, "invalid_software_statement" if "software_id" in str(exc) else "invalid_client_metadata",
                          str(exc))
    wanted = body.get("redirect_uris")
    if wanted is not None and (not isinstance(wanted, list) or not set(wanted) <= set(instance.redirect_uris)):
        await clients.remove(instance.client_id)
        return json_error(400, "invalid_redirect_uri", "an instance may only use its application's redirect URIs")
    return web.json_response({
        "client_id": instance.client_id,
        "client_id_issued_at": int(at.timestamp()),
        "client_name": instance.name,
        "software_id": software_id,
        "redirect_uris": list(instance.redirect_uris),
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "scope": sc.join(instance.allowed_scopes),
    }, status=201, headers={"Cache-Control": "no-store"})


def setup(app: web.Application, ctx: BridgeContext) -> None:
    app.router.add_get("/.well-known/oauth-authorization-server", oauth_metadata)
    app.router.add_get("/.well-known/smart-configuration", smart_configuration)
    app.router.add_post("/oauth/register", register)
