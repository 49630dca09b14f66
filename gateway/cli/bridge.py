"""``directgw bridge``: run the records bridge alone (registration; runs in ``bridge_run``)."""

from __future__ import annotations

import argparse

from .args import add_config_option, lazy


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bridge", help="run the records bridge (patients' pages, OAuth, app API) on its own",
        description="Runs until SIGTERM or Ctrl-C. Listens on --listen, else [bridge] listen, else 127.0.0.1:8080 "
        "(put a TLS-terminating proxy serving [bridge] base_url in front). `serve` runs it too when "
        "[bridge] listen is set.",
    )
    add_config_option(p)
    p.add_argument("--listen", metavar="HOST:PORT", help="listen address (overrides [bridge] listen)")
    p.set_defaults(func=lazy("gateway.cli.bridge_run", "cmd_bridge"))
