"""Files administrators hand to ``anchors add``: bundles in every accepted
format, and the wrong files they upload by mistake."""

from __future__ import annotations

import base64
import datetime as dt

from asn1crypto import cms as asn1_cms
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from cryptography.x509.oid import NameOID

from gateway.core.algorithms import Digest
from gateway.core.cms import sign
from tests.pki import NOW, Issued


def p7b(*certs: Issued, pem: bool = False) -> bytes:
    encoding = serialization.Encoding.PEM if pem else serialization.Encoding.DER
    return pkcs7.serialize_certificates([c.cert for c in certs], encoding)


def p7m(content: bytes, signer: Issued) -> bytes:
    """A signed bundle: opaque CMS SignedData over a p7b, as trust communities publish them."""
    return sign(content, signer.pair, Digest.SHA256, NOW, detached=False)


def crl(issuer: Issued, encoding=serialization.Encoding.PEM) -> bytes:
    return (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.cert.subject)
        .last_update(NOW)
        .next_update(NOW + dt.timedelta(days=7))
        .sign(issuer.key, hashes.SHA256())
        .public_bytes(encoding)
    )


def csr(who: Issued) -> bytes:
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "a.test")]))
        .sign(who.key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )


def p12(who: Issued, password: bytes | None = b"secret") -> bytes:
    enc = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return pkcs12.serialize_key_and_certificates(b"a.test", who.key, who.cert, None, enc)


def encrypted_key(who: Issued) -> bytes:
    return who.key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")
    )


def public_key(who: Issued) -> bytes:
    return who.key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


HTML = b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>Please log in</body></html>\n"


EMAIL_PROTECTION = bytes.fromhex("06082b06010505070304")  # OID 1.3.6.1.5.5.7.3.4


def trusted_certificate(cert: Issued, *, reject: bool = False) -> bytes:
    """OpenSSL's ``x509 -trustout -addtrust|-addreject emailProtection``: the
    certificate followed by X509_CERT_AUX, in a TRUSTED CERTIFICATE block."""
    oids = bytes([0x30 if not reject else 0xA0, len(EMAIL_PROTECTION)]) + EMAIL_PROTECTION
    aux = bytes([0x30, len(oids)]) + oids
    body = base64.encodebytes(cert.der + aux)
    return b"-----BEGIN TRUSTED CERTIFICATE-----\n" + body + b"-----END TRUSTED CERTIFICATE-----\n"


def p7m_without_certificates(content: bytes, signer: Issued) -> bytes:
    """A signed bundle that does not embed its signer (``openssl cms -sign -nocerts``)."""
    info = asn1_cms.ContentInfo.load(p7m(content, signer))
    info["content"]["certificates"] = None
    return info.dump(force=True)
