"""The configuration file and the one-line error guard, for the commands that
read a configuration outside the admin group (``discover``, ``dns``,
``certs export-ldif``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from gateway.config import Config, ConfigError, load_config
from gateway.core.certs import KeyMaterialError
from gateway.discovery import DiscoverySettingsError
from gateway.discovery.dnsclient import NameserverError
from gateway.domains import DomainError
from gateway.store import StoreError
from trust.policy import PolicyError

from .args import CommandFailed, UsageError, config_path, fail


def given_config(args: argparse.Namespace) -> Path | None:
    """``--config`` as given before or after the command, or None."""
    value = getattr(args, "config", None)
    return Path(value) if value is not None else None


def configuration(args: argparse.Namespace, *, required: bool) -> Config | None:
    """The configuration; when not ``required``, None if none was named and the default file is absent."""
    given = given_config(args)
    path = config_path(given)
    if not required and given is None and not path.exists():
        return None
    return load_config(path)


def guard(run: Callable[[], int]) -> int:
    try:
        return int(run())
    except (
        UsageError, CommandFailed, ConfigError, DiscoverySettingsError, NameserverError, KeyMaterialError,
        StoreError, DomainError, PolicyError,
    ) as exc:
        return fail(exc)
