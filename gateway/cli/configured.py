"""The configuration file, and the one guard that turns every expected failure
of a command that reads it into one line and an exit code (``args``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from anchors.bundles import BundleDefinitionError
from anchors.importing import AnchorFileError
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
    """Run a command, turning every expected failure into one line on stderr and its exit code."""
    try:
        return int(run())
    except (
        UsageError, CommandFailed, ConfigError, DiscoverySettingsError, NameserverError, KeyMaterialError,
        StoreError, DomainError, PolicyError, AnchorFileError, BundleDefinitionError,
    ) as exc:
        return fail(exc)
    except SQLAlchemyError as exc:  # the database went away mid-command
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        return fail(CommandFailed(f"database error: {detail[0] if detail else type(exc).__name__}"))
