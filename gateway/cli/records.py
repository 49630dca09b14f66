"""``directgw records | messages``: patients' records and what the gateway did with each message.

Registration only (light imports); the commands run from ``records_run``.
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

    rec = sub.add_parser("records", help="patients' records: create, list, items, export").add_subparsers(
        metavar="ACTION", required=True
    )
    p = rec.add_parser("create", parents=[listing], help="create a record with its Direct addresses")
    p.add_argument("--name", required=True, help="the record's display name (the patient's name)")
    p.add_argument("--address", action="append", required=True,
                   help="a Direct address of a local domain delivering into this record (repeatable)")
    p.set_defaults(func=lazy("gateway.cli.records_run", "cmd_create"))
    p = rec.add_parser("list", parents=[listing], help="list records with their addresses")
    p.set_defaults(func=lazy("gateway.cli.records_run", "cmd_list"))
    p = rec.add_parser("items", parents=[listing], help="list a record's items")
    p.add_argument("record", help="the record's id or one of its addresses")
    p.set_defaults(func=lazy("gateway.cli.records_run", "cmd_items"))
    p = rec.add_parser("export", parents=[common], help="write a record's items (each blob) into a directory")
    p.add_argument("record", help="the record's id or one of its addresses")
    p.add_argument("directory", type=Path, help="where to write (created if absent; existing files are kept)")
    p.set_defaults(func=lazy("gateway.cli.records_run", "cmd_export"))

    msg = sub.add_parser("messages", help="messages received and sent, with their state per recipient").add_subparsers(
        metavar="ACTION", required=True
    )
    p = msg.add_parser("list", parents=[listing], help="list messages, newest first")
    p.add_argument("--direction", choices=("in", "out"), help="only received (in) or sent (out) messages")
    p.add_argument("--status", help="only messages in this state (delivered, rejected, deferred, ...)")
    p.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    p.set_defaults(func=lazy("gateway.cli.records_run", "cmd_messages_list"))
    p = msg.add_parser("show", parents=[listing], help="one message: recipients, outbound entries, audit trail")
    p.add_argument("id", type=int, help="the message's id (from messages list)")
    p.set_defaults(func=lazy("gateway.cli.records_run", "cmd_messages_show"))
