"""The service's HTTP listener on loopback: health follows the database, and
metrics are read from the store, so every process answers for the whole gateway."""

from __future__ import annotations

from datetime import timedelta

import aiohttp
from sqlalchemy import insert

from gateway.service.http import HttpStatus, start_http
from gateway.store import messaging, open_store
from tests.pki import NOW
from tests.storage_fixtures import store_fixture, store_url_fixture  # noqa: F401 -- fixtures


async def _get(runner, path: str) -> tuple[int, str]:
    host, port = runner.addresses[0][:2]
    async with aiohttp.ClientSession() as session, session.get(f"http://{host}:{port}{path}") as response:
        return response.status, await response.text()


async def test_health_and_metrics_come_from_the_store(store):
    async with store.begin() as conn:
        await conn.execute(
            insert(messaging.messages),
            [
                {"direction": "in", "kind": "message", "received_at": NOW, "mail_from": "a@a.test", "size": 1,
                 "sha256": "0" * 64, "state": state, "updated_at": NOW}
                for state in ("delivered", "delivered", "rejected")
            ],
        )
    status = HttpStatus(store, clock=lambda: NOW + timedelta(seconds=90), node="node-1", started_at=NOW,
                        process_gauges={"directgw_smtp_sessions_open": lambda: 3})
    runner = await start_http(status, "127.0.0.1", 0)
    try:
        code, body = await _get(runner, "/healthz")
        assert code == 200 and '"ok"' in body and "node-1" in body
        code, metrics = await _get(runner, "/metrics")
        assert code == 200
        assert 'directgw_messages{direction="in",kind="message",state="delivered"} 2.0' in metrics
        assert 'directgw_messages{direction="in",kind="message",state="rejected"} 1.0' in metrics
        assert "directgw_uptime_seconds 90.0" in metrics
        assert "directgw_smtp_sessions_open 3.0" in metrics
    finally:
        await runner.cleanup()


async def test_health_is_503_when_the_database_is_unreachable():
    store = await open_store("postgresql+asyncpg://postgres@127.0.0.1:1/nothing", migrate=False)
    status = HttpStatus(store, clock=lambda: NOW, node="n", started_at=NOW)
    runner = await start_http(status, "127.0.0.1", 0)
    try:
        code, body = await _get(runner, "/healthz")
        assert code == 503 and "unhealthy" in body
    finally:
        await runner.cleanup()
        await store.close()
