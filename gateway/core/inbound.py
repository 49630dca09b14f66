"""``open_inbound``: one received Direct message in, ``Opened`` or ``Rejected`` out.

The walk peels layers from the outside in: enveloped-data (decrypt with one of
our keys), then a signature (multipart/signed or opaque signed-data, checked
over the exact signed bytes), then the Direct wrapper (message/rfc822) whose
headers are the real ones (Direct Applicability Statement section 3.3, and
specs/direct.md items 1-7). What is found on the way that policy may refuse
(SHA-1, 3DES, a short key, an expired signer, headers that disagree) is
reported as findings; deciding is for the trust layer and the edge.
"""

from __future__ import annotations

import binascii
import hashlib
from collections.abc import Sequence
from datetime import datetime

from . import b64, cms
from .certs import KeyPair, utc
from .limits import DEFAULT_LIMITS, Limits
from .mime import (
    Buffer,
    Entity,
    MimeError,
    addresses,
    canonical,
    decode_words,
    own_lines,
    parse_entity,
    split_multipart,
)
from .outcomes import (
    Encryption,
    Envelope,
    Finding,
    Headers,
    MessageKind,
    Observation,
    Opened,
    Part,
    PartKind,
    Rejected,
    RejectReason,
    Signature,
    SignatureForm,
    SignatureReport,
    decryption_failed,
)
from .sender import MESSAGE_TYPES, bound_sender, message_of

PKCS7_MIME = ("application/pkcs7-mime", "application/x-pkcs7-mime")
PKCS7_SIGNATURE = ("application/pkcs7-signature", "application/x-pkcs7-signature")
MIN_RSA_BITS = 2048  # specs/direct.md item 14


def open_inbound(
    raw: Buffer,
    our_keys: Sequence[KeyPair],
    limits: Limits = DEFAULT_LIMITS,
    at: datetime | None = None,
    *,
    envelope: Envelope | None = None,
    require_encryption: bool = True,
) -> Opened | Rejected:
    """Decrypt and verify one message. Never raises on bad input: every failure is a ``Rejected``.

    ``at`` is the moment the message is judged (for the signer-validity
    findings); ``envelope`` is the SMTP MAIL FROM/RCPT TO to compare with the
    inner headers; without it the outer headers are compared.
    """
    if at is None:
        raise ValueError("open_inbound needs the time `at`; only the composition root reads the clock")
    at = utc(at)
    if len(raw) > limits.max_message_bytes:
        return Rejected(
            RejectReason.TOO_LARGE,
            f"the message is {len(raw)} bytes, over the limit of {limits.max_message_bytes}",
        )
    try:
        return _open(canonical(raw), our_keys, limits, at, envelope, require_encryption)
    except cms.CmsError as exc:
        return Rejected(exc.reason, exc.detail, exc.certificate)
    except MimeError as exc:
        reason = (
            RejectReason.TOO_DEEP
            if exc.too_deep
            else RejectReason.TOO_LARGE
            if exc.too_large
            else RejectReason.MALFORMED
        )
        return Rejected(reason, str(exc))
    except RecursionError:
        return Rejected(RejectReason.TOO_DEEP, "the message nests too deeply to read")


def _open(
    raw: Buffer,
    keys: Sequence[KeyPair],
    limits: Limits,
    at: datetime,
    envelope: Envelope | None,
    require_encryption: bool,
) -> Opened | Rejected:
    outer = parse_entity(raw, limits)
    encryption: Encryption | None = None
    if outer.content_type in PKCS7_MIME:
        blob = _cms_bytes(outer)
        content_type, ber = cms.content_type(blob)
        if content_type in cms.ENVELOPED:
            decrypted = cms.decrypt(blob, keys, limits)
            del blob  # hold one copy of a large message at a time
            encryption = Encryption(
                decrypted.cipher, decrypted.key_transport, decrypted.recipient, decrypted.recipient_count, ber
            )
            layer = _decrypted_layer(decrypted, limits)
        elif require_encryption:
            return _not_encrypted()
        else:
            layer = _signature_layer(outer, limits)
    elif require_encryption:
        return _not_encrypted()
    else:
        layer = _signature_layer(outer, limits)
    if isinstance(layer, Rejected):
        return layer
    form, signed, signed_view, verified = layer
    signature = Signature(
        form, verified.digest, verified.scheme, verified.signer, verified.certificates, verified.signing_time
    )
    nested = _nested_layer(signed, "signed content")
    wrapped = signed.content_type in MESSAGE_TYPES
    message = message_of(signed, limits) if wrapped else signed
    nested = nested or (_nested_layer(message, "wrapped message") if wrapped else None)
    if nested is not None:
        return nested
    sender = bound_sender(message if wrapped else outer, signed, limits, wrapped=message if wrapped else None)
    if isinstance(sender, Rejected):
        return sender
    outer_headers = entity_headers(outer)
    inner_headers = entity_headers(message) if wrapped else outer_headers

    parts: list[Part] = []
    _collect_parts(message, limits, 2 if encryption else 1, parts)
    findings = _findings(encryption, signature, wrapped, outer_headers, inner_headers, envelope, at)
    return Opened(
        outer=outer_headers,
        inner=inner_headers,
        wrapped=wrapped,
        kind=_kind(message),
        encryption=encryption,
        signature=signature,
        sender=sender,
        content=bytes(signed_view),
        parts=tuple(parts),
        findings=findings,
    )


_Layer = tuple[SignatureForm, Entity, memoryview, cms.Verified]


def _decrypted_layer(decrypted: cms.Decrypted, limits: Limits) -> _Layer | Rejected:
    """The signature layer inside decrypted content, or the one opaque decryption failure.

    RFC 3218 section 2.3: CBC content is not authenticated, so an attacker
    holding one of our ciphertexts can change it block by block; if what
    follows decryption failed in ways that depend on the plaintext (not MIME,
    not signed, a CMS that does not parse, a digest that does not match, a
    limit), each answer would tell them something about it, and a few
    thousand tries recover the plaintext. So until a signature has verified,
    every failure is the same ``DECRYPTION_FAILED`` as a bad padding, with the
    same detail and certificate. AES-GCM content has had its tag verified
    (RFC 5084 section 1.1): it is exactly what its encryptor wrote, so
    changing it gets only the tag failure, and its specific reasons help the
    sender without telling an attacker anything.
    """
    if decrypted.cipher.authenticated:
        return _signature_layer(parse_entity(own_lines(decrypted.content), limits), limits, decrypted=True)
    try:
        layer = _signature_layer(parse_entity(own_lines(decrypted.content), limits), limits, decrypted=True)
    except (cms.CmsError, MimeError, RecursionError):
        return decryption_failed(decrypted.recipient)
    if isinstance(layer, Rejected):
        return decryption_failed(decrypted.recipient)
    return layer


def _signature_layer(entity: Entity, limits: Limits, *, decrypted: bool = False) -> _Layer | Rejected:
    """Verify the one signature layer ``entity`` is: opaque signed-data or multipart/signed."""
    ctype = entity.content_type
    if ctype in PKCS7_MIME:
        blob = _cms_bytes(entity)
        content_type, _ber = cms.content_type(blob)
        if content_type in cms.ENVELOPED:
            return Rejected(
                RejectReason.NESTED_LAYER,
                "an enveloped-data layer inside the decrypted content: Direct encrypts once"
                if decrypted
                else "the signed content is itself encrypted; Direct signs, then encrypts",
            )
        if content_type != "signed_data":
            raise cms.CmsError(
                RejectReason.UNSUPPORTED_ALGORITHM,
                f"application/pkcs7-mime holding {content_type} is not a Direct message layer",
            )
        verified = cms.verify(blob, None, limits)
        opaque = own_lines(bytes(verified.content))
        return SignatureForm.OPAQUE, parse_entity(opaque, limits), memoryview(opaque), verified
    if ctype == "multipart/signed":
        signed, verified = _detached(entity, limits)
        return SignatureForm.DETACHED, signed, memoryview(signed.buf)[signed_region(signed)], verified
    return Rejected(
        RejectReason.NOT_SIGNED,
        f"the {'decrypted ' if decrypted else ''}content is {ctype}, not a signed S/MIME entity "
        "(Direct requires sign-then-encrypt)",
    )


def _nested_layer(entity: Entity, what: str) -> Rejected | None:
    """A second S/MIME layer under the verified signature: refused, so that no inner
    layer escapes the policy the outer ones were held to (issue 7 section 2)."""
    ctype = entity.content_type
    if ctype in PKCS7_MIME or ctype == "multipart/signed":
        return Rejected(
            RejectReason.NESTED_LAYER,
            f"the {what} is another S/MIME layer ({ctype}); Direct has one signature and one envelope",
        )
    return None


def signed_region(entity: Entity) -> slice:
    """The whole entity (headers and body) a detached signature covers."""
    return slice(entity.header_start, entity.end)


def _not_encrypted() -> Rejected:
    return Rejected(
        RejectReason.NOT_ENCRYPTED,
        "the message is not S/MIME enveloped-data; Direct requires every message to be encrypted",
    )


def _cms_bytes(entity: Entity) -> Buffer:
    if entity.transfer_encoding in ("7bit", "8bit", "binary") and entity.buf[entity.start : entity.start + 1] == b"\x30":
        return entity.body
    return entity.decoded_body()


def _detached(entity: Entity, limits: Limits) -> tuple[Entity, cms.Verified]:
    boundary = entity.param("boundary")
    if boundary is None:
        raise MimeError("multipart/signed without a boundary parameter")
    parts = split_multipart(entity, boundary, limits)
    if len(parts) != 2:
        raise MimeError(f"multipart/signed must have 2 parts (RFC 1847), this one has {len(parts)}")
    (s_start, s_end), (g_start, g_end) = parts
    sig_entity = parse_entity(entity.buf, limits, g_start, g_end)
    if sig_entity.content_type not in PKCS7_SIGNATURE:
        raise cms.CmsError(
            RejectReason.UNSUPPORTED_ALGORITHM,
            f"the signature part is {sig_entity.content_type}, not application/pkcs7-signature",
        )
    blob = _cms_bytes(sig_entity)
    content_type, _ber = cms.content_type(blob)
    if content_type != "signed_data":
        raise cms.CmsError(RejectReason.MALFORMED, f"the signature part holds {content_type}, not signed-data")
    signed = parse_entity(entity.buf, limits, s_start, s_end)
    return signed, cms.verify(blob, memoryview(entity.buf)[s_start:s_end], limits)


def entity_headers(entity: Entity) -> Headers:
    subject = entity.get("Subject")
    return Headers(
        from_=addresses(entity.get_all("From")),
        to=addresses(entity.get_all("To")),
        cc=addresses(entity.get_all("Cc")),
        subject=decode_words(subject) if subject is not None else None,
        message_id=entity.get("Message-ID"),
        date=entity.get("Date"),
        disposition_notification_to=addresses(entity.get_all("Disposition-Notification-To")),
        disposition_notification_options=entity.get("Disposition-Notification-Options"),
    )


def _kind(message: Entity) -> MessageKind:
    if message.content_type == "multipart/report":
        report = (message.param("report-type") or "").lower()
        if report == "disposition-notification":
            return MessageKind.MDN
        if report == "delivery-status":
            return MessageKind.DSN
    if message.content_type == "message/disposition-notification":
        return MessageKind.MDN
    return MessageKind.MESSAGE


def _collect_parts(entity: Entity, limits: Limits, depth: int, out: list[Part]) -> None:
    if depth > limits.max_mime_depth:
        raise MimeError(f"MIME structure deeper than {limits.max_mime_depth} levels", too_deep=True)
    ctype = entity.content_type
    if ctype.startswith("multipart/"):
        for part in entity.parts(limits):  # parsed already by the sender check (sender._other_from)
            _collect_parts(part, limits, depth + 1, out)
            if len(out) > limits.max_mime_parts:
                raise MimeError(f"more than {limits.max_mime_parts} parts", too_large=True)
        return
    data = bytes(entity.decoded_body())
    filename = entity.filename
    out.append(
        Part(
            content_type=ctype,
            filename=filename,
            kind=_part_kind(ctype, filename, data),
            attachment=entity.is_attachment or (filename is not None and not ctype.startswith("text/plain")),
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            data=data,
        )
    )


def _part_kind(ctype: str, filename: str | None, data: bytes) -> PartKind:
    name = (filename or "").lower()
    if ctype in ("text/xml", "application/xml", "application/hl7-v3+xml") or name.endswith(".xml"):
        head = data[:4096]
        if b"ClinicalDocument" in head and b"urn:hl7-org:v3" in head:
            return PartKind.CCDA
        return PartKind.OTHER if not ctype.startswith("text/") else PartKind.TEXT
    if ctype == "application/pdf" or name.endswith(".pdf"):
        return PartKind.PDF
    if ctype in ("application/zip", "application/x-zip-compressed") or name.endswith(".zip"):
        # An XDM package (IHE ITI TF-1 16) is a zip with an IHE_XDM/ folder.
        return PartKind.XDM if b"IHE_XDM/" in data or b"METADATA.XML" in data else PartKind.OTHER
    if ctype.startswith("text/"):
        return PartKind.TEXT
    return PartKind.OTHER


def _findings(
    encryption: Encryption | None,
    signature: Signature,
    wrapped: bool,
    outer: Headers,
    inner: Headers,
    envelope: Envelope | None,
    at: datetime,
) -> tuple[Finding, ...]:
    found: list[Finding] = []
    if encryption is None:
        found.append(Finding(Observation.NOT_ENCRYPTED, "the message was signed but not encrypted"))
    elif encryption.cipher.weak:
        found.append(
            Finding(Observation.WEAK_CIPHER, f"content encrypted with {encryption.cipher.value} (3DES)")
        )
    found.extend(_signer_findings(signature, at))
    if not wrapped:
        found.append(Finding(Observation.NOT_WRAPPED, "the signed content is not a wrapped message/rfc822"))
    found.extend(_mismatches(outer, inner, envelope, wrapped))
    return tuple(found)


def _signer_findings(signature: Signature, at: datetime) -> list[Finding]:
    found = []
    signer = signature.signer
    if signature.digest.weak:
        found.append(Finding(Observation.SHA1_DIGEST, "the signature uses SHA-1 (Direct requires SHA-256)"))
    if signer.key_algorithm == "rsa" and signer.key_bits < MIN_RSA_BITS:
        found.append(
            Finding(
                Observation.SHORT_RSA_KEY,
                f"the signer's RSA key is {signer.key_bits} bits (at least {MIN_RSA_BITS} required)",
            )
        )
    if at > signer.not_after:
        found.append(
            Finding(Observation.SIGNER_EXPIRED, f"the signer's certificate expired on {signer.not_after:%Y-%m-%d}")
        )
    if at < signer.not_before:
        found.append(
            Finding(
                Observation.SIGNER_NOT_YET_VALID,
                f"the signer's certificate is valid only from {signer.not_before:%Y-%m-%d}",
            )
        )
    return found


def _mismatches(outer: Headers, inner: Headers, envelope: Envelope | None, wrapped: bool) -> list[Finding]:
    """The reference implementation compares MAIL FROM/RCPT TO with the inner headers (tamper policy)."""
    out = []
    if envelope is not None:
        sender = envelope.mail_from.lower()
        recipients = {r.lower() for r in envelope.rcpt_to}
        if sender and inner.from_ and sender not in inner.from_:
            out.append(
                Finding(Observation.HEADER_MISMATCH, f"MAIL FROM {sender} is not the inner From {inner.from_[0]}")
            )
        named = set(inner.to) | set(inner.cc)
        stray = sorted(recipients - named)
        if stray and named:
            out.append(
                Finding(Observation.HEADER_MISMATCH, f"RCPT TO {', '.join(stray)} not named in the inner To/Cc")
            )
    elif wrapped:
        if outer.from_ and inner.from_ and outer.from_ != inner.from_:
            out.append(
                Finding(
                    Observation.HEADER_MISMATCH,
                    f"outer From {', '.join(outer.from_)} differs from inner From {', '.join(inner.from_)}",
                )
            )
        if outer.to and inner.to and not set(outer.to) <= set(inner.to) | set(inner.cc):
            out.append(
                Finding(
                    Observation.HEADER_MISMATCH,
                    f"outer To {', '.join(outer.to)} differs from inner To {', '.join(inner.to)}",
                )
            )
    return out


def inspect_signature(
    data: bytes, at: datetime, limits: Limits = DEFAULT_LIMITS
) -> SignatureReport | Rejected:
    """Read a bare CMS SignedData (DER, PEM or base64), as administrators meet them in logs.

    The signer is found and its signature over the signed attributes checked;
    the findings say what policy would refuse (SHA-1, short key, expiry).
    """
    at = utc(at)
    try:
        der = _bare_cms(data)
        content_type, _ber = cms.content_type(der)
        if content_type != "signed_data":
            return Rejected(RejectReason.NOT_SIGNED, f"the CMS content is {content_type}, not signed-data")
        # Encapsulated content is checked against its messageDigest: the sender is read from it.
        verified = cms.verify(der, None, limits, content_known=False)
    except cms.CmsError as exc:
        return Rejected(exc.reason, exc.detail, exc.certificate)
    form = SignatureForm.OPAQUE if verified.content else SignatureForm.DETACHED
    signature = Signature(
        form, verified.digest, verified.scheme, verified.signer, verified.certificates, verified.signing_time
    )
    findings = tuple(_signer_findings(signature, at))
    sender, problem = _content_sender(verified.content, limits)
    return SignatureReport(signature, bool(verified.content), findings, sender, problem)


def _content_sender(content: Buffer | memoryview, limits: Limits) -> tuple[str | None, str | None]:
    """The sender a bare signature binds, by the rules of ``open_inbound``: the From of
    the wrapped message, or else of the signed content itself (there is no outer message)."""
    if not content:
        return None, "the signature is detached: the content that names the sender is not part of it"
    try:
        signed = parse_entity(own_lines(bytes(content)), limits)
        wrapped = signed.content_type in MESSAGE_TYPES
        message = message_of(signed, limits) if wrapped else signed
        nested = _nested_layer(signed, "signed content") or _nested_layer(message, "wrapped message")
        found = nested or bound_sender(message, signed, limits)
    except MimeError as exc:
        return None, f"the signed content cannot be read: {exc}"
    except RecursionError:
        return None, "the signed content nests too deeply to read"
    if isinstance(found, Rejected):
        return None, f"{found.reason.value}: {found.detail}"
    return found, None


def _bare_cms(data: bytes) -> bytes:
    stripped = data.strip()
    if stripped[:1] == b"\x30":
        return data
    if stripped.startswith(b"-----BEGIN"):
        stripped = b"".join(line for line in stripped.splitlines() if not line.startswith(b"-----"))
    try:
        return b64.decode(stripped)
    except binascii.Error as exc:
        raise cms.CmsError(RejectReason.MALFORMED, "neither DER, PEM nor base64 CMS") from exc
