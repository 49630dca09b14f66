"""The demo's certificates: one trust community, two HISPs in it, one outside.

A trust community (DirectTrust is the real one) is a root that every member
HISP accepts as an anchor; each member's domain certificate is issued under
it. ``clinic.demo`` gets a certificate from a CA no member trusts, so its
messages are refused: the demo's first failure act.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway import devpki

HOSPITAL, PHR, CLINIC = "hospital.demo", "phr.demo", "clinic.demo"
DOCTOR = f"dr.smith@{HOSPITAL}"
"""The one address-bound certificate: the hospital signs Dr. Smith's mail with it."""

LIFETIME = dt.timedelta(days=365)


@dataclass(frozen=True)
class DemoPki:
    community_root: devpki.Issued
    community_ca: devpki.Issued
    hospital: devpki.Issued
    doctor: devpki.Issued
    phr: devpki.Issued
    outsider_root: devpki.Issued
    clinic: devpki.Issued

    @property
    def anchors(self) -> bytes:
        """What every member trusts: the community's root and its issuing CA (DNS CERT
        records carry the leaf alone, so the issuing CA must be at hand)."""
        return self.community_root.pem + self.community_ca.pem


def make_pki(at: dt.datetime) -> DemoPki:
    window = {"not_before": at - dt.timedelta(days=1), "not_after": at + LIFETIME}
    root = devpki.root("Demo Trust Community Root", **window)
    ca = devpki.intermediate(root, "Demo Trust Community Issuing CA", **window)
    outsider = devpki.root("Unaccredited Root CA", **window)
    return DemoPki(
        community_root=root,
        community_ca=ca,
        hospital=devpki.org_leaf(ca, HOSPITAL, **window),
        doctor=devpki.address_leaf(ca, DOCTOR, **window),
        phr=devpki.org_leaf(ca, PHR, **window),
        outsider_root=outsider,
        clinic=devpki.org_leaf(outsider, CLINIC, **window),
    )


def write_pair(directory: Path, name: str, issued: devpki.Issued) -> tuple[Path, Path]:
    """``name.pem`` and ``name.key`` (0600: ``domains add`` refuses a key others can read)."""
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    cert.write_bytes(issued.pem)
    key.write_bytes(issued.key_pem())
    os.chmod(key, 0o600)
    return cert, key


def loopback_tls(directory: Path, at: dt.datetime) -> tuple[Path, Path]:
    """A self-signed STARTTLS certificate for 127.0.0.1, which the demo's EHR client trusts."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(at - dt.timedelta(minutes=5))
        .not_valid_after(at + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "smtp-tls.pem", directory / "smtp-tls.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    os.chmod(key_file, 0o600)
    return cert_file, key_file
