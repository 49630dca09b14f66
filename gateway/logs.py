"""Structured logs (structlog): key-value events, JSON lines in production, readable on a terminal.

Configured once by the composition root (the CLI's ``main``); modules take a
logger with ``structlog.get_logger(__name__)`` and bind context (message id,
peer, domain) rather than formatting strings.
"""

from __future__ import annotations

import logging
import sys

import structlog


def configure(*, json: bool, level: str = "info", service: bool = False) -> None:
    """``service``: the last configuration of a long-running process (``serve``, ``bridge``).
    Its loggers are then made once, at first use, and kept: structlog's module-level loggers
    otherwise build a bound logger at every call, even one the level filters out (1-2% of a
    busy gateway's CPU, docs/submission.md). Not for the CLI's first configuration, which a
    service's replaces, nor for tests, which reconfigure (``capture_logs``)."""
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=_StderrLogger,
        cache_logger_on_first_use=service,
    )


class _StderrLogger:
    """Writes each event to whatever ``sys.stderr`` is when the event happens.

    structlog's PrintLogger keeps the stream it was made with; a test runner
    that swaps and closes stderr between tests would then break logging."""

    def __init__(self, *_args: object) -> None:
        pass

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    log = debug = info = warning = warn = error = critical = exception = fatal = msg
