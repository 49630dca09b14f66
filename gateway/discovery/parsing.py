"""Certificate bytes as DNS and LDAP hand them over: DER, PEM, or a PKCS#7
certificate bundle (``userSMIMECertificate`` holds one, RFC 2798 section 9.1.2;
a URL in a CERT record may serve one)."""

from __future__ import annotations

from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

from gateway.core.certs import CertRef, KeyMaterialError, load_certificates


def certificates_in(data: bytes) -> list[CertRef]:
    """Every certificate in ``data``; raises ``KeyMaterialError`` when there is none."""
    try:
        return load_certificates(data)
    except KeyMaterialError:
        pass
    loader = pkcs7.load_pem_pkcs7_certificates if b"-----BEGIN" in data else pkcs7.load_der_pkcs7_certificates
    try:
        found = loader(data)
    except ValueError as exc:
        raise KeyMaterialError(f"neither a certificate nor a PKCS#7 bundle: {exc}") from exc
    if not found:
        raise KeyMaterialError("an empty PKCS#7 bundle")
    return [CertRef(c.public_bytes(Encoding.DER)) for c in found]
