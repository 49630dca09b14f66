"""``directgw verify``: the full inbound check of one message, offline.

Opens the message (decrypting with ``--key`` when it is encrypted; a message
that is only signed is accepted here, for diagnosis), then judges its signer
exactly as the gateway would (Direct items 8-14): against the ``--anchor``
certificates and ``--crl`` files given and nothing else, with no network and
no database. A certificate that names a CRL distribution point or an OCSP
responder whose answer was not given is reported as revocation unknown;
with ``--require-revocation`` every certificate below the anchor must be
covered by a CRL given (``RevocationRequirement.REQUIRED``).

The signer is bound to the sender (Direct item 12) as the gateway binds it: a
message's From, and for a bare CMS signature the From inside its signed
content (``SignatureReport.sender``). A bare signature with no such From can
only be judged with ``--no-binding``, which says so.

Exit 0 when trusted, 1 when not (or when the message does not open, or a file
is not what its option needs), 2 on a usage error.

The trust engine is imported when the command runs, not when the parser is
built: ``directgw --help`` does not pay for it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anchors.importing import FileKind
from gateway.core import Opened, Rejected, inspect_signature, open_inbound

from . import render
from .args import EXIT_FAILED, EXIT_OK, CommandFailed, UsageError, fail, parse_at
from .files import identify, read_bytes, read_certs, read_pairs
from .message import is_bare_cms, read_message

if TYPE_CHECKING:
    from datetime import datetime

    from trust import TrustDecision

VERIFY_DOMAIN = "verify.invalid"
"""The local domain named in decisions when the message names no recipient."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="check one message's signer against given anchors and CRLs, offline")
    p.add_argument("message", type=Path, help="the message (RFC 5322), or a bare CMS signature")
    p.add_argument("--anchor", type=Path, action="append", required=True,
                   help="a trust anchor (PEM, DER or .p7b; repeatable)")
    p.add_argument("--crl", type=Path, action="append", default=[], help="a CRL (PEM or DER; repeatable)")
    p.add_argument("--cert", type=Path, action="append", default=[],
                   help="an intermediate certificate for path building (repeatable)")
    p.add_argument("--key", type=Path, action="append", default=[], help="our private key, to decrypt (repeatable)")
    p.add_argument("--cert-for-key", type=Path, action="append", default=[],
                   help="the certificate for each --key, in the same order")
    p.add_argument("--password-file", type=Path, help="password for encrypted keys")
    p.add_argument("--at", help="judge at this ISO 8601 time instead of now")
    p.add_argument("--no-binding", action="store_true",
                   help="do not check that the signer is bound to the sender (needed for a bare CMS signature "
                        "whose content names no From)")
    p.add_argument("--require-revocation", action="store_true",
                   help="every certificate below the anchor must be covered by a --crl (by default only those "
                        "that name a CRL or OCSP source)")
    p.add_argument("--allow-sha1", action="store_true", help="accept SHA-1 signed certificates (older HISPs)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
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


def _read_crls(paths: list[Path], at: datetime) -> list[bytes]:
    from trust import FetchError
    from trust.revinfo import parse_crl

    out = []
    for path in paths:
        data = read_bytes(path, "--crl")
        try:
            parse_crl(data, str(path))
        except (FetchError, ValueError) as exc:
            found = identify(data, path, at)
            if found.kind is FileKind.CRL:
                raise CommandFailed(f"--crl {path}: a CRL that does not parse") from exc
            raise CommandFailed(f"--crl {path}: this is {found}, not a CRL") from exc
        out.append(data)
    return out


def _unbound(reason: str) -> dict[str, Any]:
    """A bare signature that cannot be bound: refused, as the gateway would refuse it."""
    return {
        "result": "untrusted",
        "check": "binding",
        "detail": f"{reason}; give --no-binding to judge the signer without binding it to a sender",
        "temporary": False,
    }


async def _judge(raw: bytes, args: argparse.Namespace, at: datetime) -> dict[str, Any]:
    from anchors.source import Direction, StaticAnchors
    from trust import DomainPolicies, OfflineFetcher, Policy, Purpose, TrustService
    from trust.policy import RevocationRequirement

    pairs = read_pairs(args.key, args.cert_for_key, [], args.password_file,
                       key_option="--key", cert_option="--cert-for-key", at=at)
    anchors = read_certs(args.anchor, "--anchor", at)
    extra = read_certs(args.cert, "--cert", at)
    policy = Policy(allow_sha1=args.allow_sha1)
    if args.require_revocation:
        policy = replace(policy, revocation=RevocationRequirement.REQUIRED)
    service = TrustService(
        StaticAnchors(tuple(anchors)), OfflineFetcher(), DomainPolicies(policy), supplied_crls=_read_crls(args.crl, at)
    )
    if is_bare_cms(raw):
        report = inspect_signature(raw, at)
        if isinstance(report, Rejected):
            return render.rejected(report)
        sender = report.sender
        if not args.no_binding and sender is None:
            return _unbound(report.sender_problem or "a bare CMS signature whose content names no From")
        sig = report.signature
        decision = await service.decide(
            sig.signer, purpose=Purpose.SIGNING, bound_to=sender or "", local_domain=VERIFY_DOMAIN,
            direction=Direction.INCOMING, at=at, intermediates=(*sig.certificates, *extra),
            binding=not args.no_binding,
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
        at = parse_at(args.at)
        raw = read_message(args.message)
        # the CLI is a composition root: it runs the one event loop
        data = asyncio.run(_judge(raw, args, at))
    except (UsageError, CommandFailed) as exc:
        return fail(exc)
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print("\n".join(render.lines(data)))
    if data["result"] != "trusted":
        if not args.json:
            why = data.get("check") or data.get("reason")
            print(f"\nNOT TRUSTED ({why}): {data['detail']}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
