"""``directgw demo``: the whole Direct story on one machine (see ``gateway.demo``).

No configuration, no root, no free port 25, no network: two HISPs run as real
``directgw serve`` processes on free loopback ports, in a throw-away
directory, and the story is told as their logs show each step.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from .args import EXIT_FAILED, EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run two HISPs on loopback and follow a discharge summary from an EHR into a patient's record",
        description="Two HISPs (hospital.demo and phr.demo) in one trust community, on free loopback ports: "
        "an EHR submits a discharge summary, which is discovered, sealed, delivered, verified, stored in "
        "Jane's record and acknowledged; then a sender outside the community and a recipient without a "
        "certificate. Keeps running (with Jane's records bridge) until Ctrl-C, unless --once.",
    )
    p.add_argument("--once", action="store_true", help="stop after the story (for tests and CI)")
    p.add_argument("--dir", type=Path, metavar="DIR", help="use DIR (made if missing) instead of a throw-away directory")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.demo.sites import SetupError
    from gateway.demo.story import run

    directory: Path | None = args.dir
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
    try:
        outcome = asyncio.run(run(once=args.once, directory=directory))
    except SetupError as exc:
        print(f"directgw demo: setting up failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK if outcome.ok else EXIT_FAILED
