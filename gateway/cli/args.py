"""What every command reads from its arguments and environment the same way,
and the one exit-code convention every command follows.

Exit codes (printed by ``directgw --help``): 0 when the command did what was
asked (a message trusted, opened or sealed; a setting stored), 1 when it was
refused or failed (an untrusted signer, a rejected message, a file that is
not what its option needs, a database or network failure), 2 when the
command line itself is wrong (argparse's own errors are 2 as well). An
interrupted command exits 130, as shells expect.

This module stays light: building the parser imports it, and ``directgw
--help`` must not pay for the database or the network layers.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from gateway.config import DEFAULT_CONFIG_NAME

CONFIG_ENV = "DIRECTGW_CONFIG"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = (
    "exit status: 0 done (trusted, opened, sealed, stored); 1 refused or failed (untrusted, rejected, "
    "a file that is not what its option needs, a database or network failure); 2 usage error; "
    "130 interrupted"
)

CONFIG_HELP = f"configuration file (default ${CONFIG_ENV} or ./{DEFAULT_CONFIG_NAME})"


class UsageError(Exception):
    """The command line is wrong (an option missing, a malformed value): one line, exit 2."""


class CommandFailed(Exception):
    """The command could not do what was asked (a file that is not what its
    option needs, a refusal): one line, exit 1."""


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """``--config`` on a subcommand, as well as before it.

    ``default=SUPPRESS``: argparse copies a subcommand's defaults over what the
    main parser read, so a default here would erase ``directgw --config F cmd``.
    """
    parser.add_argument("--config", type=Path, metavar="FILE", default=argparse.SUPPRESS, help=CONFIG_HELP)


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


def fail(exc: Exception) -> int:
    """Print a refusal or usage error as one line; its exit code."""
    print(f"directgw: {exc}", file=sys.stderr)
    return EXIT_USAGE if isinstance(exc, UsageError) else EXIT_FAILED


def warn(message: str) -> None:
    """A warning: the command still does what was asked."""
    print(f"warning: {message}", file=sys.stderr)


def lazy(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    """A command function imported only when its command runs.

    The parser is built for every invocation (``--help`` included); importing
    each command's implementation then would load SQLAlchemy, Alembic and
    aiohttp for a command that needs none of them.
    """

    def run(args: argparse.Namespace) -> int:
        return int(getattr(importlib.import_module(module), name)(args))

    run.__qualname__ = f"{module}.{name}"
    return run
