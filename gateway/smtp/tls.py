"""TLS for STARTTLS on the SMTP edge: the server context, and a self-signed certificate for ``init``.

On port 25 STARTTLS is offered, not required (RFC 3207 4: a publicly
referenced server must not require it), and senders do not check the
certificate's name (opportunistic TLS, RFC 7435), so a self-signed
certificate serves until the operator installs one from a CA.
"""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# RFC 8996: TLS 1.0 and 1.1 are deprecated; RFC 7525 (BCP 195) asks for 1.2 at least.
MIN_TLS_VERSION = ssl.TLSVersion.TLSv1_2

# A self-signed certificate is a placeholder; two years leaves time to replace it.
SELF_SIGNED_LIFETIME = datetime.timedelta(days=730)


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """The SSLContext for ``start_smtp(tls_context=...)``: our chain, no client certificates."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MIN_TLS_VERSION
    context.load_cert_chain(cert_file, key_file)
    return context


def self_signed(hostname: str, at: datetime.datetime) -> tuple[bytes, bytes]:
    """A self-signed certificate for ``hostname`` valid from ``at``, and its key: (cert PEM, key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(at)
        .not_valid_after(at + SELF_SIGNED_LIFETIME)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem
