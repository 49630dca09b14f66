"""``directgw people``: people who sign in to the records bridge (registration; runs in ``clients_run``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .args import add_config_option, lazy


def register(sub: argparse._SubParsersAction) -> None:
    pe = sub.add_parser("people", help="people who sign in to the records bridge").add_subparsers(
        metavar="ACTION", required=True
    )
    p = pe.add_parser("add", help="add a person (or find them by e-mail) and give them access to a record")
    add_config_option(p)
    p.add_argument("email", help="their e-mail address (what they sign in with)")
    p.add_argument("--password-file", type=Path, metavar="FILE",
                   help="a file holding their password (its final newline is not part of it); without it "
                   "the person cannot sign in until a password is set")
    p.add_argument("--name", help="their name (default: the e-mail's local part)")
    p.add_argument("--record", help="a record (id or Direct address) they may act on")
    p.add_argument("--role", choices=("custodian", "viewer"), default="custodian",
                   help="custodian (read and write, authorize apps; default) or viewer (read)")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=lazy("gateway.cli.clients_run", "cmd_people_add"))
