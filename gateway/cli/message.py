"""``directgw open`` and ``directgw seal``: the message core, one file at a time.

Administrators debug with these: what a message was encrypted with, who
signed it, what it carries (``open --output DIR`` writes it out); or what we
would send for a given message and certificates. Keys and certificates are
read as PEM, DER or PKCS#12; a file that is not what its option needs is
named as such (``files``).

Only the message core is imported here: these commands must start fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path

from gateway.core import (
    ContentCipher,
    KeyPair,
    KeyTransport,
    Opened,
    Rejected,
    SealOptions,
    inspect_signature,
    open_inbound,
    seal_outbound,
)
from gateway.core.limits import DEFAULT_LIMITS
from gateway.core.mime import MimeError, addresses, parse_entity
from gateway.core.sender import bound_sender

from . import render
from .args import EXIT_FAILED, EXIT_OK, CommandFailed, UsageError, fail, parse_at, warn
from .files import read_certs, read_pairs
from .output import write_content

CIPHERS = {c.value: c for c in ContentCipher if not c.weak}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("open", help="decrypt a Direct message and check its signature")
    p.add_argument("message", type=Path, help="the message (RFC 5322), or a bare CMS signature")
    p.add_argument("--key", type=Path, action="append", default=[], help="our private key (repeatable)")
    p.add_argument("--cert", type=Path, action="append", default=[], help="the certificate for each --key, in order")
    p.add_argument("--p12", type=Path, action="append", default=[], help="a PKCS#12 key and certificate (repeatable)")
    p.add_argument("--password-file", type=Path, help="password for encrypted keys or PKCS#12")
    p.add_argument("--signed-only", action="store_true", help="accept a message that is signed but not encrypted")
    p.add_argument("--output", type=Path, metavar="DIR",
                   help="write the verified content here: the inner message as message.eml, and each attachment")
    p.add_argument("--at", help="judge at this ISO 8601 time instead of now")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_open)

    s = sub.add_parser("seal", help="wrap, sign and encrypt a plain message for Direct")
    s.add_argument("message", type=Path, help="the plain message (RFC 5322) to seal; written sealed to stdout")
    s.add_argument("--sign-key", type=Path, help="the sender's private key")
    s.add_argument("--sign-cert", type=Path, help="the sender's certificate")
    s.add_argument("--sign-p12", type=Path, help="the sender's key and certificate as PKCS#12")
    s.add_argument("--password-file", type=Path, help="password for the sender's key or PKCS#12")
    s.add_argument("--chain", type=Path, action="append", default=[], help="intermediates to include (repeatable)")
    s.add_argument("--to-cert", type=Path, action="append", required=True,
                   help="a recipient certificate (repeatable)")
    s.add_argument("--cipher", choices=sorted(CIPHERS), default=ContentCipher.AES256_CBC.value,
                   help=f"content encryption (default {ContentCipher.AES256_CBC.value})")
    s.add_argument("--oaep", action="store_true", help="RSA-OAEP (SHA-256) key transport")
    s.add_argument("--expose-subject", action="store_true",
                   help="copy the Subject to the outer, unprotected headers (hidden by default)")
    s.add_argument("--at", help="sign at this ISO 8601 time instead of now")
    s.set_defaults(func=cmd_seal)


def cmd_open(args: argparse.Namespace) -> int:
    try:
        at = parse_at(args.at)
        raw = read_message(args.message)
        pairs = read_pairs(args.key, args.cert, args.p12, args.password_file,
                           key_option="--key", cert_option="--cert", at=at)
    except (UsageError, CommandFailed) as exc:
        return fail(exc)
    if is_bare_cms(raw):
        report = inspect_signature(raw, at)
        data = render.rejected(report) if isinstance(report, Rejected) else render.signature_report(report)
        opened = None
    else:
        result = open_inbound(raw, pairs, at=at, require_encryption=not args.signed_only)
        opened = result if isinstance(result, Opened) else None
        data = render.opened(result) if isinstance(result, Opened) else render.rejected(result)
    if args.output is not None and opened is not None:
        try:
            data["written"] = [str(p) for p in write_content(opened, args.output)]
        except CommandFailed as exc:
            return fail(exc)
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print("\n".join(render.lines(data)))
    if data["result"] == "rejected":
        if not args.json:
            print(f"\nREJECTED ({data['reason']}): {data['detail']}", file=sys.stderr)
        return EXIT_FAILED
    if args.output is not None and opened is None:
        warn(f"a bare signature carries no message: nothing written to {args.output}")
    return EXIT_OK


def read_message(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CommandFailed(f"cannot read {path}: {exc.strerror}") from exc


def is_bare_cms(raw: bytes) -> bool:
    """A DER blob, a PEM PKCS7 block or base64 of one: no header section at all."""
    head = raw.lstrip()[:64]
    return head[:1] == b"\x30" or head.startswith(b"-----BEGIN PKCS7") or head.startswith(b"MI")


def _sender(args: argparse.Namespace, at: datetime) -> KeyPair:
    if args.sign_p12:
        if args.sign_key or args.sign_cert:
            raise UsageError("give --sign-key with --sign-cert, or --sign-p12, not both")
        return read_pairs([], [], [args.sign_p12], args.password_file, key_option="--sign-key",
                          cert_option="--sign-cert", p12_option="--sign-p12", at=at)[0]
    if args.sign_key and args.sign_cert:
        return read_pairs([args.sign_key], [args.sign_cert], [], args.password_file,
                          key_option="--sign-key", cert_option="--sign-cert", at=at)[0]
    raise UsageError("give --sign-key with --sign-cert, or --sign-p12")


def seal_warnings(raw: bytes, signer: KeyPair) -> list[str]:
    """What a peer will refuse, or a reader miss, though sealing succeeds.

    The sender is read as the recipient's gateway reads it (``core.sender``:
    the single mailbox of the single From, strictly), and must be named by
    the signing certificate (Direct item 12, as ``trust.direct.check_binding``
    judges it on our inbound side: the exact address, or its domain in an org
    certificate), or the signature is refused on arrival. A message with no
    To names no one it is for once it is opened. Checked here rather than
    through ``trust``, whose import (the HTTP client) seal does not need.
    """
    try:
        entity = parse_entity(raw, DEFAULT_LIMITS)
        sender = bound_sender(entity, entity, DEFAULT_LIMITS)
    except MimeError:
        return []  # sealing refuses it, with the reason
    out = []
    cert = signer.cert
    if isinstance(sender, Rejected):
        out.append(f"{sender.detail}: the recipient will refuse the signature")
    else:
        address = sender.lower()
        if address not in cert.email_addresses and address.rpartition("@")[2] not in cert.dns_names:
            named = ", ".join([*cert.email_addresses, *cert.dns_names]) or "no address and no domain"
            out.append(f"the From {address} is not bound by the signing certificate (it names {named}): "
                       "the recipient will refuse the signature (Direct binding)")
    if not addresses(entity.get_all("To")):
        out.append("the message has no To: nothing names who it is for once it is opened")
    return out


def cmd_seal(args: argparse.Namespace) -> int:
    try:
        at = parse_at(args.at)
        raw = read_message(args.message)
        sender = _sender(args, at)
        recipients = read_certs(args.to_cert, "--to-cert", at)
        chain = tuple(read_certs(args.chain, "--chain", at))
    except (UsageError, CommandFailed) as exc:
        return fail(exc)
    options = SealOptions(
        at=at,
        cipher=CIPHERS[args.cipher],
        key_transport=KeyTransport.RSA_OAEP_SHA256 if args.oaep else KeyTransport.RSA_PKCS1V15,
        expose_subject=args.expose_subject,
        chain=chain,
    )
    result = seal_outbound(raw, sender, recipients, options)
    if isinstance(result, Rejected):
        print(f"directgw: not sealed ({result.reason.value}): {result.detail}", file=sys.stderr)
        return EXIT_FAILED
    for line in seal_warnings(raw, sender):
        warn(line)
    sys.stdout.buffer.write(result.message)
    sys.stdout.buffer.flush()
    return EXIT_OK
