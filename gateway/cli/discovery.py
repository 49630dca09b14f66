"""``directgw discover | dns | certs export-ldif``: finding others' certificates
and publishing ours.

The command line's shape only: ``discover`` runs in ``gateway.cli.discover``,
``dns`` and ``certs export-ldif`` in ``gateway.cli.publish``, imported when
they run (they load the network and database layers).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .args import add_config_option, lazy

DNS_DEFAULT_LISTEN = "127.0.0.1:53"
"""``gateway.publish.settings``' default (host 127.0.0.1, port 53), said in help and when used."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("discover", help="find a recipient's certificates in DNS and LDAP, and say which would be used")
    p.add_argument("address", help="the recipient's Direct address")
    add_config_option(p)
    p.add_argument("--nameserver", action="append", default=[],
                   help="HOST[:PORT] to ask (repeatable; overrides [discovery] nameservers, which default to "
                        "the system's, /etc/resolv.conf)")
    p.add_argument("--anchor", type=Path, action="append", default=[],
                   help="judge against these anchors (PEM, DER or .p7b; repeatable) instead of the database's")
    p.add_argument("--from", dest="sender_domain",
                   help="our sender's domain, whose outgoing anchors judge (default: the only local domain)")
    p.add_argument("--no-ldap", action="store_true", help="ask DNS only")
    p.add_argument("--at", help="judge at this ISO 8601 time instead of now")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=lazy("gateway.cli.discover", "cmd_discover"))

    d = sub.add_parser("dns", help="run the authoritative DNS responder for our domains alone")
    add_config_option(d)
    d.add_argument("--listen", metavar="HOST:PORT",
                   help=f"where to answer, UDP and TCP (default [dns] listen, else {DNS_DEFAULT_LISTEN}; "
                        "port 53 needs root or CAP_NET_BIND_SERVICE)")
    d.set_defaults(func=lazy("gateway.cli.publish", "cmd_dns"))

    c = sub.add_parser("certs", help="our published certificates")
    csub = c.add_subparsers(dest="certs_command", metavar="ACTION", required=True)
    e = csub.add_parser("export-ldif", help="our certificates as LDIF, for an existing LDAP directory")
    add_config_option(e)
    e.add_argument("--domain", action="append", default=[], help="only this local domain (repeatable; default all)")
    e.add_argument("--base", help="parent DN of the entries (default ou=direct,dc=<domain labels>)")
    e.add_argument("--output", "-o", type=Path, help="write here instead of standard output")
    e.set_defaults(func=lazy("gateway.cli.publish", "cmd_export_ldif"))
