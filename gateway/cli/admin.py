"""``directgw init | domains | anchors | bundles``: the administrator's commands.

Every command takes ``--config FILE`` (default ``$DIRECTGW_CONFIG``, else
``./directgw.toml``), opens the database named there (migrating it to the
current schema), does one thing and says what it did. Files are read and
checked before the database is touched, so a wrong file changes nothing.
Errors are one line on stderr and exit 1; usage errors exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy.exc import SQLAlchemyError

from anchors.bundles import (
    DEFAULT_REFRESH,
    BundleDefinitionError,
    BundleRecord,
    Bundles,
    RefreshOutcome,
    RefreshStatus,
)
from anchors.importing import AnchorFileError, read_anchor_file
from anchors.source import Direction
from anchors.store import AnchorRecord, DbAnchors
from gateway.config import (
    DEFAULT_CONFIG_NAME,
    ConfigError,
    load_config,
    parse_config,
    starter_config,
)
from gateway.core.certs import (
    CertRef,
    KeyMaterialError,
    KeyPair,
    load_certificates,
    load_pkcs12,
    load_private_key,
)
from gateway.domains import DomainError, LocalDomains, check_key_file, split_address
from gateway.store import Store, StoreError, open_store
from gateway.store.lookups import normalise_domain

CONFIG_ENV = "DIRECTGW_CONFIG"
DIRECTIONS = {"incoming": (Direction.INCOMING,), "outgoing": (Direction.OUTGOING,), "both": tuple(Direction)}


class AdminUsageError(Exception):
    """A wrong option or argument: exit 2."""


class AdminError(Exception):
    """The command could not do what was asked: exit 1."""


# --------------------------------------------------------------------------- plumbing


def _now() -> datetime:
    return datetime.now(UTC)  # the CLI is a composition root: it may read the clock


def _config_path(args: argparse.Namespace) -> Path:
    if args.config is not None:
        return Path(args.config)
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_NAME)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise AdminError(f"cannot read {path}: {exc.strerror}") from exc


def _domain(value: str) -> str:
    try:
        return normalise_domain(value)
    except ValueError as exc:
        raise AdminUsageError(str(exc)) from exc


def _duration(value: str) -> timedelta:
    m = re.fullmatch(r"\s*(\d{1,9})\s*([smhd]?)\s*", value)
    if not m:
        raise AdminUsageError(f"--refresh {value!r}: expected a number with s, m, h or d (e.g. 6h)")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "": "seconds"}[m.group(2)]
    return timedelta(**{unit: int(m.group(1))})  # nine digits of days still fit a timedelta


def _run(
    args: argparse.Namespace, body: Callable[[Store], Awaitable[int]], check: Callable[[], object] | None = None
) -> int:
    """Run ``check`` (argument checks, so a usage error comes before any
    configuration or database), load the configuration, open the store, run
    ``body``, and turn every expected failure into one line on stderr."""

    async def go() -> int:
        config = load_config(_config_path(args))
        store = await open_store(config.storage_url)
        try:
            return await body(store)
        finally:
            await store.close()

    def main() -> int:
        if check is not None:
            check()
        return asyncio.run(go())

    return _guard(main)


def _guard(fn: Callable[[], int]) -> int:
    try:
        return fn()
    except AdminUsageError as exc:
        print(f"directgw: {exc}", file=sys.stderr)
        return 2
    except (
        AdminError, ConfigError, StoreError, DomainError, AnchorFileError, KeyMaterialError, BundleDefinitionError,
    ) as exc:
        print(f"directgw: {exc}", file=sys.stderr)
        return 1
    except SQLAlchemyError as exc:  # the database went away mid-command
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        print(f"directgw: database error: {detail[0] if detail else type(exc).__name__}", file=sys.stderr)
        return 1


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


def _warn(lines: tuple[str, ...] | list[str], source: str = "") -> None:
    for line in lines:
        print(f"warning: {source + ': ' if source else ''}{line}", file=sys.stderr)


# --------------------------------------------------------------------------- init


def cmd_init(args: argparse.Namespace) -> int:
    def body() -> int:
        path = _config_path(args)
        domain = _domain(args.domain)
        if path.exists():
            raise AdminError(f"{path} already exists; edit it, or give another --config")
        text = starter_config(domain, args.data_dir or "data", args.storage_url)
        config = parse_config(text, path)  # a bad --storage-url fails before anything is written
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise AdminError(f"cannot write {path}: {exc.strerror}") from exc
        try:
            # the database holds private keys: only the gateway's user may enter
            config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise AdminError(f"cannot create {config.data_dir}: {exc.strerror}") from exc

        async def go() -> None:
            store = await open_store(config.storage_url)
            try:
                await LocalDomains(store).create(domain, at=_now())
            finally:
                await store.close()

        asyncio.run(go())
        print(f"wrote {path}")
        print(f"database ready: {config.storage_url}")
        print(f"local domain {domain} created; next: directgw domains add {domain} --cert C --key K")
        return 0

    return _guard(body)


# --------------------------------------------------------------------------- domains


def _key_record_json(k: Any) -> dict[str, Any]:
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
        password = _read(args.password_file).rstrip(b"\r\n")
    if getattr(args, "p12", None) is not None:
        if args.cert or args.key:
            raise AdminUsageError("give either --p12 or --cert and --key, not both")
        check_key_file(args.p12)
        try:
            return load_pkcs12(_read(args.p12), password)
        except KeyMaterialError as exc:
            raise AdminError(f"--p12 {args.p12}: {exc}") from exc
    if not (args.cert and args.key):
        raise AdminUsageError("give --cert and --key (or --p12)")
    check_key_file(args.key)
    cert = _certificate(args.cert, "--cert")
    try:
        key = load_private_key(_read(args.key), password)
    except KeyMaterialError as exc:
        raise AdminError(f"--key {args.key}: {exc}") from exc
    return KeyPair(key, cert)


def _key_warnings(cert: CertRef, now: datetime) -> list[str]:
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
        domain = _domain(args.domain)
        pair = _load_pair(args)
        now = _now()
        rec = await LocalDomains(store).add_key(domain, pair, at=now)
        print(f"{domain}: added key {rec.id} for {rec.certificate.subject} ({_uses(rec.can_sign, rec.can_encrypt)}, "
              f"valid until {rec.certificate.not_after:%Y-%m-%d})")
        _warn(_key_warnings(rec.certificate, now))
        return 0

    return _run(args, body, lambda: _domain(args.domain))


def _address_domain(address: str) -> str:
    try:
        return split_address(address)[1]
    except ValueError as exc:
        raise AdminUsageError(str(exc)) from exc


def cmd_domains_add_address(args: argparse.Namespace) -> int:
    async def body(store: Store) -> int:
        domain = _address_domain(args.address)
        pair = _load_pair(args)
        now = _now()
        rec = await LocalDomains(store).add_key(domain, pair, at=now, address=args.address)
        print(f"{rec.address}: added key {rec.id} for {rec.certificate.subject} "
              f"({_uses(rec.can_sign, rec.can_encrypt)})")
        _warn(_key_warnings(rec.certificate, now))
        return 0

    return _run(args, body, lambda: _address_domain(args.address))


def cmd_domains_list(args: argparse.Namespace) -> int:
    async def body(store: Store) -> int:
        domains = await LocalDomains(store).all()
        if args.json:
            _print_json([
                {"domain": d.name, "created_at": d.created_at.isoformat(), "keys": [_key_record_json(k) for k in d.keys]}
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

    return _run(args, body)


def cmd_domains_remove(args: argparse.Namespace) -> int:
    async def body(store: Store) -> int:
        domain = _domain(args.domain)
        await LocalDomains(store).remove(domain)
        print(f"removed {domain} with its keys, anchors and bundles")
        return 0

    return _run(args, body, lambda: _domain(args.domain))


# --------------------------------------------------------------------------- anchors


def _anchor_json(a: AnchorRecord) -> dict[str, Any]:
    return {
        "id": a.id, "domain": a.domain, "direction": a.direction.value, "subject": a.subject, "sha256": a.sha256,
        "not_after": a.not_after.isoformat(), "source": a.source, "added_at": a.added_at.isoformat(),
    }


def _certificate(path: Path, option: str) -> CertRef:
    try:
        return load_certificates(_read(path))[0]
    except KeyMaterialError as exc:
        raise AdminError(f"{option} {path}: {exc}") from exc


def _signer(path: Path | None) -> CertRef | None:
    return None if path is None else _certificate(path, "--signer")


def cmd_anchors_add(args: argparse.Namespace) -> int:
    async def body(store: Store) -> int:
        domain = _domain(args.domain)
        directions = DIRECTIONS[args.direction]
        at = _now()
        signer = _signer(args.signer)
        certs: list[CertRef] = []
        for path in args.files:  # every file is checked before anything is stored
            imported = read_anchor_file(_read(path), str(path), at=at, signer=signer)
            _warn(imported.warnings, str(path))
            certs.extend(imported.certificates)
        result = await DbAnchors(store).add(domain, directions, certs, at=at)
        for a in result.added:
            print(f"[{a.id}] {a.domain} {a.direction.value}: {a.subject}")
        for direction, cert in result.already_present:
            print(f"already an {direction.value} anchor of {domain}: {cert.subject}")
        return 0

    return _run(args, body, lambda: _domain(args.domain))


def cmd_anchors_list(args: argparse.Namespace) -> int:
    async def body(store: Store) -> int:
        records = await DbAnchors(store).all(_domain(args.domain) if args.domain else None)
        if args.json:
            _print_json([_anchor_json(a) for a in records])
            return 0
        if not records:
            print("no anchors (directgw anchors add --domain D FILE)")
        for a in records:
            print(f"[{a.id}] {a.domain} {a.direction.value:<8} {a.subject}  until {a.not_after:%Y-%m-%d}  ({a.source})")
        return 0

    return _run(args, body, lambda: args.domain and _domain(args.domain))


def cmd_anchors_remove(args: argparse.Namespace) -> int:
    async def body(store: Store) -> int:
        a = await DbAnchors(store).remove(args.id)
        print(f"removed {a.direction.value} anchor {a.id} of {a.domain}: {a.subject}")
        return 0

    return _run(args, body)


# --------------------------------------------------------------------------- bundles


def _bundle_json(b: BundleRecord) -> dict[str, Any]:
    def iso(t: datetime | None) -> str | None:
        return t.isoformat() if t else None

    return {
        "id": b.id, "domain": b.domain, "url": b.url, "directions": [d.value for d in b.directions],
        "refresh_seconds": int(b.refresh.total_seconds()), "signer": b.signer.subject if b.signer else None,
        "certificates": b.certificates, "checksum": b.checksum, "last_refresh_at": iso(b.last_refresh_at),
        "last_status": b.last_status, "last_error": b.last_error, "next_refresh_at": iso(b.next_refresh_at),
    }


def _report(outcome: RefreshOutcome) -> bool:
    _warn(outcome.warnings, outcome.url)
    if outcome.status is RefreshStatus.FAILED:
        assert outcome.problem is not None
        print(f"directgw: bundle {outcome.bundle_id} {outcome.url}: {outcome.problem.value}: {outcome.detail} "
              f"(keeping the last good copy, {outcome.certificates} certificates)", file=sys.stderr)
        return False
    print(f"bundle {outcome.bundle_id} {outcome.url}: {outcome.status.value}, {outcome.certificates} certificates")
    return True


def cmd_bundles_add(args: argparse.Namespace) -> int:
    async def body(store: Store) -> int:
        domain = _domain(args.domain)
        refresh = _duration(args.refresh)
        at = _now()
        signer = _signer(args.signer)
        async with aiohttp.ClientSession() as session:
            bundles = Bundles(store, session)
            record = await bundles.add(args.url, domain, DIRECTIONS[args.direction], refresh=refresh, signer=signer, at=at)
            print(f"added bundle {record.id} for {domain}: {record.url}")
            return 0 if _report(await bundles.refresh(record, at)) else 1

    return _run(args, body, lambda: (_domain(args.domain), _duration(args.refresh)))


def cmd_bundles_list(args: argparse.Namespace) -> int:
    async def body(store: Store) -> int:
        records = await Bundles(store).all()
        if args.json:
            _print_json([_bundle_json(b) for b in records])
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

    return _run(args, body)


def cmd_bundles_refresh(args: argparse.Namespace) -> int:
    async def body(store: Store) -> int:
        async with aiohttp.ClientSession() as session:
            outcomes = await Bundles(store, session).refresh_due(_now(), force=not args.due)
        ok = [_report(o) for o in outcomes]
        return 0 if all(ok) else 1

    return _run(args, body)


def cmd_bundles_remove(args: argparse.Namespace) -> int:
    async def body(store: Store) -> int:
        b = await Bundles(store).remove(args.id)
        print(f"removed bundle {b.id} ({b.url}) and its anchors")
        return 0

    return _run(args, body)


# --------------------------------------------------------------------------- parsers


def register(sub: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, help=f"configuration file (default ${CONFIG_ENV} or ./{DEFAULT_CONFIG_NAME})")
    listing = argparse.ArgumentParser(add_help=False, parents=[common])
    listing.add_argument("--json", action="store_true")
    direction = argparse.ArgumentParser(add_help=False)
    direction.add_argument("--direction", choices=list(DIRECTIONS), default="both",
                           help="which mail the anchors judge (default both)")

    p = sub.add_parser("init", parents=[common], help="write a starter configuration and database")
    p.add_argument("--data-dir", help="where the database lives (default ./data beside the configuration)")
    p.add_argument("--domain", required=True, help="the first local domain")
    p.add_argument("--storage-url", help="a PostgreSQL database (postgresql+asyncpg://...) instead of SQLite")
    p.set_defaults(func=cmd_init)

    dom = sub.add_parser("domains", help="local domains and their keys").add_subparsers(metavar="ACTION", required=True)
    p = dom.add_parser("add", parents=[common], help="add a domain, or a new key for one (rollover)")
    p.add_argument("domain")
    _key_options(p, p12=True)
    p.set_defaults(func=cmd_domains_add)
    p = dom.add_parser("add-address", parents=[common], help="add an address-bound certificate and key")
    p.add_argument("address")
    _key_options(p, p12=True)
    p.set_defaults(func=cmd_domains_add_address)
    dom.add_parser("list", parents=[listing], help="list domains and keys").set_defaults(func=cmd_domains_list)
    p = dom.add_parser("remove", parents=[common], help="remove a domain with its keys, anchors and bundles")
    p.add_argument("domain")
    p.set_defaults(func=cmd_domains_remove)

    anc = sub.add_parser("anchors", help="trust anchors per domain and direction").add_subparsers(metavar="ACTION", required=True)
    p = anc.add_parser("add", parents=[common, direction], help="add anchors from PEM, DER, .p7b or .p7m files")
    p.add_argument("--domain", required=True)
    p.add_argument("--signer", type=Path, help="the certificate a signed .p7m bundle must be signed by")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p.set_defaults(func=cmd_anchors_add)
    p = anc.add_parser("list", parents=[listing], help="list anchors")
    p.add_argument("--domain")
    p.set_defaults(func=cmd_anchors_list)
    p = anc.add_parser("remove", parents=[common], help="remove a manually added anchor")
    p.add_argument("id", type=int)
    p.set_defaults(func=cmd_anchors_remove)

    bun = sub.add_parser("bundles", help="trust bundles fetched by URL").add_subparsers(metavar="ACTION", required=True)
    p = bun.add_parser("add", parents=[common, direction], help="add a trust bundle URL and fetch it")
    p.add_argument("url")
    p.add_argument("--domain", required=True)
    p.add_argument("--refresh", default=f"{int(DEFAULT_REFRESH.total_seconds() // 3600)}h",
                   help="refresh interval, e.g. 30m, 6h, 1d (default 6h)")
    p.add_argument("--signer", type=Path, help="the certificate the bundle must be signed by (.p7m)")
    p.set_defaults(func=cmd_bundles_add)
    bun.add_parser("list", parents=[listing], help="list bundles and their last refresh").set_defaults(func=cmd_bundles_list)
    p = bun.add_parser("refresh", parents=[common], help="refresh every bundle now")
    p.add_argument("--due", action="store_true", help="only bundles whose refresh time has come")
    p.set_defaults(func=cmd_bundles_refresh)
    p = bun.add_parser("remove", parents=[common], help="remove a bundle and its anchors")
    p.add_argument("id", type=int)
    p.set_defaults(func=cmd_bundles_remove)


def _key_options(p: argparse.ArgumentParser, *, p12: bool) -> None:
    p.add_argument("--cert", type=Path, help="the certificate (PEM or DER)")
    p.add_argument("--key", type=Path, help="its private key (PEM or DER; mode 600)")
    if p12:
        p.add_argument("--p12", type=Path, help="a PKCS#12 file holding both")
    p.add_argument("--password-file", type=Path, help="password for the key or PKCS#12 file")
