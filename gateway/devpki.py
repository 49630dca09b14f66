"""A throwaway PKI for the demo and the tests: roots, intermediates and Direct leaves, in memory.

Never for production keys: keys are generated without care for storage, and
pooled per process so a test run makes each RSA key once.

Everything the trust and message tests need to vary is a keyword: validity,
key type and size, signature hash, key usage, address or domain binding, CRL
distribution points, AIA caIssuers and OCSP URLs.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.core.certs import CertRef, KeyPair

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
"""The moment tests pin; certificates are valid a year either side by default."""

_serials = itertools.count(0x1000)
def _fresh_key(kind: str, size: int):
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=size)
    curve = {256: ec.SECP256R1(), 384: ec.SECP384R1(), 521: ec.SECP521R1()}[size]
    return ec.generate_private_key(curve)


@functools.cache
def _pooled_key(kind: str, size: int, index: int):
    return _fresh_key(kind, size)


_pool_counter: dict[tuple[str, int], itertools.count] = {}


def new_key(kind: str = "rsa", size: int = 2048):
    """A distinct key; drawn from a per-process pool so reruns stay fast."""
    counter = _pool_counter.setdefault((kind, size), itertools.count())
    return _pooled_key(kind, size, next(counter))


@dataclass
class Issued:
    """A certificate with its key, and the authority that issued it."""

    cert: x509.Certificate
    key: Any = field(repr=False)
    issuer: Issued | None = None

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def ref(self) -> CertRef:
        return CertRef(self.der)

    @property
    def pair(self) -> KeyPair:
        return KeyPair(self.key, self.ref)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def key_der(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def chain(self) -> list[Issued]:
        """This certificate, then each issuer up to the root."""
        out: list[Issued] = []
        node: Issued | None = self
        while node is not None:
            out.append(node)
            node = node.issuer
        return out


def _name(cn: str, email: str | None = None, org: str = "directgw tests") -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)]
    if email:
        attrs.append(x509.NameAttribute(NameOID.EMAIL_ADDRESS, email))
    return x509.Name(attrs)


def _hash(name: str):
    return {"sha1": hashes.SHA1(), "sha256": hashes.SHA256(), "sha384": hashes.SHA384(), "sha512": hashes.SHA512()}[name]


def issue(
    cn: str,
    *,
    issuer: Issued | None = None,
    ca: bool = False,
    key=None,
    key_kind: str = "rsa",
    key_size: int = 2048,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    hash_name: str = "sha256",
    email: str | None = None,
    dns: str | None = None,
    email_in_subject: bool = False,
    digital_signature: bool = True,
    key_encipherment: bool = True,
    key_usage: bool = True,
    eku: tuple = (),
    crl_urls: tuple[str, ...] = (),
    aia_ca_issuers: tuple[str, ...] = (),
    ocsp_urls: tuple[str, ...] = (),
    policies: tuple[str, ...] = (),
    path_length: int | None = None,
    serial: int | None = None,
) -> Issued:
    """Issue one certificate. Without ``issuer`` it is self-signed."""
    key = key if key is not None else new_key(key_kind, key_size)
    subject = _name(cn, email if email_in_subject else None)
    signer_key = issuer.key if issuer else key
    issuer_name = issuer.cert.subject if issuer else subject
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(serial if serial is not None else next(_serials))
        .not_valid_before(not_before or NOW - dt.timedelta(days=365))
        .not_valid_after(not_after or NOW + dt.timedelta(days=365))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        b = b.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False
        )
    if ca:
        b = b.add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        b = b.add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
    else:
        b = b.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        if key_usage:
            b = b.add_extension(
                x509.KeyUsage(
                    digital_signature=digital_signature, content_commitment=False,
                    key_encipherment=key_encipherment and key_kind == "rsa", data_encipherment=False,
                    key_agreement=key_encipherment and key_kind == "ec", key_cert_sign=False,
                    crl_sign=False, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
        sans: list[x509.GeneralName] = []
        if email:
            sans.append(x509.RFC822Name(email))
        if dns:
            sans.append(x509.DNSName(dns))
        if sans and not email_in_subject:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        elif dns:
            b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(dns)]), critical=False)
        if eku:
            b = b.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    if crl_urls:
        b = b.add_extension(
            x509.CRLDistributionPoints(
                [x509.DistributionPoint([x509.UniformResourceIdentifier(u)], None, None, None) for u in crl_urls]
            ),
            critical=False,
        )
    access = [x509.AccessDescription(x509.AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(u)) for u in aia_ca_issuers]
    access += [x509.AccessDescription(x509.AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(u)) for u in ocsp_urls]
    if access:
        b = b.add_extension(x509.AuthorityInformationAccess(access), critical=False)
    if policies:
        b = b.add_extension(
            x509.CertificatePolicies([x509.PolicyInformation(x509.ObjectIdentifier(p), None) for p in policies]),
            critical=False,
        )
    cert = b.sign(signer_key, _hash(hash_name))
    return Issued(cert, key, issuer)


def root(cn: str = "Test Root CA", **kw) -> Issued:
    return issue(cn, ca=True, **kw)


def intermediate(parent: Issued, cn: str = "Test Intermediate CA", **kw) -> Issued:
    return issue(cn, issuer=parent, ca=True, **kw)


def address_leaf(parent: Issued, address: str, **kw) -> Issued:
    return issue(address, issuer=parent, email=address, **kw)


def org_leaf(parent: Issued, domain: str, **kw) -> Issued:
    return issue(domain, issuer=parent, dns=domain, **kw)


@dataclass
class Hisp:
    """A HISP's PKI: a root, an intermediate, and leaves for one domain."""

    domain: str
    root: Issued
    intermediate: Issued
    org: Issued

    def address(self, local: str, **kw) -> Issued:
        return address_leaf(self.intermediate, f"{local}@{self.domain}", **kw)


def hisp(domain: str, **org_kw) -> Hisp:
    r = root(f"{domain} Root CA")
    i = intermediate(r, f"{domain} Issuing CA")
    return Hisp(domain, r, i, org_leaf(i, domain, **org_kw))


__all__ = [
    "NOW", "ExtendedKeyUsageOID", "Hisp", "Issued", "address_leaf", "hisp", "intermediate",
    "issue", "new_key", "org_leaf", "root",
]
