"""Running ``directgw bridge``: the composition root of the bridge on its own."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from datetime import UTC, datetime

from gateway import logs
from gateway.config import Config
from gateway.service.settings import ServeSettingsError
from gateway.store import open_store

from .args import UsageError
from .configured import configuration, guard


def utc_now() -> datetime:
    return datetime.now(UTC)  # a composition root: the one place that reads the clock


async def run_bridge(config: Config, listen: str | None) -> int:
    from records_bridge.store import RecordStore
    from records_bridge.web.context import BridgeContext
    from records_bridge.web.server import start_bridge
    from records_bridge.web.settings import DEFAULT_LISTEN, settings_from_config

    try:
        settings = settings_from_config(config, listen_override=listen, default_listen=DEFAULT_LISTEN)
    except ServeSettingsError as exc:
        raise UsageError(str(exc)) from exc
    assert settings.listen is not None
    store = await open_store(config.storage_url)
    try:
        ctx = BridgeContext(store=store, records=RecordStore(store), clock=utc_now, settings=settings)
        try:
            running = await start_bridge(ctx, settings.listen.host, settings.listen.port)
        except OSError as exc:
            print(f"directgw bridge: cannot listen on {settings.listen}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f"directgw bridge: listening on {settings.listen.host}:{running.port} ({settings.base_url})",
              file=sys.stderr, flush=True)
        await stop.wait()
        await running.close()
    finally:
        await store.close()
    return 0


def cmd_bridge(args: argparse.Namespace) -> int:
    def run() -> int:
        config = configuration(args, required=True)
        assert config is not None
        level = args.log_level or "info"  # a service says what it does unless told otherwise
        logs.configure(json=True, level=level, service=True)
        return asyncio.run(run_bridge(config, args.listen))

    return guard(run)
