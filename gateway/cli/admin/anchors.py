"""``directgw anchors``: trust anchors per domain and direction."""

from __future__ import annotations

import argparse
from typing import Any

from anchors.importing import read_anchor_file
from anchors.store import AnchorRecord, DbAnchors
from gateway.core.certs import (
    CertRef,
)
from gateway.store import Store

from .common import (
    DIRECTIONS,
    domain_arg,
    print_json,
    read_file,
    run,
    signer_arg,
    utc_now,
    warn,
)


def anchor_json(a: AnchorRecord) -> dict[str, Any]:
    return {
        "id": a.id, "domain": a.domain, "direction": a.direction.value, "subject": a.subject, "sha256": a.sha256,
        "not_after": a.not_after.isoformat(), "source": a.source, "added_at": a.added_at.isoformat(),
    }


def cmd_anchors_add(args: argparse.Namespace) -> int:
    async def body(store: Store) -> int:
        domain = domain_arg(args.domain)
        directions = DIRECTIONS[args.direction]
        at = utc_now()
        signer = signer_arg(args.signer)
        certs: list[CertRef] = []
        for path in args.files:  # every file is checked before anything is stored
            imported = read_anchor_file(read_file(path), str(path), at=at, signer=signer)
            warn(imported.warnings, str(path))
            certs.extend(imported.certificates)
        result = await DbAnchors(store).add(domain, directions, certs, at=at)
        for a in result.added:
            print(f"[{a.id}] {a.domain} {a.direction.value}: {a.subject}")
        for direction, cert in result.already_present:
            print(f"already an {direction.value} anchor of {domain}: {cert.subject}")
        return 0

    return run(args, body, lambda: domain_arg(args.domain))


def cmd_anchors_list(args: argparse.Namespace) -> int:
    async def body(store: Store) -> int:
        records = await DbAnchors(store).all(domain_arg(args.domain) if args.domain else None)
        if args.json:
            print_json([anchor_json(a) for a in records])
            return 0
        if not records:
            print("no anchors (directgw anchors add --domain D FILE)")
        for a in records:
            print(f"[{a.id}] {a.domain} {a.direction.value:<8} {a.subject}  until {a.not_after:%Y-%m-%d}  ({a.source})")
        return 0

    return run(args, body, lambda: args.domain and domain_arg(args.domain))


def cmd_anchors_remove(args: argparse.Namespace) -> int:
    async def body(store: Store) -> int:
        a = await DbAnchors(store).remove(args.id)
        print(f"removed {a.direction.value} anchor {a.id} of {a.domain}: {a.subject}")
        return 0

    return run(args, body)
