"""The authorization server's HTTP routes, added in one ``setup``."""

from __future__ import annotations

from aiohttp import web

from records_bridge.web.context import BridgeContext

from . import authorize, discovery, token_endpoint


def setup(app: web.Application, ctx: BridgeContext) -> None:
    authorize.setup(app, ctx)
    token_endpoint.setup(app, ctx)
    discovery.setup(app, ctx)
