"""``directgw verify``: the full inbound check of one message, offline.

Opens the message (decrypting with ``--key`` when it is encrypted; a message
that is only signed is accepted here, for diagnosis), then judges its signer
exactly as the gateway would (Direct items 8-14): against the ``--anchor``
certificates and ``--crl`` files given and nothing else, with no network and
no database. A certificate that names a CRL distribution point or an OCSP
responder whose answer was not given is reported as revocation unknown.
Exit 0 when trusted, 1 when not (or when the message does not open), 2 on a
usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from anchors.source import Direction, StaticAnchors
from gateway.core import Opened, Rejected, inspect_signature, open_inbound
from gateway.core.certs import CertRef
from trust import (
    DomainPolicies,
    FetchError,
    OfflineFetcher,
    Policy,
    Purpose,
    TrustDecision,
    TrustService,
)
from trust.revinfo import parse_crl

from . import render
from .args import UsageError, parse_at
from .message import _fail, _is_bare_cms, _read, read_certs, read_pairs

VERIFY_DOMAIN = "verify.invalid"
"""The local domain named in decisions when the message names no recipient."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="check one message's signer against given anchors and CRLs, offline")
    p.add_argument("message", type=Path, help="the message (RFC 5322), or a bare CMS signature")
    p.add_argument("--anchor", type=Path, action="append", required=True, help="a trust anchor (PEM or DER; repeatable)")
    p.add_argument("--crl", type=Path, action="append", default=[], help="a CRL (PEM or DER; repeatable)")
    p.add_argument("--cert", type=Path, action="append", default=[], help="an intermediate certificate for path building")
    p.add_argument("--key", type=Path, action="append", default=[], help="our private key, to decrypt (repeatable)")
    p.add_argument("--cert-for-key", type=Path, action="append", default=[], help="the certificate for each --key")
    p.add_argument("--password-file", type=Path, help="password for encrypted keys")
    p.add_argument("--at", help="judge at this ISO 8601 time instead of now")
    p.add_argument("--no-binding", action="store_true", help="do not check the address or domain binding")
    p.add_argument("--allow-sha1", action="store_true", help="accept SHA-1 signed certificates (older HISPs)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_verify)


def _decision(d: TrustDecision) -> dict[str, Any]:
    out: dict[str, Any] = {
        "result": "trusted" if d.trusted else "untrusted",
        "purpose": d.purpose.value,
        "bound_to": d.bound_to,
        "anchors": d.anchors,
        "signer": render.cert(d.certificate),
    }
    if d.trusted:
        out["path"] = [c.subject for c in d.path]
        if d.waived:
            out["waived"] = [str(f) for f in d.waived]
    else:
        assert d.failure is not None
        out.update(
            check=d.failure.check.value,
            detail=d.failure.detail,
            temporary=d.failure.temporary,
            failed_certificate=render.cert(d.failure.certificate),
        )
    return out


def _read_crls(paths: list[Path]) -> list[bytes]:
    out = []
    for path in paths:
        data = _read(path)
        try:
            parse_crl(data, str(path))
        except FetchError as exc:
            raise UsageError(f"{path}: {exc.detail}") from exc
        out.append(data)
    return out


async def _judge(raw: bytes, args: argparse.Namespace) -> dict[str, Any]:
    pairs = read_pairs(args.key, args.cert_for_key, [], args.password_file)
    anchors = read_certs(args.anchor)
    extra: list[CertRef] = read_certs(args.cert)
    at = parse_at(args.at)
    policy = Policy(allow_sha1=args.allow_sha1)
    service = TrustService(
        StaticAnchors(tuple(anchors)), OfflineFetcher(), DomainPolicies(policy), supplied_crls=_read_crls(args.crl)
    )
    if _is_bare_cms(raw):
        report = inspect_signature(raw, at)
        if isinstance(report, Rejected):
            return render.rejected(report)
        sig = report.signature
        # a bare signature names no sender: the binding cannot be checked
        decision = await service.decide(
            sig.signer, purpose=Purpose.SIGNING, bound_to="", local_domain=VERIFY_DOMAIN,
            direction=Direction.INCOMING, at=at, intermediates=(*sig.certificates, *extra), binding=False,
        )
        return _decision(decision)
    opened = open_inbound(raw, pairs, at=at, require_encryption=False)
    if not isinstance(opened, Opened):
        return render.rejected(opened)
    if extra:
        sig = opened.signature
        opened = replace(opened, signature=replace(sig, certificates=(*sig.certificates, *extra)))
    recipients = opened.outer.to or opened.inner.to
    recipient = recipients[0] if recipients else f"postmaster@{VERIFY_DOMAIN}"
    verdict = await service.check_inbound(opened, recipient=recipient, at=at, binding=not args.no_binding)
    out = _decision(verdict.decision)
    out["encrypted"] = opened.encryption is not None
    out["findings"] = [str(f) for f in opened.findings]
    return out


def cmd_verify(args: argparse.Namespace) -> int:
    try:
        raw = _read(args.message)
        # the CLI is a composition root: it runs the one event loop
        data = asyncio.run(_judge(raw, args))
    except UsageError as exc:
        return _fail(exc)
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print("\n".join(render.lines(data)))
    if data["result"] != "trusted":
        if not args.json:
            why = data.get("check") or data.get("reason")
            print(f"\nNOT TRUSTED ({why}): {data['detail']}", file=sys.stderr)
        return 1
    return 0
