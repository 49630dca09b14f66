"""``directgw bundles``: trust bundles fetched by URL."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from anchors.bundles import (
    BundleRecord,
    Bundles,
    RefreshOutcome,
    RefreshStatus,
)
from anchors.source import Direction
from gateway.core.certs import CertRef
from gateway.store import Store

from .common import (
    DIRECTIONS,
    AdminError,
    domain_arg,
    duration_arg,
    print_json,
    run,
    signer_arg,
    utc_now,
    warn,
)


def bundle_json(b: BundleRecord) -> dict[str, Any]:
    def iso(t: datetime | None) -> str | None:
        return t.isoformat() if t else None

    return {
        "id": b.id, "domain": b.domain, "url": b.url, "directions": [d.value for d in b.directions],
        "refresh_seconds": int(b.refresh.total_seconds()), "signer": b.signer.subject if b.signer else None,
        "certificates": b.certificates, "checksum": b.checksum, "last_refresh_at": iso(b.last_refresh_at),
        "last_status": b.last_status, "last_error": b.last_error, "next_refresh_at": iso(b.next_refresh_at),
    }


def _report(outcome: RefreshOutcome) -> bool:
    warn(outcome.warnings, outcome.url)
    if outcome.status is RefreshStatus.FAILED:
        assert outcome.problem is not None
        print(f"directgw: bundle {outcome.bundle_id} {outcome.url}: {outcome.problem.value}: {outcome.detail} "
              f"(keeping the last good copy, {outcome.certificates} certificates)", file=sys.stderr)
        return False
    print(f"bundle {outcome.bundle_id} {outcome.url}: {outcome.status.value}, {outcome.certificates} certificates")
    return True


async def add_bundle(bundles: Bundles, url: str, domain: str, directions: tuple[Direction, ...], *,
                     refresh: timedelta, signer: CertRef | None, at: datetime) -> tuple[BundleRecord, RefreshOutcome]:
    """Add a bundle and fetch it once (``bundles add`` and the bridge's admin HTTP API).
    A bundle whose first fetch fails is taken back out and AdminError raised, so a failed add changes nothing."""
    record = await bundles.add(url, domain, directions, refresh=refresh, signer=signer, at=at)
    outcome = await bundles.refresh(record, at)
    if outcome.status is RefreshStatus.FAILED:
        # a bundle that never fetched holds no anchors and would fail
        # every refresh: take it back out, so a failed add changes nothing
        await bundles.remove(record.id)
        assert outcome.problem is not None
        warn(outcome.warnings, outcome.url)
        raise AdminError(f"bundle {outcome.url} not added: {outcome.problem.value}: {outcome.detail}")
    return record, outcome


def cmd_bundles_add(args: argparse.Namespace) -> int:
    async def body(store: Store) -> int:
        domain = domain_arg(args.domain)
        refresh = duration_arg(args.refresh)
        at = utc_now()
        signer = signer_arg(args.signer)
        async with aiohttp.ClientSession() as session:
            record, outcome = await add_bundle(Bundles(store, session), args.url, domain, DIRECTIONS[args.direction],
                                               refresh=refresh, signer=signer, at=at)
            warn(outcome.warnings, outcome.url)
            print(f"added bundle {record.id} for {domain}: {record.url}, {outcome.certificates} certificates "
                  f"({outcome.status.value})")
            return 0

    return run(args, body, lambda: (domain_arg(args.domain), duration_arg(args.refresh)))


def cmd_bundles_list(args: argparse.Namespace) -> int:
    async def body(store: Store) -> int:
        records = await Bundles(store).all()
        if args.json:
            print_json([bundle_json(b) for b in records])
            return 0
        if not records:
            print("no bundles (directgw bundles add URL --domain D)")
        for b in records:
            status = b.last_status or "never refreshed"
            if b.last_error:
                status += f": {b.last_error}"
            print(f"[{b.id}] {b.domain} {'+'.join(d.value for d in b.directions)} {b.url}  "
                  f"{b.certificates} certificates  ({status})")
        return 0

    return run(args, body)


def cmd_bundles_refresh(args: argparse.Namespace) -> int:
    async def body(store: Store) -> int:
        async with aiohttp.ClientSession() as session:
            outcomes = await Bundles(store, session).refresh_due(utc_now(), force=not args.due)
        if not outcomes:
            print("no bundle is due for a refresh" if args.due else "no bundles to refresh (directgw bundles add URL --domain D)")
            return 0
        ok = [_report(o) for o in outcomes]
        return 0 if all(ok) else 1

    return run(args, body)


def cmd_bundles_remove(args: argparse.Namespace) -> int:
    async def body(store: Store) -> int:
        b = await Bundles(store).remove(args.id)
        print(f"removed bundle {b.id} ({b.url}) and its anchors")
        return 0

    return run(args, body)
