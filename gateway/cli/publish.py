"""``directgw dns`` and ``directgw certs export-ldif``: publishing our certificates.

``dns`` runs the authoritative responder alone (``[dns]`` table), serving the
certificates the database and the ``[dns] certificates`` files hold. It binds
first and announces after, so "answering" is only ever said of a socket that
is open; a bind that fails names the address. ``certs export-ldif`` writes our
published certificates as LDIF for an existing directory; a domain that is
not ours is an error, not an empty file.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from gateway.core.certs import CertRef
from gateway.domains import LocalDomains
from gateway.store import open_store
from gateway.store.lookups import normalise_domain

from .args import CommandFailed, UsageError
from .configured import configuration, guard
from .discovery import DNS_DEFAULT_LISTEN


@dataclass(frozen=True)
class _Both:
    """The database's certificates, then those of the ``[dns] certificates`` files."""

    sources: tuple[Any, ...]

    async def published_certificates(self, domain: str) -> list[tuple[str, CertRef]]:
        out: list[tuple[str, CertRef]] = []
        for source in self.sources:
            out.extend(await source.published_certificates(domain))
        return out


def cmd_dns(args: argparse.Namespace) -> int:
    return guard(lambda: asyncio.run(_dns(args)))


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _dns(args: argparse.Namespace) -> int:
    from gateway.publish import dns_settings
    from gateway.publish.responder import start_responder
    from gateway.publish.settings import DnsSettingsError, parse_listen
    from gateway.publish.source import load_published

    config = configuration(args, required=True)
    assert config is not None
    table = config.section("dns")
    try:
        settings = dns_settings(table)
    except DnsSettingsError as exc:
        raise CommandFailed(f"{config.path}: {exc}") from exc
    if args.listen:
        try:
            host, port = parse_listen(args.listen)
        except DnsSettingsError as exc:
            raise UsageError(f"--listen {args.listen!r}: expected ADDRESS:PORT, e.g. 127.0.0.1:5353") from exc
        settings = replace(settings, host=host, port=port)
    if not args.listen and "listen" not in table:
        print(f"directgw dns: no --listen and no [dns] listen: using the default {DNS_DEFAULT_LISTEN}",
              file=sys.stderr)
    # certificate files are named relative to the configuration file, as data_dir is
    files = [config.path.parent / Path(p).expanduser() for p in settings.certificates]
    store = await open_store(config.storage_url)
    try:
        domains = LocalDomains(store)
        if not settings.zones:
            # no [dns] zones: answer for every local domain the database holds
            settings = replace(settings, zones=tuple(d.name for d in await domains.all()))
        if not settings.zones:
            raise CommandFailed("no zone to answer for: add a local domain or set [dns] zones")
        source = _Both((domains, load_published(files)))
        where = _address(settings.host, settings.port)
        try:
            running = await start_responder(settings, source)
        except OSError as exc:
            hint = " (ports under 1024 need root or CAP_NET_BIND_SERVICE)" if settings.port < 1024 else ""
            raise CommandFailed(f"cannot listen on {where} (UDP and TCP): {exc.strerror or exc}{hint}") from exc
        try:
            print(f"directgw dns: answering for {', '.join(settings.zones)} on {running.address}", file=sys.stderr)
            await asyncio.Event().wait()  # until interrupted
        finally:
            await running.close()
    finally:
        await store.close()
    return 0


def cmd_export_ldif(args: argparse.Namespace) -> int:
    return guard(lambda: asyncio.run(_export(args)))


def _domain(value: str) -> str:
    try:
        return normalise_domain(value)
    except ValueError as exc:
        raise UsageError(f"--domain: {exc}") from exc


async def _export(args: argparse.Namespace) -> int:
    from gateway.discovery.ldif import export_ldif

    wanted = [_domain(d) for d in args.domain]
    config = configuration(args, required=True)
    assert config is not None
    store = await open_store(config.storage_url)
    try:
        domains = LocalDomains(store)
        local = [d.name for d in await domains.all()]
        unknown = [d for d in wanted if d not in local]
        if unknown:
            raise CommandFailed(f"{', '.join(unknown)}: not a local domain (local: {', '.join(local) or 'none'})")
        names: Sequence[str] = wanted or local
        parts = []
        empty = []
        for name in names:
            certs = [c for _, c in await domains.published_certificates(name)]
            if certs:
                parts.append(export_ldif(name, certs, base=args.base))
            else:
                empty.append(name)
    finally:
        await store.close()
    for name in empty:
        print(f"warning: {name} has no certificate to publish (directgw domains add {name} --cert C --key K)",
              file=sys.stderr)
    if not parts:
        raise CommandFailed("nothing to export: no local domain has a certificate to publish")
    text = "\n".join(parts)
    if args.output:
        try:
            args.output.write_text(text)
        except OSError as exc:
            raise CommandFailed(f"--output {args.output}: {exc.strerror}") from exc
    else:
        sys.stdout.write(text)
    return 0
