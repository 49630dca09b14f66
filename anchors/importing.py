"""Reading trust anchors from the files administrators actually have.

Accepted: PEM (one or many CERTIFICATE blocks), one DER certificate, a
certs-only PKCS#7 ``.p7b`` (DER or PEM ``PKCS7``), and a signed ``.p7m``
bundle: CMS SignedData whose encapsulated content is itself such a file
(Direct item 15). A signed bundle's signature is always checked; when a
signer is configured the signer must be exactly that certificate.

A file with no certificate in it is refused with a ``AnchorFileError`` that
says what the file IS (a private key, a CRL, a PKCS#12 store, a CSR, an HTML
page...), because the reference implementation's users uploaded the wrong
file and saw it "work" with no anchors. A certificate that is not a CA is
accepted with a warning: Direct allows pinning an end-entity certificate.
"""

from __future__ import annotations

import enum
import warnings
from dataclasses import dataclass
from datetime import datetime

from asn1crypto import cms as asn1_cms
from asn1crypto import keys as asn1_keys
from asn1crypto import parser as asn1_parser
from asn1crypto import pkcs12 as asn1_pkcs12
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import load_der_private_key
from cryptography.utils import CryptographyDeprecationWarning

from gateway.core.certs import (
    CERTIFICATE_ERRORS,
    CertRef,
    KeyMaterialError,
    pem_blocks,
)
from gateway.core.cms import CmsError, verify
from gateway.core.der import DerError
from gateway.core.limits import DEFAULT_LIMITS
from gateway.core.outcomes import RejectReason

MAX_ANCHOR_FILE_BYTES = 5 * 1024 * 1024
"""Far above any trust bundle in use (the largest community bundles hold a few
hundred certificates, under 1 MiB); bounds parsing of a wrong upload."""


class FileKind(enum.Enum):
    """What a file that is not a certificate turned out to be."""

    EMPTY = "an empty file"
    PRIVATE_KEY = "a private key"
    PUBLIC_KEY = "a bare public key"
    CRL = "a certificate revocation list (CRL)"
    PKCS12 = "a PKCS#12 key store (.p12/.pfx)"
    CSR = "a certificate signing request (CSR)"
    HTML = "an HTML page"
    TEXT = "plain text"
    EMPTY_BUNDLE = "a PKCS#7 bundle with no certificates"
    OTHER_CMS = "a CMS message that is not a certificate bundle"
    TOO_LARGE = "larger than any trust bundle"
    UNKNOWN = "unrecognised binary data"


class AnchorProblem(enum.Enum):
    NOT_CERTIFICATES = "not-certificates"
    MALFORMED = "malformed"
    INVALID_SIGNATURE = "invalid-signature"
    WRONG_SIGNER = "wrong-signer"
    UNSIGNED = "unsigned"


class AnchorFileError(Exception):
    """A file refused as a source of anchors: which file, what went wrong, and
    (for NOT_CERTIFICATES) what the file is instead."""

    def __init__(self, source: str, problem: AnchorProblem, detail: str, kind: FileKind | None = None) -> None:
        self.source = source
        self.problem = problem
        self.kind = kind
        self.detail = detail
        super().__init__(f"{source}: {detail}")


class Format(enum.Enum):
    PEM = "pem"
    DER = "der"
    P7B = "p7b"
    P7M = "p7m"


@dataclass(frozen=True, slots=True)
class Imported:
    source: str
    format: Format
    certificates: tuple[CertRef, ...]
    warnings: tuple[str, ...] = ()
    signer: CertRef | None = None
    """Who signed a .p7m bundle (checked against the configured signer, if any)."""


_KEY_LABELS = ("PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "ENCRYPTED PRIVATE KEY", "DSA PRIVATE KEY")
_PEM_KINDS = {
    **dict.fromkeys(_KEY_LABELS, FileKind.PRIVATE_KEY),
    "X509 CRL": FileKind.CRL,
    "CERTIFICATE REQUEST": FileKind.CSR,
    "NEW CERTIFICATE REQUEST": FileKind.CSR,
    "PUBLIC KEY": FileKind.PUBLIC_KEY,
    "RSA PUBLIC KEY": FileKind.PUBLIC_KEY,
}
_PKCS7_LABELS = ("PKCS7", "CMS", "PKCS #7 SIGNED DATA")
_CERT_LABELS = ("CERTIFICATE", "X509 CERTIFICATE")
_TRUSTED_LABEL = "TRUSTED CERTIFICATE"

# What cryptography raises for a certificate it cannot read; several are not ValueErrors.
_UNPARSABLE: tuple[type[Exception], ...] = (
    *CERTIFICATE_ERRORS, UnsupportedAlgorithm, x509.DuplicateExtension, x509.UnsupportedGeneralNameType,
)


def read_anchor_file(
    data: bytes, source: str, *, at: datetime, signer: CertRef | None = None
) -> Imported:
    """The certificates in one anchor file, or an ``AnchorFileError``."""
    if len(data) > MAX_ANCHOR_FILE_BYTES:
        raise _not_certs(source, FileKind.TOO_LARGE, f"{len(data)} bytes")
    # cryptography warns (rather than fails) on some certificates RFC 5280
    # forbids, such as a serial number that is not positive, and says a later
    # release will refuse them: an anchor is kept for years, so refuse now.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CryptographyDeprecationWarning)
        try:
            imported = _checked(data, source, signer)
        except _UNPARSABLE as exc:
            # from parsers below that expect ValueError only (the core's load_certificates)
            raise AnchorFileError(source, AnchorProblem.MALFORMED, f"a certificate that does not parse: {exc}") from exc
    for w in caught:
        if issubclass(w.category, CryptographyDeprecationWarning):
            raise AnchorFileError(source, AnchorProblem.MALFORMED, f"a certificate RFC 5280 forbids: {w.message}")
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return _with_warnings(imported, at)


def _checked(data: bytes, source: str, signer: CertRef | None) -> Imported:
    imported = _read(data, source, signer, nested=False)
    if signer is not None and imported.format is not Format.P7M:
        raise AnchorFileError(
            source, AnchorProblem.UNSIGNED,
            f"a bundle signer is configured ({signer.subject}) but this {imported.format.value} file is not signed",
        )
    for n, cert in enumerate(imported.certificates, 1):
        _check_parses(cert, source, n)
    if imported.signer is not None:
        _check_parses(imported.signer, source, 0)
    return imported


def _check_parses(cert: CertRef, source: str, n: int) -> None:
    """Parse every part later code reads, now: cryptography parses extensions
    and keys lazily, and a damaged one must fail here, typed, not in the
    trust engine."""
    try:
        x = cert.x509
        x.extensions  # noqa: B018
        x.public_key()
        cert.subject  # noqa: B018
        cert.issuer  # noqa: B018
        x.not_valid_before_utc  # noqa: B018
        x.not_valid_after_utc  # noqa: B018
    except _UNPARSABLE as exc:
        which = "the signer's certificate" if n == 0 else f"certificate {n}"
        raise AnchorFileError(source, AnchorProblem.MALFORMED, f"{which} does not parse: {exc}") from exc


def _read(data: bytes, source: str, signer: CertRef | None, *, nested: bool) -> Imported:
    stripped = data.strip()
    if not stripped:
        raise _not_certs(source, FileKind.EMPTY, "")
    if b"-----BEGIN " in data:
        return _read_pem(data, source, signer, nested=nested)
    if stripped[:1] == b"\x30":
        return _read_der(data, source, signer, nested=nested)
    return _refuse_text(stripped, source)


def _read_pem(data: bytes, source: str, signer: CertRef | None, *, nested: bool) -> Imported:
    try:
        blocks = pem_blocks(data)
    except KeyMaterialError as exc:
        raise AnchorFileError(source, AnchorProblem.MALFORMED, str(exc)) from exc
    labels = [label for label, _ in blocks]
    if any(label in _CERT_LABELS or label == _TRUSTED_LABEL for label in labels):
        certs: list[CertRef] = []
        notes: list[str] = []
        for label, der in blocks:
            if label in _CERT_LABELS:
                certs.append(CertRef(der))
            elif label == _TRUSTED_LABEL:
                certs.append(_trusted_certificate(der, source))
                notes.append("an OpenSSL TRUSTED CERTIFICATE: its trust settings are ignored, the anchor's direction rules")
        if any(label in _KEY_LABELS for label in labels):
            notes.append("this file also holds a private key: anchors never need one; keep keys out of shared files")
        return Imported(source, Format.PEM, tuple(certs), tuple(dict.fromkeys(notes)))
    for label, der in blocks:
        if label in _PKCS7_LABELS:
            return _read_der(der, source, signer, nested=nested)
    for label in labels:
        if label in _PEM_KINDS:
            raise _not_certs(source, _PEM_KINDS[label], f"PEM {label}")
    if not blocks:
        raise AnchorFileError(source, AnchorProblem.MALFORMED, "a PEM header without a complete block")
    raise _not_certs(source, FileKind.UNKNOWN, f"PEM blocks labelled {', '.join(sorted(set(labels)))}")


def _trusted_certificate(der: bytes, source: str) -> CertRef:
    """The certificate of OpenSSL's ``TRUSTED CERTIFICATE`` (``x509 -trustout``):
    a DER Certificate followed by X509_CERT_AUX, SEQUENCE { trust SEQUENCE OF
    OID OPTIONAL, reject [0] SEQUENCE OF OID OPTIONAL, ... }. Its reject list
    says "do not trust for these uses", so such a file is refused rather than
    trusted for everything."""
    try:
        _, _, _, header, contents, _ = asn1_parser.parse(der)
        cert = header + contents
        aux = der[len(cert) :]
        rejects = False
        if aux:
            _, _, _, _, body, _ = asn1_parser.parse(aux)
            while body:
                cls, _, tag, h, c, t = asn1_parser.parse(body)
                rejects = rejects or (cls == 2 and tag == 0)
                body = body[len(h) + len(c) + len(t) :]
    except (ValueError, TypeError) as exc:
        raise AnchorFileError(source, AnchorProblem.MALFORMED, f"a TRUSTED CERTIFICATE block that does not parse: {exc}") from exc
    if rejects:
        raise AnchorFileError(
            source, AnchorProblem.MALFORMED,
            "an OpenSSL TRUSTED CERTIFICATE whose trust settings reject some uses; if it is to be an anchor, "
            "convert it with `openssl x509 -in FILE -out CERT.pem` and add that",
        )
    return CertRef(cert)


def _read_der(data: bytes, source: str, signer: CertRef | None, *, nested: bool) -> Imported:
    try:
        x509.load_der_x509_certificate(data)
    except ValueError:
        pass
    else:
        return Imported(source, Format.DER, (CertRef(data),))
    signed = _signed_data(data)
    if signed is not None:
        return _read_pkcs7(data, signed, source, signer, nested=nested)
    raise _not_certs(source, _der_kind(data), "")


def _signed_data(data: bytes) -> asn1_cms.SignedData | None:
    try:
        info = asn1_cms.ContentInfo.load(data, strict=True)
        if info["content_type"].native != "signed_data":
            return None
        signed = info["content"]
        signed["signer_infos"].native  # noqa: B018 -- parse now
        return signed
    except (ValueError, TypeError, KeyError):
        return None


def _read_pkcs7(
    data: bytes, signed: asn1_cms.SignedData, source: str, signer: CertRef | None, *, nested: bool
) -> Imported:
    if len(signed["signer_infos"]) == 0:
        return Imported(source, Format.P7B, _bundled_certificates(signed, source))
    if nested:
        raise AnchorFileError(source, AnchorProblem.MALFORMED, "a signed bundle inside a signed bundle")
    try:
        try:
            verified = verify(data, None, DEFAULT_LIMITS)
        except CmsError as exc:
            if exc.reason is not RejectReason.SIGNER_NOT_FOUND:
                raise
            if signer is None:
                raise AnchorFileError(
                    source, AnchorProblem.INVALID_SIGNATURE,
                    "the signed bundle does not carry its signer's certificate: give it as the bundle signer",
                ) from exc
            # signed without embedding the signer's certificate (openssl cms
            # -nocerts): the configured signer is the certificate to verify with
            try:
                verified = verify(_with_certificate(data, signer), None, DEFAULT_LIMITS)
            except CmsError as again:
                if again.reason is not RejectReason.SIGNER_NOT_FOUND:
                    raise
                raise AnchorFileError(
                    source, AnchorProblem.WRONG_SIGNER,
                    f"the bundle does not carry its signer's certificate and was not signed by the configured "
                    f"signer {signer.subject} (sha256 {signer.sha256[:16]})",
                ) from again
    except (CmsError, DerError) as exc:
        raise AnchorFileError(
            source, AnchorProblem.INVALID_SIGNATURE, f"the signed bundle's signature does not verify: {exc}"
        ) from exc
    if signer is not None and verified.signer != signer:
        raise AnchorFileError(
            source, AnchorProblem.WRONG_SIGNER,
            f"the bundle is signed by {verified.signer.subject} (sha256 {verified.signer.sha256[:16]}), "
            f"not by the configured signer {signer.subject} (sha256 {signer.sha256[:16]})",
        )
    inner = _read(bytes(verified.content), source, None, nested=True)
    warnings = inner.warnings
    if signer is None:
        warnings += (f"signed by {verified.signer.subject}, but no bundle signer is configured to check it against",)
    return Imported(source, Format.P7M, inner.certificates, warnings, verified.signer)


def _with_certificate(data: bytes, cert: CertRef) -> bytes:
    """The SignedData with ``cert`` as its only carried certificate. Only the
    certificates field is re-encoded: asn1crypto writes the unchanged parts
    (encapsulated content, signer info with its signed attributes) back as the
    bytes it read, so the signature still covers what it covered."""
    try:
        info = asn1_cms.ContentInfo.load(data)
        info["content"]["certificates"] = [asn1_x509.Certificate.load(cert.der)]
        return bytes(info.dump(force=False))
    except (ValueError, TypeError, KeyError) as exc:
        raise DerError(f"cannot add the configured signer to the signed bundle: {exc}") from exc


def _bundled_certificates(signed: asn1_cms.SignedData, source: str) -> tuple[CertRef, ...]:
    """The certificates of a certs-only SignedData, each as its exact bytes.

    Read with asn1crypto rather than cryptography's PKCS#7 loader: Java tools
    write the envelope with indefinite (BER) lengths, which that loader only
    accepts with a warning, while the certificates inside are DER as always.
    """
    certs = []
    try:
        for choice in signed["certificates"] or ():
            if choice.name == "certificate":
                certs.append(CertRef(choice.chosen.dump()))
    except (ValueError, TypeError, KeyError) as exc:
        raise AnchorFileError(source, AnchorProblem.MALFORMED, f"a PKCS#7 bundle that does not parse: {exc}") from exc
    if not certs:
        raise _not_certs(source, FileKind.EMPTY_BUNDLE, "")
    return tuple(certs)


def _der_kind(data: bytes) -> FileKind:
    """What a DER structure that is not a certificate is."""
    try:
        x509.load_der_x509_crl(data)
        return FileKind.CRL
    except ValueError:
        pass
    try:
        x509.load_der_x509_csr(data)
        return FileKind.CSR
    except ValueError:
        pass
    try:
        load_der_private_key(data, None)
        return FileKind.PRIVATE_KEY
    except (TypeError, UnsupportedAlgorithm):
        return FileKind.PRIVATE_KEY  # needs a password, or a key type we do not use: still a key
    except ValueError:
        pass
    for spec, kind in (
        (asn1_keys.EncryptedPrivateKeyInfo, FileKind.PRIVATE_KEY),
        (asn1_pkcs12.Pfx, FileKind.PKCS12),
        (asn1_keys.PublicKeyInfo, FileKind.PUBLIC_KEY),
    ):
        try:
            spec.load(data, strict=True).native  # noqa: B018
            return kind
        except (ValueError, TypeError, KeyError):
            continue
    try:
        if asn1_cms.ContentInfo.load(data, strict=True)["content_type"].native:
            return FileKind.OTHER_CMS
    except (ValueError, TypeError, KeyError):
        pass
    return FileKind.UNKNOWN


def _refuse_text(data: bytes, source: str) -> Imported:
    head = data[:512].lower()
    if head.startswith((b"<!doctype html", b"<html")) or b"<html" in head or b"<body" in head:
        raise _not_certs(source, FileKind.HTML, "perhaps a login or error page saved instead of the file")
    try:
        text = data[:4096].decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if text and all(c.isprintable() or c in "\r\n\t" for c in text):
        raise _not_certs(source, FileKind.TEXT, "")
    raise _not_certs(source, FileKind.UNKNOWN, "")


def _not_certs(source: str, kind: FileKind, hint: str) -> AnchorFileError:
    detail = f"this is {kind.value}, not a certificate"
    if hint:
        detail += f" ({hint})"
    if kind is FileKind.PRIVATE_KEY:
        detail += "; an anchor is the CA's certificate, and private keys belong to `domains add`"
    return AnchorFileError(source, AnchorProblem.NOT_CERTIFICATES, detail, kind)


def _with_warnings(imported: Imported, at: datetime) -> Imported:
    warnings = list(imported.warnings)
    for cert in imported.certificates:
        try:
            bc = cert.x509.extensions.get_extension_for_class(x509.BasicConstraints).value
            is_ca = bc.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if not is_ca:
            warnings.append(
                f"{cert.subject} is not a CA certificate: only that certificate itself will be trusted (pinned)"
            )
        if not cert.valid_at(at):
            warnings.append(f"{cert.subject} is not valid now (valid {cert.not_before:%Y-%m-%d} to {cert.not_after:%Y-%m-%d})")
    signer = imported.signer
    if signer is not None and not signer.valid_at(at):
        warnings.append(f"the bundle signer {signer.subject} is not valid now (until {signer.not_after:%Y-%m-%d})")
    return Imported(imported.source, imported.format, imported.certificates, tuple(warnings), imported.signer)
