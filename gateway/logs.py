"""Structured logs (structlog): key-value events, JSON lines in production, readable on a terminal.

Configured once by the composition root (the CLI's ``main``); modules take a
logger with ``structlog.get_logger(__name__)`` and bind context (message id,
peer, domain) rather than formatting strings.
"""

from __future__ import annotations

import logging
import sys

import structlog


def configure(*, json: bool, level: str = "info") -> None:
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
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
