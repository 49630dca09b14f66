"""CRLs and OCSP answers for the trust tests, built with cryptography on the test PKI."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from anchors.source import Direction, StaticAnchors
from trust import DomainPolicies, Policy, Purpose, TrustService

from .http_servers import LoopbackHttp
from .pki import NOW, Issued, issue, new_key


def crl(
    issuer: Issued,
    revoked: Iterable[Issued] = (),
    *,
    this_update: dt.datetime | None = None,
    next_update: dt.datetime | None = None,
    reason: x509.ReasonFlags = x509.ReasonFlags.key_compromise,
    signer_key=None,
) -> bytes:
    """A DER CRL from ``issuer`` listing ``revoked`` (revoked a day before NOW).

    ``signer_key`` signs with another key than the issuer's: a badly signed CRL.
    """
    b = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.cert.subject)
        .last_update(this_update or NOW - dt.timedelta(hours=1))
        .next_update(next_update or NOW + dt.timedelta(days=7))
        .add_extension(x509.CRLNumber(1), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False)
    )
    for cert in revoked:
        b = b.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(cert.cert.serial_number)
            .revocation_date(NOW - dt.timedelta(days=1))
            .add_extension(x509.CRLReason(reason), critical=False)
            .build()
        )
    return b.sign(signer_key or issuer.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def ocsp_response(
    request_der: bytes,
    issuers: Iterable[Issued],
    revoked_serials: set[int],
    *,
    at: dt.datetime = NOW,
) -> bytes:
    """Answer an OCSP request as the issuing CA itself (RFC 6960 4.2.2.2, CA-signed)."""
    req = ocsp.load_der_ocsp_request(request_der)
    issuer = next(
        (i for i in issuers if req.issuer_key_hash == _key_hash(i)),
        None,
    )
    if issuer is None:
        return ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED).public_bytes(
            serialization.Encoding.DER
        )
    revoked = req.serial_number in revoked_serials
    # the builder wants the certificate itself; a stand-in with the right serial and issuer does
    subject = _stand_in(issuer, req.serial_number)
    b = ocsp.OCSPResponseBuilder().add_response(
        cert=subject,
        issuer=issuer.cert,
        algorithm=hashes.SHA1(),
        cert_status=ocsp.OCSPCertStatus.REVOKED if revoked else ocsp.OCSPCertStatus.GOOD,
        this_update=at - dt.timedelta(hours=1),
        next_update=at + dt.timedelta(days=1),
        revocation_time=at - dt.timedelta(days=1) if revoked else None,
        revocation_reason=x509.ReasonFlags.key_compromise if revoked else None,
    )
    b = b.responder_id(ocsp.OCSPResponderEncoding.HASH, issuer.cert)
    return b.sign(issuer.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def _key_hash(issuer: Issued) -> bytes:
    digest = hashes.Hash(hashes.SHA1())
    spki = issuer.cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    from asn1crypto import keys

    digest.update(keys.PublicKeyInfo.load(spki)["public_key"].contents[1:])
    return digest.finalize()


def _stand_in(issuer: Issued, serial: int) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(issuer.cert.subject)
        .issuer_name(issuer.cert.subject)
        .public_key(issuer.key.public_key())
        .serial_number(serial)
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=1))
        .sign(issuer.key, hashes.SHA256())
    )


def resigned(issued: Issued, hash_name: str = "sha1") -> Issued:
    """The same certificate signed again by its issuer with ``hash_name``.

    cryptography 50 no longer signs certificates with SHA-1, so the TBS is
    re-labelled and signed by hand (PKCS#1 v1.5), as old CAs did.
    """
    from asn1crypto import x509 as asn1_x509
    from cryptography.hazmat.primitives.asymmetric import padding

    algo = {"sha1": ("sha1_rsa", hashes.SHA1())}[hash_name]
    cert = asn1_x509.Certificate.load(issued.der)
    tbs = cert["tbs_certificate"]
    tbs["signature"] = {"algorithm": algo[0]}
    tbs_der = tbs.dump(force=True)
    signer = issued.issuer.key if issued.issuer is not None else issued.key
    signature = signer.sign(tbs_der, padding.PKCS1v15(), algo[1])
    out = asn1_x509.Certificate(
        {
            "tbs_certificate": asn1_x509.TbsCertificate.load(tbs_der),
            "signature_algorithm": {"algorithm": algo[0]},
            "signature_value": signature,
        }
    )
    return Issued(x509.load_der_x509_certificate(out.dump()), issued.key, issued.issuer)


# --- a small Direct PKI around a loopback HTTP server ------------------------------

DAY = dt.timedelta(days=1)
PAST = NOW - 3 * 365 * DAY
FUTURE = NOW + 3 * 365 * DAY


@functools.cache
def role_key(role: str, kind: str = "rsa", size: int = 2048):
    """One key per role for the whole run: RSA generation dominates test time."""
    return new_key(kind, size)


@dataclass
class World:
    """Root -> intermediate -> leaves; the intermediate and leaves name CRLs on the server."""

    http: LoopbackHttp
    root: Issued
    inter: Issued
    alice: Issued
    org: Issued
    revoked: list[Issued] = field(default_factory=list)

    def publish(self) -> None:
        self.http.files["/root.crl"] = crl(self.root, [c for c in self.revoked if c.issuer is self.root])
        self.http.files["/int.crl"] = crl(self.inter, [c for c in self.revoked if c.issuer is self.inter])
        self.http.files["/int.cer"] = self.inter.der

    def leaf(self, cn: str = "carol@a.test", **kw) -> Issued:
        kw.setdefault("key", role_key("leaf2"))
        kw.setdefault("email", cn)
        kw.setdefault("crl_urls", (self.http.url("/int.crl"),))
        return issue(cn, issuer=self.inter, **kw)


def build_world(http: LoopbackHttp, *, root_kw=None, inter_kw=None, leaf_kw=None) -> World:
    root = issue("Test Root CA", ca=True, key=role_key("root"), **(root_kw or {}))
    inter = issue(
        "Test Intermediate CA", issuer=root, ca=True, key=role_key("inter"),
        **{"crl_urls": (http.url("/root.crl"),), **(inter_kw or {})},
    )
    leaf_common = {"issuer": inter, "crl_urls": (http.url("/int.crl"),), **(leaf_kw or {})}
    alice = issue("alice@a.test", email="alice@a.test", key=role_key("alice"), **leaf_common)
    org = issue("a.test", dns="a.test", key=role_key("org"), **leaf_common)
    w = World(http, root, inter, alice, org)
    w.publish()
    return w


def service(fetcher, *anchors: Issued, policy: Policy | None = None) -> TrustService:
    policies = DomainPolicies(policy) if policy else None
    return TrustService(StaticAnchors(tuple(a.ref for a in anchors)), fetcher, policies)


async def decide(svc: TrustService, leaf: Issued, bound_to: str = "alice@a.test", *, chain=(), at=NOW, **kw):
    kw.setdefault("purpose", Purpose.SIGNING)
    kw.setdefault("direction", Direction.INCOMING)
    kw.setdefault("local_domain", "b.test")
    return await svc.decide(
        leaf.ref, bound_to=bound_to, at=at, intermediates=[c.ref for c in chain], **kw
    )
