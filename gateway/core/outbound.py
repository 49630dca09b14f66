"""``seal_outbound``: a provider's plain message in, a Direct S/MIME message out.

Direct wrapping (the whole original as message/rfc822, so the real headers
travel encrypted; Applicability Statement section 3.3), then a detached
signature (multipart/signed, RFC 8551 section 3.5.3), then encryption to every
recipient certificate (RFC 8551 section 3.3), then outer headers that expose
routing only (no Subject unless asked: ETT DTS 124).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.utils import format_datetime, formataddr

from . import cms
from .address import parse_address_list
from .algorithms import ContentCipher, Digest, KeyTransport
from .certs import CertRef, KeyPair, utc
from .limits import DEFAULT_LIMITS, Limits
from .mime import MimeError, base64_lines, canonical, format_headers, parse_entity
from .outcomes import Rejected, RejectReason, Sealed

# Headers never copied to the outer message, and Bcc never sent at all (specs/direct.md item 7).
_DROPPED = {"bcc"}
_OUTER_COPIED = ("From", "To", "Cc", "Date")


@dataclass(frozen=True, slots=True)
class SealOptions:
    at: datetime
    digest: Digest = Digest.SHA256
    cipher: ContentCipher = ContentCipher.AES256_CBC
    key_transport: KeyTransport = KeyTransport.RSA_PKCS1V15
    expose_subject: bool = False
    chain: tuple[CertRef, ...] = ()
    """Intermediate certificates to include with the signature, for the recipient's path building."""
    limits: Limits = DEFAULT_LIMITS

    def __post_init__(self) -> None:
        if self.digest.weak:
            raise ValueError("Direct sends with SHA-256 or stronger (AS 1.2 removed SHA-1)")
        if self.cipher.weak:
            raise ValueError("Direct never sends 3DES")


def new_message_id(domain: str) -> str:
    return f"<{os.urandom(16).hex()}@{domain}>"


def seal_outbound(
    message: bytes,
    sender: KeyPair,
    recipient_certs: Sequence[CertRef],
    options: SealOptions,
) -> Sealed | Rejected:
    at = utc(options.at)
    if not recipient_certs:
        return Rejected(
            RejectReason.NO_RECIPIENT_CERTIFICATE,
            "no recipient certificate to encrypt to: the message must not be sent (specs/direct.md item 21)",
        )
    if not sender.cert.can_sign:
        return Rejected(
            RejectReason.UNSUITABLE_KEY,
            f"the sender certificate {sender.cert.subject} lacks digitalSignature key usage",
            sender.cert,
        )
    for cert in recipient_certs:
        if not cert.can_encrypt or cert.key_algorithm != "rsa":
            return Rejected(
                RejectReason.UNSUITABLE_KEY,
                f"the recipient certificate {cert.subject} cannot be used for RSA key transport "
                "(keyEncipherment and an RSA key are required)",
                cert,
            )
    try:
        original = parse_entity(canonical(message), options.limits)
    except MimeError as exc:
        return Rejected(RejectReason.MALFORMED, f"the submitted message cannot be read: {exc}")
    if not original.get_all("From"):
        return Rejected(RejectReason.MALFORMED, "the submitted message has no From header")

    fields = [(k, v) for k, v in original.fields if k.lower() not in _DROPPED]
    message_id = original.get("Message-ID")
    if not message_id:
        message_id = new_message_id(_sender_domain(sender, original.get("From") or ""))
        fields.append(("Message-ID", message_id))
    if original.get("Date") is None:
        fields.append(("Date", format_datetime(at)))
    inner = format_headers(fields) + b"\r\n" + original.body

    wrapped = b"Content-Type: message/rfc822\r\n\r\n" + inner
    signature = cms.sign(wrapped, sender, options.digest, at, chain=options.chain)
    boundary = f"----=_directgw_{os.urandom(12).hex()}"
    signed = (
        format_headers(
            [
                (
                    "Content-Type",
                    f'multipart/signed; protocol="application/pkcs7-signature"; '
                    f'micalg={options.digest.micalg}; boundary="{boundary}"',
                ),
            ]
        )
        + b"\r\n"
        + f"--{boundary}\r\n".encode()
        + wrapped
        + f"\r\n--{boundary}\r\n".encode()
        + format_headers(
            [
                ("Content-Type", "application/pkcs7-signature; name=smime.p7s"),
                ("Content-Transfer-Encoding", "base64"),
                ("Content-Disposition", "attachment; filename=smime.p7s"),
            ]
        )
        + b"\r\n"
        + base64_lines(signature)
        + f"--{boundary}--\r\n".encode()
    )
    try:
        enveloped = cms.encrypt(signed, recipient_certs, options.cipher, options.key_transport)
    except cms.CmsError as exc:
        return Rejected(exc.reason, exc.detail, exc.certificate)

    smime_type = "authEnveloped-data" if options.cipher.authenticated else "enveloped-data"
    outer = [(k, original.get(k)) for k in _OUTER_COPIED if original.get(k) is not None]
    outer = [(k, v) for k, v in outer if v is not None]
    if original.get("Date") is None:
        outer.append(("Date", format_datetime(at)))
    outer.append(("Message-ID", message_id))
    if options.expose_subject and original.get("Subject") is not None:
        outer.append(("Subject", original.get("Subject") or ""))
    outer += [
        ("MIME-Version", "1.0"),
        ("Content-Type", f"application/pkcs7-mime; smime-type={smime_type}; name=smime.p7m"),
        ("Content-Transfer-Encoding", "base64"),
        ("Content-Disposition", "attachment; filename=smime.p7m"),
    ]
    ascii_outer = [(k, _ascii(v, k)) for k, v in outer if v is not None]  # ETT DTS 196
    sealed = format_headers(ascii_outer) + b"\r\n" + base64_lines(enveloped)
    return Sealed(
        message=sealed,
        message_id=message_id,
        cipher=options.cipher,
        key_transport=options.key_transport,
        digest=options.digest,
        recipients=tuple(recipient_certs),
    )


def _ascii(value: str, name: str = "") -> str:
    """Outer headers are ASCII (specs/direct.md item 7): other text as RFC 2047 encoded words.

    In address fields only display names are encoded: an encoded word is never
    an address (RFC 2047 section 5), and the receiver reads none from it."""
    if value.isascii():
        return value
    if name.lower() in ("from", "to", "cc"):
        mailboxes = parse_address_list(value)
        if mailboxes:
            return ", ".join(formataddr((m.display_name or "", m.address), "utf-8") for m in mailboxes)
    return Header(value, "utf-8").encode()


def _sender_domain(sender: KeyPair, from_header: str) -> str:
    if "@" in from_header:
        return from_header.rsplit("@", 1)[1].strip(" >").lower()
    names = sender.cert.dns_names or tuple(a.split("@", 1)[1] for a in sender.cert.email_addresses)
    return names[0] if names else "directgw.invalid"
