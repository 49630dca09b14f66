"""``directgw serve``: run the HISP (registration; the service itself is gateway.service)."""

from __future__ import annotations

import argparse

from .args import add_config_option, lazy


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="run the gateway: SMTP receiving, outbound delivery, HTTP health and metrics",
        description="Runs until SIGTERM or Ctrl-C, then stops accepting, finishes in-flight work and exits 0. "
        "Logs are JSON lines on stderr.",
    )
    add_config_option(p)
    p.add_argument("--smtp", metavar="HOST:PORT", help="SMTP listen address (overrides [smtp] listen; default 0.0.0.0:25)")
    p.add_argument("--http", metavar="HOST:PORT",
                   help='health and metrics listen address (overrides [http] listen; "off" disables it)')
    p.add_argument("--submission", metavar="HOST:PORT",
                   help="also accept EHRs' mail (STARTTLS + AUTH) here (overrides [submission] listen; e.g. 0.0.0.0:587)")
    p.add_argument("--workers", type=int, default=1,
                   help="processes sharing the SMTP port (SO_REUSEPORT); one per core (default 1)")
    p.set_defaults(func=lazy("gateway.cli.serve_run", "cmd_serve"))
