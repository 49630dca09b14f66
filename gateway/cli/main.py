"""Entry point of the ``directgw`` command.

Each command group lives in its own module exposing ``register(subparsers)``;
a registered command sets ``func`` (taking the parsed arguments, returning an
exit code). Async commands run their coroutine through ``asyncio.run`` here and
nowhere else.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from gateway import logs

COMMAND_MODULES = (
    "gateway.cli.message",
    "gateway.cli.demo",
    "gateway.cli.verify",
    "gateway.cli.discovery",
    "gateway.cli.admin",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="directgw", description="Secure Direct messaging gateway")
    parser.add_argument("--log-json", action="store_true", help="logs as JSON lines (for servers)")
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.configure(json=args.log_json, level=args.log_level)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
