"""``directgw domains``: local domains and their keys."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from gateway.core.certs import (
    CertRef,
    KeyMaterialError,
    KeyPair,
    load_pkcs12,
)
from gateway.domains import LocalDomains, check_key_file, split_address
from gateway.store import Store

from ..files import read_private_key
from .common import (
    AdminError,
    AdminUsageError,
    certificate_arg,
    domain_arg,
    print_json,
    read_file,
    run,
    utc_now,
    warn,
)


def key_record_json(k: Any) -> dict[str, Any]:
    c: CertRef = k.certificate
    return {
        "id": k.id, "address": k.address, "subject": c.subject, "issuer": c.issuer, "sha256": c.sha256,
        "not_before": c.not_before.isoformat(), "not_after": c.not_after.isoformat(),
        "signing": k.can_sign, "encryption": k.can_encrypt, "added_at": k.added_at.isoformat(),
    }


def _load_pair(args: argparse.Namespace) -> KeyPair:
    """The key pair from --cert/--key or --p12, refusing exposed key files."""
    password = None
    if args.password_file is not None:
        check_key_file(args.password_file)
        password = read_file(args.password_file).rstrip(b"\r\n")
    if getattr(args, "p12", None) is not None:
        if args.cert or args.key:
            raise AdminUsageError("give either --p12 or --cert and --key, not both")
        check_key_file(args.p12)
        try:
            return load_pkcs12(read_file(args.p12), password)
        except KeyMaterialError as exc:
            raise AdminError(f"--p12 {args.p12}: {exc}") from exc
    if not (args.cert and args.key):
        raise AdminUsageError("give --cert and --key (or --p12)")
    check_key_file(args.key)
    cert = certificate_arg(args.cert, "--cert")
    key = read_private_key(args.key, "--key", password, utc_now())
    return KeyPair(key, cert)


def key_warnings(cert: CertRef, now: datetime) -> list[str]:
    """Stored anyway (a rollover may be staged ahead of time), but said."""
    out = []
    if not cert.valid_at(now):
        out.append(f"{cert.subject} is not valid now ({cert.not_before:%Y-%m-%d} to {cert.not_after:%Y-%m-%d}); "
                   "it will not be used to sign until it is")
    if cert.key_algorithm == "rsa" and cert.key_bits < 2048:
        out.append(f"{cert.subject} has a {cert.key_bits}-bit RSA key: Direct peers refuse under 2048 (item 14)")
    if not (cert.can_sign or cert.can_encrypt):
        out.append(f"{cert.subject} allows neither digitalSignature nor keyEncipherment: it will never be used")
    return out


def _uses(signing: bool, encryption: bool) -> str:
    return "+".join(u for u, ok in (("signing", signing), ("encryption", encryption)) if ok) or "no use"


def cmd_domains_add(args: argparse.Namespace) -> int:
    async def body(store: Store) -> int:
        domain = domain_arg(args.domain)
        pair = _load_pair(args)
        now = utc_now()
        rec = await LocalDomains(store).add_key(domain, pair, at=now)
        print(f"{domain}: added key {rec.id} for {rec.certificate.subject} ({_uses(rec.can_sign, rec.can_encrypt)}, "
              f"valid until {rec.certificate.not_after:%Y-%m-%d})")
        warn(key_warnings(rec.certificate, now))
        return 0

    return run(args, body, lambda: domain_arg(args.domain))


def _address_domain(address: str) -> str:
    try:
        return split_address(address)[1]
    except ValueError as exc:
        raise AdminUsageError(str(exc)) from exc


def cmd_domains_add_address(args: argparse.Namespace) -> int:
    async def body(store: Store) -> int:
        domain = _address_domain(args.address)
        pair = _load_pair(args)
        now = utc_now()
        rec = await LocalDomains(store).add_key(domain, pair, at=now, address=args.address)
        print(f"{rec.address}: added key {rec.id} for {rec.certificate.subject} "
              f"({_uses(rec.can_sign, rec.can_encrypt)})")
        warn(key_warnings(rec.certificate, now))
        return 0

    return run(args, body, lambda: _address_domain(args.address))


def cmd_domains_list(args: argparse.Namespace) -> int:
    async def body(store: Store) -> int:
        domains = await LocalDomains(store).all()
        if args.json:
            print_json([
                {"domain": d.name, "created_at": d.created_at.isoformat(), "keys": [key_record_json(k) for k in d.keys]}
                for d in domains
            ])
            return 0
        if not domains:
            print("no local domains (directgw domains add DOMAIN --cert C --key K)")
        for d in domains:
            print(f"{d.name}  ({len(d.keys)} keys)")
            for k in d.keys:
                who = k.address or "(domain)"
                print(f"  [{k.id}] {who}  {k.certificate.subject}  {_uses(k.can_sign, k.can_encrypt)}  "
                      f"until {k.certificate.not_after:%Y-%m-%d}")
        return 0

    return run(args, body)


def cmd_domains_remove(args: argparse.Namespace) -> int:
    async def body(store: Store) -> int:
        domain = domain_arg(args.domain)
        await LocalDomains(store).remove(domain)
        print(f"removed {domain} with its keys, anchors and bundles")
        return 0

    return run(args, body, lambda: domain_arg(args.domain))
