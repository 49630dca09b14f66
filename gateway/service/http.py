"""The service's HTTP listener: ``/healthz`` and Prometheus ``/metrics``.

The message and queue figures are read from the database at scrape time,
not counted in process memory: with ``--workers N`` (and later several
nodes on one PostgreSQL database) every process answers for the whole
gateway, and a restart loses no count. Per-process figures (sessions open
here) come from the callables the composition root passes in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import func, select, text

from gateway.store import Store, messaging


@dataclass
class HttpStatus:
    """What the HTTP listener reports, given by the composition root."""

    store: Store
    clock: Callable[[], datetime]
    node: str
    started_at: datetime
    process_gauges: Mapping[str, Callable[[], float]] = field(default_factory=dict)
    """Name -> current value, for figures only this process knows (open SMTP sessions)."""


STATUS = web.AppKey("status", HttpStatus)


async def _healthz(request: web.Request) -> web.Response:
    status = request.app[STATUS]
    try:
        async with status.store.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure to reach the database is "unhealthy", said plainly
        return web.json_response({"status": "unhealthy", "database": type(exc).__name__}, status=503)
    return web.json_response({"status": "ok", "node": status.node})


async def _metrics(request: web.Request) -> web.Response:
    status = request.app[STATUS]
    registry = CollectorRegistry()
    messages = Gauge("directgw_messages", "Messages by direction, kind and state", ["direction", "kind", "state"],
                     registry=registry)
    outbound = Gauge("directgw_outbound", "Outbound queue entries by kind and state", ["kind", "state"],
                     registry=registry)
    oldest = Gauge("directgw_outbound_oldest_queued_seconds", "Age of the oldest queued outbound entry",
                   registry=registry)
    up = Gauge("directgw_uptime_seconds", "Seconds since this process started", registry=registry)
    m, o = messaging.messages, messaging.outbound
    async with status.store.engine.connect() as conn:
        for direction, kind, state, count in await conn.execute(
            select(m.c.direction, m.c.kind, m.c.state, func.count()).group_by(m.c.direction, m.c.kind, m.c.state)
        ):
            messages.labels(direction, kind, state).set(count)
        for kind, state, count in await conn.execute(select(o.c.kind, o.c.state, func.count()).group_by(o.c.kind, o.c.state)):
            outbound.labels(kind, state).set(count)
        first = await conn.scalar(select(func.min(o.c.created_at)).where(o.c.state == "queued"))
    now = status.clock()
    oldest.set((now - first).total_seconds() if first is not None else 0)
    up.set((now - status.started_at).total_seconds())
    for name, value in status.process_gauges.items():
        Gauge(name, name.replace("_", " "), registry=registry).set(value())
    return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


def http_app(status: HttpStatus) -> web.Application:
    app = web.Application()
    app[STATUS] = status
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/metrics", _metrics)
    return app


async def start_http(status: HttpStatus, host: str, port: int) -> web.AppRunner:
    """Listening on ``host:port`` (port 0: any free port; the runner's addresses say which)."""
    runner = web.AppRunner(http_app(status), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_port=True)
    await site.start()
    return runner
