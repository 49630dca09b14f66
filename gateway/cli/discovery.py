"""``directgw discover | dns | certs export-ldif``: finding others' certificates
and publishing ours.

``discover ADDRESS`` asks DNS and LDAP exactly as the gateway does before
sealing, and prints what each source returned and which certificates were
selected or dropped and why. Certificates are judged against the ``--anchor``
files given, or else against the outgoing anchors of ``--from``'s domain in the
database named by the configuration. Exit 0 when there is a certificate to
encrypt to, 1 when the message must not be sent, 2 on a usage error.

``dns`` runs the authoritative responder alone (``[dns]`` table), serving the
certificates the database and the ``[dns] certificates`` files hold.

``certs export-ldif`` writes our published certificates as LDIF for an
existing directory.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from anchors.source import StaticAnchors
from gateway.config import DEFAULT_CONFIG_NAME, Config, ConfigError, load_config
from gateway.core.certs import CertRef, KeyMaterialError, load_certificates
from gateway.discovery import (
    Discovered,
    DiscoverySettings,
    DiscoverySettingsError,
    DoNotSend,
    SourceReport,
    TrustServiceJudge,
    build_discovery,
    settings_from_mapping,
)
from gateway.discovery.dnsclient import NameserverError
from gateway.discovery.ldif import export_ldif
from gateway.discovery.types import Dropped
from gateway.store import StoreError

from .args import CONFIG_ENV, UsageError, config_path, parse_at


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("discover", help="find a recipient's certificates in DNS and LDAP, and say which would be used")
    p.add_argument("address")
    p.add_argument("--config", type=Path, help=f"configuration file (default ${CONFIG_ENV} or ./{DEFAULT_CONFIG_NAME})")
    p.add_argument("--nameserver", action="append", default=[], help="HOST[:PORT] to ask (repeatable; overrides [discovery])")
    p.add_argument("--anchor", type=Path, action="append", default=[], help="judge against these anchors (PEM/DER; repeatable)")
    p.add_argument("--from", dest="sender_domain", help="our sender's domain, whose outgoing anchors judge (database mode)")
    p.add_argument("--no-ldap", action="store_true", help="ask DNS only")
    p.add_argument("--at", help="judge at this ISO 8601 time instead of now")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_discover)

    d = sub.add_parser("dns", help="run the authoritative DNS responder for our domains alone")
    d.add_argument("--config", type=Path)
    d.add_argument("--listen", help="HOST:PORT (overrides [dns] listen)")
    d.set_defaults(func=cmd_dns)

    c = sub.add_parser("certs", help="our published certificates")
    csub = c.add_subparsers(dest="certs_command", metavar="ACTION", required=True)
    e = csub.add_parser("export-ldif", help="our certificates as LDIF, for an existing LDAP directory")
    e.add_argument("--config", type=Path)
    e.add_argument("--domain", action="append", default=[], help="only this local domain (repeatable; default all)")
    e.add_argument("--base", help="parent DN of the entries (default ou=direct,dc=<domain labels>)")
    e.add_argument("--output", "-o", type=Path, help="write here instead of standard output")
    e.set_defaults(func=cmd_export_ldif)


def _config(args: argparse.Namespace, *, required: bool) -> Config | None:
    path = config_path(args.config)
    if not required and args.config is None and not path.exists():
        return None
    return load_config(path)


def _now(args: argparse.Namespace) -> datetime:
    return parse_at(getattr(args, "at", None))


def _guard(run: Any) -> int:
    try:
        return int(run())
    except UsageError as exc:
        print(f"directgw: {exc}", file=sys.stderr)
        return 2
    except (ConfigError, DiscoverySettingsError, NameserverError, KeyMaterialError, StoreError, OSError, ValueError) as exc:
        print(f"directgw: {exc}", file=sys.stderr)
        return 1


# --------------------------------------------------------------------------- discover


def _settings(args: argparse.Namespace, config: Config | None) -> DiscoverySettings:
    table = dict(config.section("discovery")) if config is not None else {}
    if args.nameserver:
        table["nameservers"] = list(args.nameserver)
    if "nameservers" not in table:
        raise UsageError("no nameserver: give --nameserver HOST:PORT or [discovery] nameservers")
    if args.no_ldap:
        table["ldap"] = False
    return settings_from_mapping(table)


def cmd_discover(args: argparse.Namespace) -> int:
    return _guard(lambda: asyncio.run(_discover(args)))


async def _discover(args: argparse.Namespace) -> int:
    from trust import HttpFetcher, TrustService

    at = _now(args)
    config = _config(args, required=not args.anchor)
    settings = _settings(args, config)
    fetcher = HttpFetcher()
    store = None
    try:
        if args.anchor:
            anchors: list[CertRef] = []
            for path in args.anchor:
                anchors.extend(load_certificates(path.read_bytes()))
            trust = TrustService(StaticAnchors(tuple(anchors)), fetcher)
            sender_domain = args.sender_domain or "discover.invalid"
        else:
            if not args.sender_domain:
                raise UsageError("--from DOMAIN is needed to judge against a local domain's outgoing anchors")
            from anchors.store import DbAnchors
            from gateway.store import open_store
            from trust.settings import build_trust_service

            assert config is not None
            store = await open_store(config.storage_url)
            trust, _ = build_trust_service(config.section("trust"), DbAnchors(store))
            sender_domain = args.sender_domain
        discovery = build_discovery(settings, TrustServiceJudge(trust), fetcher)
        result = await discovery.discover(args.address, local_domain=sender_domain, at=at)
    finally:
        await fetcher.close()
        if store is not None:
            await store.close()
    if args.json:
        import json

        print(json.dumps(result_json(result), indent=2))
    else:
        print(result_text(result))
    return 0 if isinstance(result, Discovered) else 1


def _cert_json(cert: CertRef | None) -> dict[str, Any] | None:
    if cert is None:
        return None
    return {
        "subject": cert.subject, "issuer": cert.issuer, "serial": f"{cert.serial:x}", "sha256": cert.sha256,
        "not_before": cert.not_before.isoformat(), "not_after": cert.not_after.isoformat(),
        "addresses": list(cert.email_addresses), "domains": list(cert.dns_names), "bytes": len(cert.der),
    }


def _report_json(r: SourceReport) -> dict[str, Any]:
    return {
        "source": r.source.value, "query": r.query, "outcome": r.outcome.value, "detail": r.detail,
        "cached": r.cached, "certificates": [_cert_json(c) for c in r.certificates],
    }


def _dropped_json(d: Dropped) -> dict[str, Any]:
    return {"certificate": _cert_json(d.certificate), "reason": d.reason.value, "detail": d.detail,
            "temporary": d.temporary, "from": d.where}


def result_json(result: Discovered | DoNotSend) -> dict[str, Any]:
    out: dict[str, Any] = {
        "address": result.address,
        "send": result.send,
        "asked": [_report_json(r) for r in result.reports],
        "dropped": [_dropped_json(d) for d in result.dropped],
    }
    if isinstance(result, Discovered):
        out |= {"binding": result.binding.value, "source": result.source.value,
                "selected": [_cert_json(c) for c in result.certificates]}
    else:
        out["temporary"] = result.temporary
    return out


def result_text(result: Discovered | DoNotSend) -> str:
    lines = [f"{result.address}:"]
    for r in result.reports:
        lines.append(f"  asked {r}")
        lines += [f"    - {c.subject} (serial {c.serial:x}, until {c.not_after:%Y-%m-%d})" for c in r.certificates]
    for d in result.dropped:
        lines.append(f"  dropped {d}")
    if isinstance(result, Discovered):
        lines.append(f"  selected ({result.binding.value}-bound, from {result.source.value}):")
        lines += [f"    + {c.subject} (serial {c.serial:x}, sha256 {c.sha256[:16]}...)" for c in result.certificates]
    else:
        kind = "temporary: a source could not be asked" if result.temporary else "permanent"
        lines.append(f"  DO NOT SEND: no usable certificate ({kind})")
    return "\n".join(lines)


# --------------------------------------------------------------------------- dns


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
    return _guard(lambda: asyncio.run(_dns(args)))


async def _dns(args: argparse.Namespace) -> int:
    from gateway.domains import LocalDomains
    from gateway.publish import dns_settings, serve
    from gateway.publish.settings import parse_listen
    from gateway.publish.source import load_published
    from gateway.store import open_store

    config = _config(args, required=True)
    assert config is not None
    settings = dns_settings(config.section("dns"))
    if args.listen:
        host, port = parse_listen(args.listen)
        settings = replace(settings, host=host, port=port)
    # certificate files are named relative to the configuration file, as data_dir is
    files = [config.path.parent / Path(p).expanduser() for p in settings.certificates]
    store = await open_store(config.storage_url)
    try:
        domains = LocalDomains(store)
        if not settings.zones:
            # no [dns] zones: answer for every local domain the database holds
            settings = replace(settings, zones=tuple(d.name for d in await domains.all()))
        if not settings.zones:
            raise UsageError("no zone to answer for: add a local domain or set [dns] zones")
        source = _Both((domains, load_published(files)))
        print(f"directgw dns: answering for {', '.join(settings.zones)} on {settings.host}:{settings.port}",
              file=sys.stderr)
        await serve(settings, source)
    finally:
        await store.close()
    return 0


# --------------------------------------------------------------------------- certs export-ldif


def cmd_export_ldif(args: argparse.Namespace) -> int:
    return _guard(lambda: asyncio.run(_export(args)))


async def _export(args: argparse.Namespace) -> int:
    from gateway.domains import LocalDomains
    from gateway.store import open_store

    config = _config(args, required=True)
    assert config is not None
    store = await open_store(config.storage_url)
    try:
        domains = LocalDomains(store)
        names: Sequence[str] = args.domain or [d.name for d in await domains.all()]
        parts = []
        for name in names:
            certs = [c for _, c in await domains.published_certificates(name)]
            if certs:
                parts.append(export_ldif(name, certs, base=args.base))
    finally:
        await store.close()
    text = "\n".join(parts)
    if args.output:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0
