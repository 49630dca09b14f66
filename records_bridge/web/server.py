"""Running the bridge: ``start_bridge`` (used by ``directgw bridge`` and by
``directgw serve`` when ``[bridge] listen`` is set) and its housekeeping.

Housekeeping deletes what has no further use: expired sessions, codes and
access tokens a day past their expiry (presented later they are unknown,
which is refused the same way), token families a month after their
revocation, and RFC 7591 instances nobody authorized within a day (spec
section 5). It runs at start and then every ``HOUSEKEEPING_INTERVAL``; on
several nodes each runs it, and the deletes are idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from aiohttp import web
from sqlalchemy import Connection, delete

from records_bridge.oauth import schema as s
from records_bridge.oauth.clients import purge_instances_in
from records_bridge.oauth.tokens import TokenKind

from .app import build_app
from .context import BridgeContext

log = structlog.get_logger("directgw.bridge")

HOUSEKEEPING_INTERVAL = 3600.0
"""Seconds; the longest retention rule is a day, so an hour late is within 5 %."""
CODE_RETENTION = timedelta(days=1)
ACCESS_TOKEN_RETENTION = timedelta(days=1)
"""An expired access token is refused as unknown just the same; a day keeps it for investigating."""
REVOKED_FAMILY_RETENTION = timedelta(days=30)
"""A revoked family's rotated refresh tokens are what recognises a replay; a month after revocation
a replay is refused as unknown instead (still invalid_grant), and the rows go."""


@dataclass(frozen=True)
class Housekept:
    sessions: int
    codes: int
    instances: int
    tokens: int = 0
    families: int = 0


def housekeeping_in(conn: Connection, at: datetime) -> Housekept:
    t, f = s.oauth_tokens, s.token_families
    sessions = conn.execute(delete(s.bridge_sessions).where(s.bridge_sessions.c.expires_at <= at)).rowcount
    codes = conn.execute(delete(s.oauth_codes).where(s.oauth_codes.c.expires_at <= at - CODE_RETENTION)).rowcount
    tokens = conn.execute(delete(t).where(t.c.kind == TokenKind.ACCESS.value,
                                          t.c.expires_at <= at - ACCESS_TOKEN_RETENTION)).rowcount
    families = conn.execute(delete(f).where(f.c.revoked_at <= at - REVOKED_FAMILY_RETENTION)).rowcount
    return Housekept(int(sessions), int(codes), purge_instances_in(conn, at), int(tokens), int(families))


@dataclass
class RunningBridge:
    runner: web.AppRunner
    port: int
    task: asyncio.Task[None]

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.runner.cleanup()


async def _housekeeping(ctx: BridgeContext) -> None:
    while True:
        try:
            done = await ctx.store.run(functools.partial(housekeeping_in, at=ctx.clock()))
            log.info("bridge.housekeeping", sessions=done.sessions, codes=done.codes, instances=done.instances,
                     tokens=done.tokens, families=done.families)
        except Exception as exc:  # a failed sweep must not stop the bridge; the next one retries
            log.error("bridge.housekeeping-failed", error=repr(exc))
        await asyncio.sleep(HOUSEKEEPING_INTERVAL)


async def start_bridge(ctx: BridgeContext, host: str, port: int, *, reuse_port: bool = False) -> RunningBridge:
    runner = web.AppRunner(build_app(ctx), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1] if runner.addresses else port
    log.info("bridge.started", listen=f"{host}:{bound}", base_url=ctx.settings.base_url)
    return RunningBridge(runner, bound, asyncio.create_task(_housekeeping(ctx), name="bridge-housekeeping"))
