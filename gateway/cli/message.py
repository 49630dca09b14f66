"""``directgw open`` and ``directgw seal``: the message core, one file at a time.

Administrators debug with these: what a message was encrypted with, who
signed it, what it carries; or what we would send for a given message and
certificates. Keys and certificates are read as PEM, DER or PKCS#12.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gateway.core import (
    CertRef,
    ContentCipher,
    KeyMaterialError,
    KeyPair,
    KeyTransport,
    Opened,
    Rejected,
    SealOptions,
    inspect_signature,
    open_inbound,
    seal_outbound,
)
from gateway.core.certs import load_certificates, load_key_pair, load_pkcs12

from . import render
from .args import UsageError, parse_at

CIPHERS = {c.value: c for c in ContentCipher if not c.weak}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("open", help="decrypt a Direct message and check its signature")
    p.add_argument("message", type=Path, help="the message (RFC 5322), or a bare CMS signature")
    p.add_argument("--key", type=Path, action="append", default=[], help="our private key (repeatable)")
    p.add_argument("--cert", type=Path, action="append", default=[], help="the certificate for each --key")
    p.add_argument("--p12", type=Path, action="append", default=[], help="a PKCS#12 key and certificate")
    p.add_argument("--password-file", type=Path, help="password for encrypted keys or PKCS#12")
    p.add_argument("--signed-only", action="store_true", help="accept a message that is signed but not encrypted")
    p.add_argument("--at", help="judge at this ISO 8601 time instead of now")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_open)

    s = sub.add_parser("seal", help="wrap, sign and encrypt a plain message for Direct")
    s.add_argument("message", type=Path)
    s.add_argument("--sign-key", type=Path, help="the sender's private key")
    s.add_argument("--sign-cert", type=Path, help="the sender's certificate")
    s.add_argument("--sign-p12", type=Path, help="the sender's key and certificate as PKCS#12")
    s.add_argument("--password-file", type=Path)
    s.add_argument("--chain", type=Path, action="append", default=[], help="intermediates to include")
    s.add_argument("--to-cert", type=Path, action="append", required=True, help="a recipient certificate")
    s.add_argument("--cipher", choices=sorted(CIPHERS), default=ContentCipher.AES256_CBC.value)
    s.add_argument("--oaep", action="store_true", help="RSA-OAEP (SHA-256) key transport")
    s.add_argument("--expose-subject", action="store_true")
    s.add_argument("--at", help="sign at this ISO 8601 time instead of now")
    s.set_defaults(func=cmd_seal)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc


def _password(path: Path | None) -> bytes | None:
    return _read(path).rstrip(b"\r\n") if path else None


def read_pairs(keys: list[Path], certs: list[Path], p12s: list[Path], password: Path | None) -> list[KeyPair]:
    if len(keys) != len(certs):
        raise UsageError("give one --cert for each --key")
    pw = _password(password)
    try:
        pairs = [load_key_pair(_read(k), _read(c), pw) for k, c in zip(keys, certs, strict=True)]
        pairs += [load_pkcs12(_read(p), pw) for p in p12s]
    except KeyMaterialError as exc:
        raise UsageError(str(exc)) from exc
    return pairs


def read_certs(paths: list[Path]) -> list[CertRef]:
    out: list[CertRef] = []
    for path in paths:
        try:
            out.extend(load_certificates(_read(path)))
        except KeyMaterialError as exc:
            raise UsageError(f"{path}: {exc}") from exc
    return out


def _fail(exc: UsageError) -> int:
    print(f"directgw: {exc}", file=sys.stderr)
    return 2


def cmd_open(args: argparse.Namespace) -> int:
    try:
        raw = _read(args.message)
        pairs = read_pairs(args.key, args.cert, args.p12, args.password_file)
        at = parse_at(args.at)
    except UsageError as exc:
        return _fail(exc)
    if _is_bare_cms(raw):
        report = inspect_signature(raw, at)
        data = render.rejected(report) if isinstance(report, Rejected) else render.signature_report(report)
    else:
        result = open_inbound(raw, pairs, at=at, require_encryption=not args.signed_only)
        data = render.opened(result) if isinstance(result, Opened) else render.rejected(result)
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print("\n".join(render.lines(data)))
    if data["result"] == "rejected":
        if not args.json:
            print(f"\nREJECTED ({data['reason']}): {data['detail']}", file=sys.stderr)
        return 1
    return 0


def _is_bare_cms(raw: bytes) -> bool:
    """A DER blob, a PEM PKCS7 block or base64 of one: no header section at all."""
    head = raw.lstrip()[:64]
    return head[:1] == b"\x30" or head.startswith(b"-----BEGIN PKCS7") or head.startswith(b"MI")


def cmd_seal(args: argparse.Namespace) -> int:
    try:
        raw = _read(args.message)
        if args.sign_p12:
            sender = read_pairs([], [], [args.sign_p12], args.password_file)[0]
        elif args.sign_key and args.sign_cert:
            sender = read_pairs([args.sign_key], [args.sign_cert], [], args.password_file)[0]
        else:
            raise UsageError("give --sign-key with --sign-cert, or --sign-p12")
        recipients = read_certs(args.to_cert)
        chain = tuple(read_certs(args.chain))
        options = SealOptions(
            at=parse_at(args.at),
            cipher=CIPHERS[args.cipher],
            key_transport=KeyTransport.RSA_OAEP_SHA256 if args.oaep else KeyTransport.RSA_PKCS1V15,
            expose_subject=args.expose_subject,
            chain=chain,
        )
    except UsageError as exc:
        return _fail(exc)
    result = seal_outbound(raw, sender, recipients, options)
    if isinstance(result, Rejected):
        print(f"directgw: not sealed ({result.reason.value}): {result.detail}", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(result.message)
    sys.stdout.buffer.flush()
    return 0
