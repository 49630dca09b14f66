"""``directgw config-reference``: every configuration key with its default (gateway.config_reference)."""

from __future__ import annotations

import argparse

from .args import EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config-reference", help="print every directgw.toml table and key with its default")
    p.add_argument("--markdown", action="store_true", help="as the README's section (between its markers)")
    p.set_defaults(func=cmd_reference)


def cmd_reference(args: argparse.Namespace) -> int:
    from gateway.config_reference import markdown, reference

    print(markdown() if args.markdown else reference(), end="")
    return EXIT_OK
