"""What every command reads from its arguments and environment the same way."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from gateway.config import DEFAULT_CONFIG_NAME

CONFIG_ENV = "DIRECTGW_CONFIG"


class UsageError(Exception):
    """A file or option the command cannot use; printed as one line, exit 2."""


def config_path(given: Path | str | None) -> Path:
    """``--config``, else ``$DIRECTGW_CONFIG``, else ``./directgw.toml``."""
    if given is not None:
        return Path(given)
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_NAME)


def parse_at(value: str | None) -> datetime:
    """``--at`` as an aware time (a time without a zone is UTC), or now."""
    if value is None:
        return datetime.now(UTC)  # the CLI is a composition root: it may read the clock
    try:
        at = datetime.fromisoformat(value)
    except ValueError as exc:
        raise UsageError(f"--at {value!r} is not an ISO 8601 time") from exc
    return at if at.tzinfo else at.replace(tzinfo=UTC)
