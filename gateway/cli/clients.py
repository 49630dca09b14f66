"""``directgw clients``: the records bridge's OAuth clients (registration only; runs in ``clients_run``)."""

from __future__ import annotations

import argparse

from .args import add_config_option, lazy


def register(sub: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    add_config_option(common)
    listing = argparse.ArgumentParser(add_help=False, parents=[common])
    listing.add_argument("--json", action="store_true", help="print as JSON")

    cl = sub.add_parser("clients", help="apps allowed to use the records bridge (OAuth clients)").add_subparsers(
        metavar="ACTION", required=True
    )
    p = cl.add_parser("add", parents=[listing], help="register an app; prints its client id (and secret, once)",
                      description="Confidential clients (the default) get a secret, printed once and stored only "
                      "as a keyed hash. Public clients (--public: native and browser apps) have none and may not "
                      "use connect or packages.")
    p.add_argument("name", help="the app's name, as people see it on the consent page")
    p.add_argument("--redirect-uri", action="append", default=[], metavar="URI",
                   help="an exact redirect URI (repeatable): https://..., http://127.0.0.1/... (any port), "
                   "or a private-use scheme such as com.example.app:/cb")
    p.add_argument("--public", action="store_true", help="a public client (no secret; PKCE only)")
    p.add_argument("--scopes", nargs="+", default=[], metavar="SCOPE",
                   help="scopes the app may ask for (records.<type>.<crud>, patient/DocumentReference.rs, "
                   "offline_access, connect, packages, inbound.messages; default records.*.r: read what it is given)")
    p.add_argument("--required-scopes", nargs="+", metavar="SCOPE",
                   help="scopes a person grants all together (default: the person scopes of --scopes)")
    p.add_argument("--optional-scopes", nargs="+", default=[], metavar="SCOPE",
                   help="scopes a person may switch on one by one")
    p.add_argument("--multi-record", action="store_true", help="a person may give the app several records")
    p.add_argument("--offline", action="store_true", help="the app may ask for offline_access (refresh tokens)")
    p.add_argument("--connect", action="store_true", help="the app may create Patient Connect requests")
    p.set_defaults(func=lazy("gateway.cli.clients_run", "cmd_add"))
    p = cl.add_parser("list", parents=[listing], help="list registered apps")
    p.set_defaults(func=lazy("gateway.cli.clients_run", "cmd_list"))
    p = cl.add_parser("remove", parents=[common], help="remove an app with its grants and tokens")
    p.add_argument("client_id", help="the app's client id")
    p.set_defaults(func=lazy("gateway.cli.clients_run", "cmd_remove"))
