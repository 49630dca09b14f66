"""The bridge's aiohttp application: ``build_app(ctx)``.

Each feature module exposes ``setup(app, ctx)`` adding its routes; the order
below is the order they are added (routes do not overlap, so it only
matters for readability). Security headers and the CSRF cookie are added to
every response by ``security.on_prepare``.
"""

from __future__ import annotations

from aiohttp import web

from records_bridge import inbound_routes
from records_bridge.admin import routes as admin_routes
from records_bridge.api import pages as item_pages
from records_bridge.api import routes as items_routes
from records_bridge.connect import routes as connect_routes
from records_bridge.fhir import routes as fhir_routes
from records_bridge.oauth import api as oauth_api
from records_bridge.oauth import endpoints as oauth_endpoints
from records_bridge.packages import routes as packages_routes

from . import account, security
from .context import CONTEXT, BridgeContext
from .pages import STATIC

MAX_REQUEST_BYTES = 32 * 1024 * 1024
"""A package may hold 20 MiB (spec section 4), base64 in JSON adds a third."""


def build_app(ctx: BridgeContext) -> web.Application:
    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    app[CONTEXT] = ctx
    app.on_response_prepare.append(security.on_prepare)
    app.router.add_static("/static/", STATIC, show_index=False)
    account.setup(app, ctx)
    oauth_endpoints.setup(app, ctx)
    oauth_api.setup(app, ctx)
    connect_routes.setup(app, ctx)
    packages_routes.setup(app, ctx)
    inbound_routes.setup(app, ctx)
    items_routes.setup(app, ctx)
    fhir_routes.setup(app, ctx)
    item_pages.setup(app, ctx)
    admin_routes.setup(app, ctx)
    return app
