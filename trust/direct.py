"""Direct's own checks on certificates, beyond RFC 5280 path validation.

Binding (Direct item 12), key usage per purpose (item 13), key size and
signature algorithm (item 14), and the policy layer's required certificate
policies and extended key usages. Each returns the first failure or None;
none does I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import SignatureAlgorithmOID

from gateway.core.certs import CertRef

from .policy import ANY_EXTENDED_KEY_USAGE, EMAIL_PROTECTION, Policy
from .types import Check, Purpose, TrustFailure

_SHA1_SIGNATURES = frozenset(
    {
        SignatureAlgorithmOID.RSA_WITH_SHA1,
        SignatureAlgorithmOID._RSA_WITH_SHA1,
        SignatureAlgorithmOID.ECDSA_WITH_SHA1,
        SignatureAlgorithmOID.DSA_WITH_SHA1,
    }
)
_BROKEN_SIGNATURES = frozenset({SignatureAlgorithmOID.RSA_WITH_MD5})


def bound_addresses(cert: CertRef) -> tuple[str, ...]:
    """The addresses a certificate binds: its SAN rfc822Names, the legacy subject
    emailAddress only without any subjectAltName (RFC 5280 4.2.1.6, 4.2.1.10).
    ``CertRef.email_addresses`` holds the rule, so every caller (binding,
    discovery, publishing, the admin's checks) reads it the same way."""
    return cert.email_addresses


def check_binding(cert: CertRef, bound_to: str) -> TrustFailure | None:
    """Direct item 12: an address-bound certificate names the exact address
    (SAN rfc822Name, or the legacy emailAddress in the subject of a certificate
    without subjectAltName); an org-bound one names the address's domain in SAN
    dNSName. ``bound_to`` may be a bare domain, which only an org-bound
    certificate can match."""
    target = bound_to.strip().lower()
    domain = target.rpartition("@")[2]
    addresses = bound_addresses(cert)
    if "@" in target and target in addresses:
        return None
    if domain in cert.dns_names:
        return None
    named = [*addresses, *cert.dns_names]
    return TrustFailure(
        Check.BINDING,
        cert,
        f"the certificate is not bound to {bound_to}: it names "
        f"{', '.join(named) if named else 'no address and no domain'}",
    )


def check_key_usage(cert: CertRef, purpose: Purpose) -> TrustFailure | None:
    """Direct item 13; no keyUsage extension allows any use (RFC 5280 4.2.1.3).
    An EC key encrypts by key agreement (RFC 5753), so keyAgreement counts."""
    ku = cert.key_usage
    if ku is None:
        return None
    if purpose is Purpose.SIGNING and not ku.digital_signature:
        return TrustFailure(Check.KEY_USAGE, cert, "the key usage does not allow digitalSignature, needed to sign")
    if purpose is Purpose.ENCRYPTION:
        is_ec = isinstance(cert.x509.public_key(), ec.EllipticCurvePublicKey)
        if not (ku.key_encipherment or (is_ec and ku.key_agreement)):
            return TrustFailure(Check.KEY_USAGE, cert, "the key usage does not allow keyEncipherment, needed to encrypt")
    return None


def _eku(cert: CertRef) -> frozenset[str] | None:
    try:
        ext = cert.x509.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        return None
    return frozenset(oid.dotted_string for oid in ext.value)


def check_extended_key_usage(cert: CertRef, policy: Policy) -> TrustFailure | None:
    eku = _eku(cert)
    if eku is not None and policy.eku_must_allow_email and not eku & {EMAIL_PROTECTION, ANY_EXTENDED_KEY_USAGE}:
        return TrustFailure(
            Check.EXTENDED_KEY_USAGE,
            cert,
            f"the extended key usage ({', '.join(sorted(eku))}) does not allow email protection (RFC 8550 4.4.4)",
        )
    missing = policy.required_eku - (eku or frozenset())
    if missing:
        return TrustFailure(
            Check.EXTENDED_KEY_USAGE, cert, f"the domain's policy requires extended key usage {', '.join(sorted(missing))}"
        )
    return None


def check_policy_oids(cert: CertRef, policy: Policy) -> TrustFailure | None:
    if not policy.required_policy_oids:
        return None
    try:
        ext = cert.x509.extensions.get_extension_for_class(x509.CertificatePolicies)
        asserted = {p.policy_identifier.dotted_string for p in ext.value}
    except x509.ExtensionNotFound:
        asserted = set()
    if asserted & policy.required_policy_oids:
        return None
    return TrustFailure(
        Check.POLICY_OID,
        cert,
        f"the certificate asserts {', '.join(sorted(asserted)) or 'no certificate policy'}; "
        f"the domain requires one of {', '.join(sorted(policy.required_policy_oids))}",
    )


def check_key(cert: CertRef, policy: Policy) -> TrustFailure | None:
    """Direct item 14: RSA of at least 2048 bits, or EC on P-256/P-384."""
    key = cert.x509.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < policy.min_rsa_bits:
            return TrustFailure(
                Check.KEY_SIZE, cert, f"an RSA key of {key.key_size} bits; at least {policy.min_rsa_bits} are required"
            )
        return None
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in policy.allowed_curves:
            return TrustFailure(
                Check.KEY_SIZE,
                cert,
                f"an EC key on {key.curve.name}; allowed: {', '.join(sorted(policy.allowed_curves))}",
            )
        return None
    return TrustFailure(Check.KEY_SIZE, cert, f"a {type(key).__name__} key; Direct uses RSA or ECDSA")


def check_signature_algorithm(cert: CertRef, policy: Policy) -> TrustFailure | None:
    oid = cert.x509.signature_algorithm_oid
    if oid in _BROKEN_SIGNATURES or (oid in _SHA1_SIGNATURES and not policy.allow_sha1):
        return TrustFailure(
            Check.WEAK_SIGNATURE_ALGORITHM,
            cert,
            f"the certificate is signed with {oid._name}; the domain's policy refuses it (Direct item 14)",
        )
    return None


def check_leaf(cert: CertRef, *, purpose: Purpose, bound_to: str, binding: bool, policy: Policy) -> TrustFailure | None:
    """Every Direct check on the certificate being judged."""
    return (
        (check_binding(cert, bound_to) if binding else None)
        or check_key_usage(cert, purpose)
        or check_extended_key_usage(cert, policy)
        or check_policy_oids(cert, policy)
        or check_key(cert, policy)
        or check_signature_algorithm(cert, policy)
    )


def check_issuers(chain: Sequence[CertRef], policy: Policy) -> TrustFailure | None:
    """Key size and signature algorithm of the CA certificates above the leaf
    (anchors excluded: the administrator chose them)."""
    for cert in chain:
        failure = check_key(cert, policy) or check_signature_algorithm(cert, policy)
        if failure is not None:
            return failure
    return None
