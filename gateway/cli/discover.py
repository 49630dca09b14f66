"""``directgw discover ADDRESS``: which certificates the gateway would encrypt to, and why.

Asks DNS and LDAP exactly as the gateway does before sealing, and prints what
each source returned and which certificates were selected or dropped and
why. Certificates are judged against the ``--anchor`` files given, or else
against the outgoing anchors of ``--from``'s domain in the database named by
the configuration (``--from`` may be left out when the database holds one
local domain). Nameservers: ``--nameserver``, else ``[discovery]
nameservers``, else the system's (``/etc/resolv.conf``). Exit 0 when there is
a certificate to encrypt to, 1 when the message must not be sent, 2 on a
usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from anchors.source import StaticAnchors
from gateway.config import Config
from gateway.core.certs import CertRef
from gateway.discovery import (
    Discovered,
    DiscoverySettings,
    DoNotSend,
    SourceReport,
    TrustServiceJudge,
    build_discovery,
    settings_from_mapping,
)
from gateway.discovery.settings import RESOLV_CONF, system_nameservers
from gateway.discovery.types import Dropped
from gateway.store import Store

from .args import UsageError, parse_at, warn
from .configured import configuration, guard
from .files import read_certs


def system_resolvers(path: Path = RESOLV_CONF) -> list[str]:
    """The system's nameservers, or none when the file cannot be read."""
    try:
        return system_nameservers(path.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return []


def discovery_settings(
    args: argparse.Namespace, config: Config | None, system: Callable[[], list[str]] = system_resolvers
) -> DiscoverySettings:
    """``[discovery]``, with ``--nameserver`` over its nameservers and the system's when it names none."""
    table = dict(config.section("discovery")) if config is not None else {}
    if args.nameserver:
        table["nameservers"] = list(args.nameserver)
    if "nameservers" not in table:
        found = system()
        if not found:
            raise UsageError(f"no nameserver: give --nameserver HOST:PORT or [discovery] nameservers "
                             f"({RESOLV_CONF} names none)")
        table["nameservers"] = found
    if args.no_ldap:
        table["ldap"] = False
    return settings_from_mapping(table)


async def _sender_domain(args: argparse.Namespace, store: Store) -> str:
    """``--from``, else the only local domain."""
    from gateway.domains import LocalDomains
    from gateway.store.lookups import normalise_domain

    if args.sender_domain:
        try:
            return normalise_domain(args.sender_domain)
        except ValueError as exc:
            raise UsageError(f"--from: {exc}") from exc
    names = [d.name for d in await LocalDomains(store).all()]
    if len(names) == 1:
        return names[0]
    if not names:
        raise UsageError("no local domain to judge for: add one (directgw domains add), or give --anchor FILE")
    raise UsageError(f"--from DOMAIN is needed: the database holds {len(names)} local domains ({', '.join(names)})")


def cmd_discover(args: argparse.Namespace) -> int:
    return guard(lambda: asyncio.run(_discover(args)))


async def _discover(args: argparse.Namespace) -> int:
    from trust import HttpFetcher, TrustService
    from trust.settings import build_trust_service, settings_from_mapping

    at = parse_at(args.at)
    config = configuration(args, required=not args.anchor)
    settings = discovery_settings(args, config)
    anchors = read_certs(args.anchor, "--anchor", at)
    trust_table = config.section("trust") if config is not None else {}
    fetcher = None
    store = None
    try:
        if anchors:
            # the configuration's fetch rules ([trust] fetch_allow, timeout) still apply to what DNS names
            trust_settings = settings_from_mapping(trust_table)
            fetcher = HttpFetcher(timeout=trust_settings.fetch_timeout, destinations=trust_settings.fetch_destinations)
            trust = TrustService(StaticAnchors(tuple(anchors)), fetcher)
            sender_domain = args.sender_domain or "discover.invalid"
        else:
            from anchors.store import DbAnchors
            from gateway.store import open_store

            assert config is not None
            store = await open_store(config.storage_url)
            sender_domain = await _sender_domain(args, store)
            if not args.sender_domain:
                warn(f"judging for {sender_domain}, the only local domain (--from chooses another)")
            trust, fetcher = build_trust_service(trust_table, DbAnchors(store))
        discovery = build_discovery(settings, TrustServiceJudge(trust), fetcher)
        result = await discovery.discover(args.address, local_domain=sender_domain, at=at)
    finally:
        if fetcher is not None:
            await fetcher.close()
        if store is not None:
            await store.close()
    if args.json:
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


