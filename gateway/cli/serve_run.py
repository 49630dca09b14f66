"""Running ``serve``: one worker in this process, or N worker processes on one port."""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import signal
import sys
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from gateway import logs
from gateway.config import Config, load_config

if TYPE_CHECKING:
    from gateway.service.settings import ServeSettings

from .args import UsageError
from .configured import configuration, guard

MAX_WORKERS = 64


def _settings(args: argparse.Namespace, config: Config) -> ServeSettings:
    from gateway.service.settings import (
        ServeSettingsError,
        parse_listen,
        serve_settings,
        with_submission,
    )

    try:
        settings = serve_settings(config.tables, config.path.parent)
        if args.smtp:
            settings = replace(settings, smtp=parse_listen("--smtp", args.smtp))
        if args.http:
            settings = replace(settings, http=None if args.http == "off" else parse_listen("--http", args.http))
        if args.submission:
            settings = with_submission(settings, args.submission)
    except ServeSettingsError as exc:
        raise UsageError(str(exc)) from exc
    return settings


def cmd_serve(args: argparse.Namespace) -> int:
    def run() -> int:
        if not 1 <= args.workers <= MAX_WORKERS:
            raise UsageError(f"--workers {args.workers}: give 1 to {MAX_WORKERS}")
        config = configuration(args, required=True)
        assert config is not None
        settings = _settings(args, config)
        level = args.log_level or "info"  # a service says what it does unless told otherwise
        logs.configure(json=True, level=level, service=True)
        if args.workers == 1:
            return asyncio.run(serve_one(config, settings, first_worker=True, reuse_port=False))
        return _serve_many(config, settings, args.workers, level)

    return guard(run)


async def serve_one(config: Config, settings: ServeSettings, *, first_worker: bool, reuse_port: bool) -> int:
    from gateway.service.app import start_service
    from gateway.service.settings import CannotListen

    try:
        running = await start_service(config, settings, first_worker=first_worker, reuse_port=reuse_port)
    except CannotListen as exc:
        hint = " (ports under 1024 need root or CAP_NET_BIND_SERVICE)" if 0 < exc.port < 1024 else ""
        print(f"directgw serve: {exc}{hint}", file=sys.stderr)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    http = f", HTTP on {settings.http.host}:{running.http_port}" if settings.http and running.http_port else ""
    if settings.submission is not None and running.submission is not None:
        http += f", submission on {settings.submission.host}:{running.submission.port}"
    print(f"directgw serve: SMTP on {settings.smtp.host}:{running.smtp_port}{http}", file=sys.stderr, flush=True)
    await stop.wait()
    await running.stop()
    return 0


def _worker(path: Path, settings: ServeSettings, index: int, level: str) -> None:
    logs.configure(json=True, level=level, service=True)
    config = load_config(path)  # read again here: a Config's tables do not pickle
    sys.exit(asyncio.run(serve_one(config, settings, first_worker=index == 0, reuse_port=True)))


def _serve_many(config: Config, settings: ServeSettings, workers: int, level: str) -> int:
    """N processes, each binding the SMTP (and HTTP) port with SO_REUSEPORT; SIGTERM is passed on."""
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_worker, args=(config.path, settings, i, level), name=f"directgw-worker-{i}")
        for i in range(workers)
    ]
    for process in processes:
        process.start()

    def forward(signum: int, _frame: FrameType | None) -> None:
        for process in processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signum)  # each worker stops gracefully on SIGTERM or SIGINT

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for process in processes:
        process.join()
    return 0 if all(p.exitcode == 0 for p in processes) else 1
