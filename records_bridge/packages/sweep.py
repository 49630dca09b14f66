"""The purge sweep: expired, locked and deleted packages lose their envelopes, dead connect
requests their verifiers (spec section 4: "purged within 24 h").

It runs wherever the bridge runs (``directgw bridge`` and ``directgw serve`` with
``[bridge] listen``) as part of the bridge application's life (``cleanup_ctx``): once at
start, then every ``SWEEP_INTERVAL``. Several workers or nodes may sweep at once; each
sweep is one idempotent UPDATE per table.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime

import structlog
from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from gateway.store import StoreError

from ..connect.store import ConnectRequests
from .store import SWEEP_INTERVAL, Packages

log = structlog.get_logger("records_bridge.sweep")


async def sweep_once(connect: ConnectRequests, packages: Packages, *, at: datetime) -> tuple[int, int]:
    """(connect requests newly expired, package envelopes purged)."""
    return await connect.sweep(at=at), await packages.sweep(at=at)


async def run_sweeps(connect: ConnectRequests, packages: Packages, clock: Callable[[], datetime],
                     interval: float) -> None:
    while True:
        try:
            expired, purged = await sweep_once(connect, packages, at=clock())
            if expired or purged:
                log.info("bridge.sweep", connect_expired=expired, envelopes_purged=purged)
        except (SQLAlchemyError, StoreError, OSError) as exc:
            # a database hiccup must not end the sweeping; the next round catches up
            log.error("bridge.sweep-failed", error=repr(exc))
        await asyncio.sleep(interval)


def sweeping(connect: ConnectRequests, packages: Packages, clock: Callable[[], datetime],
             ) -> Callable[[web.Application], AsyncIterator[None]]:
    """An aiohttp ``cleanup_ctx`` entry: the sweep runs while the app does."""

    async def life(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(run_sweeps(connect, packages, clock, SWEEP_INTERVAL.total_seconds()),
                                   name="bridge-sweep")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return life
