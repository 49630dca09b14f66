"""Certificates and private keys as the core holds them.

A certificate is kept as the exact DER bytes it arrived in (asn1crypto can
re-encode some lengths on a second serialisation, its issue #249, which would
break signatures over it) with a parsed view made once, on demand.
"""

from __future__ import annotations

import base64
import hashlib
import re
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property, lru_cache

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.hazmat.primitives.serialization import load_der_private_key, load_pem_private_key
from cryptography.hazmat.primitives.serialization.pkcs12 import load_key_and_certificates
from cryptography.x509 import KeyUsage, ObjectIdentifier

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

CERTIFICATE_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    x509.InvalidVersion,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
)
"""What cryptography raises for a certificate (or one of its extensions) that does not parse;
``InvalidVersion``, ``DuplicateExtension`` (RFC 5280 4.2: an extension appears once) and
``UnsupportedGeneralNameType`` are not ValueErrors."""

DER_ERRORS: tuple[type[Exception], ...] = (*CERTIFICATE_ERRORS, TypeError, KeyError, UnsupportedAlgorithm)
"""What reading hostile DER (a certificate, CRL or OCSP answer) through cryptography and
asn1crypto raises: asn1crypto's lazy parser raises plain TypeError and KeyError too."""

_PEM_BLOCK = re.compile(
    rb"-----BEGIN ([A-Z0-9 ]+)-----\s*(.*?)\s*-----END \1-----", re.DOTALL
)


CARRIED_CERTIFICATES = 1024
"""How many distinct certificates carried in messages keep their parsed view.
A peer HISP signs every message with the same certificate and chain, so a few
entries per peer serve a busy gateway; the bound keeps a flood of distinct
certificates from holding memory."""

CARRIED_MAX_BYTES = 16 * 1024
"""Only certificates up to this size are kept (a real one is 1-2 KB): with the
count, a bound on the memory a flood of large crafted certificates can hold."""


def carried(der: bytes) -> CertRef:
    """The one ``CertRef`` for these exact bytes, shared by every message that carries them
    (a fresh one for a certificate over ``CARRIED_MAX_BYTES``).

    A ``CertRef`` is immutable and everything it caches (the parsed certificate,
    ``problem``, names, digests) depends only on its bytes, so reusing it across
    messages is the same answer without parsing, naming and hashing each
    certificate again per message (a tenth of opening a message, measured)."""
    if len(der) > CARRIED_MAX_BYTES:
        return CertRef(der)
    return _shared(der)


@lru_cache(maxsize=CARRIED_CERTIFICATES)
def _shared(der: bytes) -> CertRef:
    return CertRef(der)


class KeyMaterialError(ValueError):
    """A key or certificate file that cannot be used, and why."""


@dataclass(frozen=True, eq=False)
class CertRef:
    der: bytes = field(repr=False)

    @cached_property
    def x509(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.der)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CertRef) and other.der == self.der

    def __hash__(self) -> int:
        return hash(self.der)

    def __repr__(self) -> str:
        return f"CertRef({self.subject!r}, serial={self.serial:x})"

    @cached_property
    def problem(self) -> str | None:
        """Why a field the gateway reads from this certificate does not parse, or None.

        cryptography parses names, validity and extensions lazily, so a certificate
        from the network whose subject holds a UTF8String that is not UTF-8 (or a
        broken extension) loads, then raises on first use: in a finding, a log line
        or a trust decision. Asking here once, at the edge, turns that into a typed
        refusal (RFC 5280 4.1.2.4: DirectoryString values are well-formed strings)."""
        # cryptography warns, rather than raises, for a name attribute outside the
        # bounds of RFC 5280 appendix A (an empty or 65-character commonName, a
        # three-letter countryName), on every later access; such a name is refused
        # here, once, instead of warning in logs (and failing under -W error).
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                cert = self.x509
                cert.subject.rfc4514_string()
                cert.issuer.rfc4514_string()
                _ = cert.serial_number, cert.not_valid_before_utc, cert.not_valid_after_utc
                cert.extensions  # noqa: B018 -- parses every extension
                self.email_addresses  # noqa: B018 -- SAN rfc822Names and the emailAddress RDN
                self.dns_names  # noqa: B018
            except CERTIFICATE_ERRORS as exc:
                return str(exc)
            except (TypeError, UnicodeError) as exc:
                return f"{type(exc).__name__}: {exc}"
        if caught:
            return f"a name attribute outside RFC 5280's bounds: {caught[0].message}"
        return None

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.der).hexdigest()

    @cached_property
    def subject(self) -> str:
        return self.x509.subject.rfc4514_string()

    @cached_property
    def issuer(self) -> str:
        return self.x509.issuer.rfc4514_string()

    @cached_property
    def issuer_der(self) -> bytes:
        return self.x509.issuer.public_bytes()

    @cached_property
    def subject_der(self) -> bytes:
        return self.x509.subject.public_bytes()

    # The fields below are read for every message a certificate signs or opens (recipient
    # match, signer findings); cryptography builds a new Python object at each access.

    @cached_property
    def serial(self) -> int:
        return self.x509.serial_number

    @cached_property
    def not_before(self) -> datetime:
        return self.x509.not_valid_before_utc

    @cached_property
    def not_after(self) -> datetime:
        return self.x509.not_valid_after_utc

    @cached_property
    def public_key(self) -> CertificatePublicKeyTypes:
        """The subject's public key, parsed once (raises as ``x509.public_key()`` does, uncached)."""
        return self.x509.public_key()

    def valid_at(self, at: datetime) -> bool:
        return self.not_before <= at <= self.not_after

    @cached_property
    def subject_key_identifier(self) -> bytes | None:
        try:
            ext = self.x509.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        except x509.ExtensionNotFound:
            return None
        return ext.value.digest

    @cached_property
    def key_bits(self) -> int:
        key = self.public_key
        if isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            return key.key_size
        return 0

    @cached_property
    def key_algorithm(self) -> str:
        key = self.public_key
        if isinstance(key, rsa.RSAPublicKey):
            return "rsa"
        if isinstance(key, ec.EllipticCurvePublicKey):
            return f"ec-{key.curve.name}"
        return type(key).__name__

    @cached_property
    def email_addresses(self) -> tuple[str, ...]:
        """The addresses the certificate binds, lower-cased: its subjectAltName
        rfc822Names; the legacy emailAddress RDN only when there is no
        subjectAltName extension at all. RFC 5280 section 4.2.1.10 applies a CA's
        rfc822Name constraints to the subject's emailAddress only then: beside a
        SAN it is outside every constraint, so it binds nothing (issue 7)."""
        try:
            san = self.x509.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        except x509.ExtensionNotFound:
            legacy = self.x509.subject.get_attributes_for_oid(x509.NameOID.EMAIL_ADDRESS)
            values = [a.value if isinstance(a.value, str) else a.value.decode("ascii", "replace") for a in legacy]
            return tuple(dict.fromkeys(v.lower() for v in values))
        return tuple(dict.fromkeys(a.lower() for a in san.value.get_values_for_type(x509.RFC822Name)))

    @cached_property
    def dns_names(self) -> tuple[str, ...]:
        try:
            san = self.x509.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        except x509.ExtensionNotFound:
            return ()
        return tuple(n.lower() for n in san.value.get_values_for_type(x509.DNSName))

    @cached_property
    def key_usage(self) -> KeyUsage | None:
        try:
            return self.x509.extensions.get_extension_for_class(x509.KeyUsage).value
        except x509.ExtensionNotFound:
            return None

    def access_urls(self, method: ObjectIdentifier) -> list[str]:
        """URIs of the authorityInfoAccess entries of one kind (caIssuers, OCSP; RFC 5280 4.2.2.1)."""
        try:
            ext = self.x509.extensions.get_extension_for_class(x509.AuthorityInformationAccess)
        except x509.ExtensionNotFound:
            return []
        return [
            d.access_location.value
            for d in ext.value
            if d.access_method == method and isinstance(d.access_location, x509.UniformResourceIdentifier)
        ]

    @property
    def can_sign(self) -> bool:
        """No keyUsage extension means any use (RFC 5280 section 4.2.1.3)."""
        ku = self.key_usage
        return ku is None or ku.digital_signature

    @property
    def can_encrypt(self) -> bool:
        ku = self.key_usage
        return ku is None or ku.key_encipherment

    def pem(self) -> str:
        body = base64.encodebytes(self.der).decode().replace("\n", "")
        lines = [body[i : i + 64] for i in range(0, len(body), 64)]
        return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"


@dataclass(frozen=True)
class KeyPair:
    """A private key of ours and the certificate that names it."""

    key: PrivateKey = field(repr=False)
    cert: CertRef

    def __post_init__(self) -> None:
        from cryptography.hazmat.primitives import serialization

        fmt = serialization.PublicFormat.SubjectPublicKeyInfo
        enc = serialization.Encoding.DER
        if self.key.public_key().public_bytes(enc, fmt) != self.cert.x509.public_key().public_bytes(
            enc, fmt
        ):
            raise KeyMaterialError(f"the key does not belong to the certificate {self.cert.subject}")


def pem_blocks(data: bytes) -> list[tuple[str, bytes]]:
    """(label, DER) for every PEM block in ``data``."""
    out = []
    for m in _PEM_BLOCK.finditer(data):
        try:
            out.append((m.group(1).decode(), base64.b64decode(m.group(2), validate=False)))
        except ValueError as exc:
            raise KeyMaterialError(f"a PEM block labelled {m.group(1).decode()} is not base64") from exc
    return out


def load_certificates(data: bytes) -> list[CertRef]:
    """Every certificate in a PEM file (one or more blocks) or a single DER certificate."""
    if b"-----BEGIN" in data:
        certs = [CertRef(der) for label, der in pem_blocks(data) if label in ("CERTIFICATE", "X509 CERTIFICATE")]
    else:
        certs = [CertRef(data)]
    for c in certs:
        try:
            c.x509.extensions  # noqa: B018 -- parse now, so a bad file fails here
        except CERTIFICATE_ERRORS as exc:
            raise KeyMaterialError(f"not an X.509 certificate: {exc}") from exc
    if not certs:
        raise KeyMaterialError("no certificate found (expected PEM CERTIFICATE blocks or DER)")
    return certs


def load_private_key(data: bytes, password: bytes | None = None) -> PrivateKey:
    try:
        if b"-----BEGIN" in data:
            key = load_pem_private_key(data, password)
        else:
            key = load_der_private_key(data, password)
    except (ValueError, TypeError) as exc:
        raise KeyMaterialError(f"not a usable private key: {exc}") from exc
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey) or not isinstance(
        key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    ):
        raise KeyMaterialError(f"unsupported key type {type(key).__name__}: Direct uses RSA or ECDSA")
    return key


def load_pkcs12(data: bytes, password: bytes | None) -> KeyPair:
    try:
        key, cert, _extra = load_key_and_certificates(data, password)
    except ValueError as exc:
        raise KeyMaterialError(f"cannot open the PKCS#12 file (wrong password?): {exc}") from exc
    if key is None or cert is None:
        raise KeyMaterialError("the PKCS#12 file holds no key and certificate pair")
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise KeyMaterialError(f"unsupported key type {type(key).__name__}")
    from cryptography.hazmat.primitives.serialization import Encoding

    return KeyPair(key, CertRef(cert.public_bytes(Encoding.DER)))


def load_key_pair(key_data: bytes, cert_data: bytes, password: bytes | None = None) -> KeyPair:
    return KeyPair(load_private_key(key_data, password), load_certificates(cert_data)[0])


def utc(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError("times given to the core must be timezone-aware")
    return at.astimezone(UTC)
