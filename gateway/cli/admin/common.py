"""What every admin command shares: configuration and store, argument checks, one-line errors."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from anchors.source import Direction
from gateway.config import (
    load_config,
)
from gateway.core.certs import CertRef
from gateway.store import Store, open_store
from gateway.store.lookups import normalise_domain

from ..args import CommandFailed, UsageError
from ..args import config_path as given_config_path
from ..configured import guard
from ..files import read_cert

DIRECTIONS = {"incoming": (Direction.INCOMING,), "outgoing": (Direction.OUTGOING,), "both": tuple(Direction)}


class AdminUsageError(UsageError):
    """A wrong option or argument: exit 2."""


class AdminError(CommandFailed):
    """The command could not do what was asked: exit 1."""


def utc_now() -> datetime:
    return datetime.now(UTC)  # the CLI is a composition root: it may read the clock


def config_path(args: argparse.Namespace) -> Path:
    return given_config_path(getattr(args, "config", None))


def read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise AdminError(f"cannot read {path}: {exc.strerror}") from exc


def domain_arg(value: str) -> str:
    try:
        return normalise_domain(value)
    except ValueError as exc:
        raise AdminUsageError(str(exc)) from exc


def duration_arg(value: str) -> timedelta:
    m = re.fullmatch(r"\s*(\d{1,9})\s*([smhd]?)\s*", value)
    if not m:
        raise AdminUsageError(f"--refresh {value!r}: expected a number with s, m, h or d (e.g. 6h)")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "": "seconds"}[m.group(2)]
    return timedelta(**{unit: int(m.group(1))})  # nine digits of days still fit a timedelta


def run(
    args: argparse.Namespace, body: Callable[[Store], Awaitable[int]], check: Callable[[], object] | None = None
) -> int:
    """Run ``check`` (argument checks, so a usage error comes before any
    configuration or database), load the configuration, open the store, run
    ``body``, and turn every expected failure into one line on stderr."""

    async def go() -> int:
        config = load_config(config_path(args))
        store = await open_store(config.storage_url)
        try:
            return await body(store)
        finally:
            await store.close()

    def main() -> int:
        if check is not None:
            check()
        return asyncio.run(go())

    return guard(main)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


def warn(lines: tuple[str, ...] | list[str], source: str = "") -> None:
    for line in lines:
        print(f"warning: {source + ': ' if source else ''}{line}", file=sys.stderr)


def certificate_arg(path: Path, option: str) -> CertRef:
    """The certificate a file holds, or a refusal saying what the file is instead."""
    return read_cert(path, option, utc_now())


def signer_arg(path: Path | None) -> CertRef | None:
    return None if path is None else certificate_arg(path, "--signer")
