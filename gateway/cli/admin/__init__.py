"""``directgw init | domains | anchors | bundles``: the administrator's commands.

Every command takes ``--config FILE`` (default ``$DIRECTGW_CONFIG``, else
``./directgw.toml``), opens the database named there (migrating it to the
current schema), does one thing and says what it did. Arguments are checked
before the configuration is read, and files before anything is written, so a
wrong file changes nothing. Errors are one line on stderr and exit 1; usage
errors exit 2. One module per command group; ``common`` holds the plumbing.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from ..args import add_config_option, lazy

DEFAULT_REFRESH = "6h"
"""anchors.bundles.DEFAULT_REFRESH, spelled as the option takes it (a test
checks they agree): importing that module here would load the database layer
for every command's --help."""

DIRECTION_CHOICES = ("incoming", "outgoing", "both")
"""The keys of ``common.DIRECTIONS``."""


def _cmd(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    return lazy(f"gateway.cli.admin.{module}", name)


def register(sub: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    add_config_option(common)
    listing = argparse.ArgumentParser(add_help=False, parents=[common])
    listing.add_argument("--json", action="store_true", help="print as JSON")
    direction = argparse.ArgumentParser(add_help=False)
    direction.add_argument("--direction", choices=DIRECTION_CHOICES, default="both",
                           help="which mail the anchors judge (default both)")

    p = sub.add_parser("init", parents=[common], help="write a starter configuration and database")
    p.add_argument("--data-dir", help="where the database lives (default ./data beside the configuration)")
    p.add_argument("--domain", required=True, help="the first local domain")
    p.add_argument("--storage-url", help="a PostgreSQL database (postgresql+asyncpg://...) instead of SQLite")
    p.set_defaults(func=_cmd("init", "cmd_init"))

    dom = sub.add_parser("domains", help="local domains and their keys").add_subparsers(metavar="ACTION", required=True)
    p = dom.add_parser("add", parents=[common], help="add a domain, or a new key for one (rollover)")
    p.add_argument("domain", help="the local domain the certificate is bound to (dNSName)")
    _key_options(p, p12=True)
    p.set_defaults(func=_cmd("domains", "cmd_domains_add"))
    p = dom.add_parser("add-address", parents=[common], help="add an address-bound certificate and key")
    p.add_argument("address", help="the Direct address the certificate is bound to (rfc822Name)")
    _key_options(p, p12=True)
    p.set_defaults(func=_cmd("domains", "cmd_domains_add_address"))
    dom.add_parser("list", parents=[listing], help="list domains and keys").set_defaults(func=_cmd("domains", "cmd_domains_list"))
    p = dom.add_parser("remove", parents=[common], help="remove a domain with its keys, anchors and bundles")
    p.add_argument("domain", help="the local domain to remove")
    p.set_defaults(func=_cmd("domains", "cmd_domains_remove"))

    anc = sub.add_parser("anchors", help="trust anchors per domain and direction").add_subparsers(metavar="ACTION", required=True)
    p = anc.add_parser("add", parents=[common, direction], help="add anchors from PEM, DER, .p7b or .p7m files")
    p.add_argument("--domain", required=True, help="the local domain whose mail the anchors judge")
    p.add_argument("--signer", type=Path, help="the certificate a signed .p7m bundle must be signed by")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE", help="anchor files (PEM, DER, .p7b, .p7m)")
    p.set_defaults(func=_cmd("anchors", "cmd_anchors_add"))
    p = anc.add_parser("list", parents=[listing], help="list anchors")
    p.add_argument("--domain", help="only this local domain's anchors")
    p.set_defaults(func=_cmd("anchors", "cmd_anchors_list"))
    p = anc.add_parser("remove", parents=[common], help="remove a manually added anchor")
    p.add_argument("id", type=int, help="the anchor's id, as anchors list shows it")
    p.set_defaults(func=_cmd("anchors", "cmd_anchors_remove"))

    bun = sub.add_parser("bundles", help="trust bundles fetched by URL").add_subparsers(metavar="ACTION", required=True)
    p = bun.add_parser("add", parents=[common, direction], help="add a trust bundle URL and fetch it")
    p.add_argument("url", help="where the bundle is published (http or https; .p7b, .p7m or PEM)")
    p.add_argument("--domain", required=True, help="the local domain whose mail the bundle's anchors judge")
    p.add_argument("--refresh", default=DEFAULT_REFRESH,
                   help=f"refresh interval, e.g. 30m, 6h, 1d (default {DEFAULT_REFRESH})")
    p.add_argument("--signer", type=Path, help="the certificate the bundle must be signed by (.p7m)")
    p.set_defaults(func=_cmd("bundles", "cmd_bundles_add"))
    bun.add_parser("list", parents=[listing], help="list bundles and their last refresh").set_defaults(func=_cmd("bundles", "cmd_bundles_list"))
    p = bun.add_parser("refresh", parents=[common], help="refresh every bundle now")
    p.add_argument("--due", action="store_true", help="only bundles whose refresh time has come")
    p.set_defaults(func=_cmd("bundles", "cmd_bundles_refresh"))
    p = bun.add_parser("remove", parents=[common], help="remove a bundle and its anchors")
    p.add_argument("id", type=int, help="the bundle's id, as bundles list shows it")
    p.set_defaults(func=_cmd("bundles", "cmd_bundles_remove"))


def _key_options(p: argparse.ArgumentParser, *, p12: bool) -> None:
    p.add_argument("--cert", type=Path, help="the certificate (PEM or DER)")
    p.add_argument("--key", type=Path, help="its private key (PEM or DER; mode 600)")
    if p12:
        p.add_argument("--p12", type=Path, help="a PKCS#12 file holding both")
    p.add_argument("--password-file", type=Path, help="password for the key or PKCS#12 file")
