"""Entry point of the ``directgw`` command.

Each command group lives in its own module exposing ``register(subparsers)``;
a registered command sets ``func`` (taking the parsed arguments, returning an
exit code, see ``args`` for the convention). Async commands run their
coroutine through ``asyncio.run`` and nowhere else.

Building the parser imports only what the arguments need: the database
(SQLAlchemy, Alembic) and the network clients are imported by the commands
that use them, when they run (``args.lazy``), so ``--help`` and the message
commands (``open``, ``seal``, ``verify``) start fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

from .args import CONFIG_HELP, EXIT_CODES_HELP, EXIT_FAILED, EXIT_INTERRUPTED

COMMAND_MODULES = (
    "gateway.cli.message",
    "gateway.cli.demo",
    "gateway.cli.verify",
    "gateway.cli.discovery",
    "gateway.cli.admin",
    "gateway.cli.records",
    "gateway.cli.accounts",
    "gateway.cli.serve",
    "gateway.cli.reference",
    "gateway.cli.clients",
    "gateway.cli.people",
    "gateway.cli.bridge",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="directgw", description="Secure Direct messaging gateway", epilog=EXIT_CODES_HELP,
    )
    parser.add_argument("--config", type=Path, metavar="FILE", help=CONFIG_HELP + "; also accepted after the command")
    parser.add_argument("--log-json", action="store_true", help="logs as JSON lines (for servers)")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"],
                        help="least severe log level written to stderr (default warning; info for serve and bridge)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from gateway import logs

    logs.configure(json=args.log_json, level=args.log_level or "warning")
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
