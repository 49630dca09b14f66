"""``directgw accounts``: the EHR accounts that may submit on port 587.

Registration only (light imports); the commands run from ``accounts_run``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .args import add_config_option, lazy


def register(sub: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    add_config_option(common)
    listing = argparse.ArgumentParser(add_help=False, parents=[common])
    listing.add_argument("--json", action="store_true", help="print as JSON")
    password = argparse.ArgumentParser(add_help=False)
    password.add_argument(
        "--password-file", type=Path, metavar="FILE",
        help="read the password from the first line of FILE (at least 15 characters); "
        "without it a password is generated and printed once",
    )

    acc = sub.add_parser(
        "accounts", help="EHR accounts for authenticated submission (port 587): add, list, remove, passwd",
    ).add_subparsers(metavar="ACTION", required=True)
    p = acc.add_parser("add", parents=[common, password], help="add an account that sends from a local domain")
    p.add_argument("name", help="the login (SMTP AUTH user name): a-z 0-9 . _ @ + -, at most 64")
    p.add_argument("--domain", required=True, help="the local domain whose addresses it may send from")
    p.set_defaults(func=lazy("gateway.cli.accounts_run", "cmd_add"))
    p = acc.add_parser("list", parents=[listing], help="list accounts with their domains")
    p.set_defaults(func=lazy("gateway.cli.accounts_run", "cmd_list"))
    p = acc.add_parser("remove", parents=[common], help="remove an account (its sessions end at their next MAIL)")
    p.add_argument("name", help="the account's name")
    p.set_defaults(func=lazy("gateway.cli.accounts_run", "cmd_remove"))
    p = acc.add_parser("passwd", parents=[common, password], help="set a new password for an account")
    p.add_argument("name", help="the account's name")
    p.set_defaults(func=lazy("gateway.cli.accounts_run", "cmd_passwd"))
