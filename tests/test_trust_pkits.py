"""NIST PKITS (Public Key Interoperability Test Suite), section 4, through the inbound pipeline.

Every signed message of section 4 (``smime/Signed*.eml``, shipped in the
``cryptography-vectors`` package with the certificates and CRLs) is opened by
``gateway.core.open_inbound`` and its signer judged by ``TrustService`` with:

- the Trust Anchor Root Certificate as the only anchor, every CRL of
  ``crls/`` supplied (PKITS publishes them in a directory, not at URLs);
- ``revocation = "required"``: every certificate below the anchor must be
  shown not revoked (PKITS expects "Missing CRL Test1" to fail);
- the PKITS default settings (section 3: initial-policy-set any-policy, no
  explicit policy, policy mapping and any-policy not inhibited), which are
  pyhanko-certvalidator's defaults and ours;
- the binding off: PKITS certificates carry no Direct address (the messages
  are from sender@testcertificates.gov). Nothing else is relaxed: the default
  Direct policy (2048-bit RSA, SHA-256, key usage) holds for PKITS 2011.

The expected outcome of each test is PKITS's valid/invalid (the unprefixed
4.8 and 4.12 tests as the PKITS document gives them for the default
settings), refined here to the check that refuses it. The two valid DSA
tests are refused on purpose: the core verifies only the signature schemes
Direct messages use (RSA PKCS#1 v1.5 and PSS, ECDSA; ``gateway.core.algorithms``),
so a DSA signer is refused before any trust decision (docs/trust.md). 4.4.15's
signer has a negative serial number, which the core refuses before the trust
decision too: invalid, as PKITS expects, though not for the revocation it tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import pytest

from anchors.source import StaticAnchors
from gateway.core import Opened, RejectReason, open_inbound
from gateway.core.certs import CertRef
from trust import Check, DomainPolicies, OfflineFetcher, Policy, TrustService
from trust.policy import RevocationRequirement
from trust.revinfo import CachedCrl, RevocationCache, parse_crl

from .prerequisites import unavailable

AT = datetime(2024, 6, 1, tzinfo=UTC)
"""Inside every PKITS 2011 validity that is meant to hold (2010-2030)."""
POLICY = Policy(revocation=RevocationRequirement.REQUIRED)
RECIPIENT = "recipient@testcertificates.gov"


@dataclass(frozen=True)
class Refused:
    """Refused by the core before any trust decision, for one of ``reasons``."""

    reasons: frozenset[RejectReason]
    why: str


VALID = None
REFUSED_DSA = Refused(frozenset({RejectReason.UNSUPPORTED_ALGORITHM}), "DSA signatures are not Direct's")
REFUSED_DSA_INHERITED = Refused(
    frozenset({RejectReason.UNSUPPORTED_ALGORITHM, RejectReason.MALFORMED}),
    "a DSA key that inherits its parameters from its issuer (RFC 3279 2.3.2) is not usable alone",
)

REFUSED_NEGATIVE_SERIAL = Refused(
    frozenset({RejectReason.MALFORMED}), "a negative serial number is outside RFC 5280 (4.1.2.2)"
)

EXPECTED: dict[str, Check | Refused | None] = {
    # 4.1 signature verification
    "ValidSignaturesTest1": VALID,
    "InvalidCASignatureTest2": Check.CHAIN,
    "InvalidEESignatureTest3": Check.CHAIN,
    "ValidDSASignaturesTest4": REFUSED_DSA,
    "ValidDSAParameterInheritanceTest5": REFUSED_DSA_INHERITED,
    "InvalidDSASignatureTest6": REFUSED_DSA,  # invalid anyway
    # 4.2 validity periods
    "InvalidCAnotBeforeDateTest1": Check.NOT_YET_VALID,
    "InvalidEEnotBeforeDateTest2": Check.NOT_YET_VALID,
    "Validpre2000UTCnotBeforeDateTest3": VALID,
    "ValidGeneralizedTimenotBeforeDateTest4": VALID,
    "InvalidCAnotAfterDateTest5": Check.EXPIRED,
    "InvalidEEnotAfterDateTest6": Check.EXPIRED,
    "Invalidpre2000UTCEEnotAfterDateTest7": Check.EXPIRED,
    "ValidGeneralizedTimenotAfterDateTest8": VALID,
    # 4.3 name chaining
    "InvalidNameChainingEETest1": Check.CHAIN,
    "InvalidNameChainingOrderTest2": Check.CHAIN,
    "ValidNameChainingWhitespaceTest3": VALID,
    "ValidNameChainingWhitespaceTest4": VALID,
    "ValidNameChainingCapitalizationTest5": VALID,
    "ValidNameChainingUIDsTest6": VALID,
    "ValidRFC3280MandatoryAttributeTypesTest7": VALID,
    "ValidRFC3280OptionalAttributeTypesTest8": VALID,
    "ValidUTF8StringEncodedNamesTest9": VALID,
    "ValidRolloverfromPrintableStringtoUTF8StringTest10": VALID,
    "ValidUTF8StringCaseInsensitiveMatchTest11": VALID,
    # 4.4 basic certificate revocation
    "MissingCRLTest1": Check.REVOCATION_UNKNOWN,
    "InvalidRevokedCATest2": Check.REVOKED,
    "InvalidRevokedEETest3": Check.REVOKED,
    "InvalidBadCRLSignatureTest4": Check.REVOCATION_UNKNOWN,
    "InvalidBadCRLIssuerNameTest5": Check.REVOCATION_UNKNOWN,
    "InvalidWrongCRLTest6": Check.REVOCATION_UNKNOWN,
    "ValidTwoCRLsTest7": VALID,
    "InvalidUnknownCRLEntryExtensionTest8": Check.REVOCATION_UNKNOWN,
    "InvalidUnknownCRLExtensionTest9": Check.REVOCATION_UNKNOWN,
    "InvalidUnknownCRLExtensionTest10": Check.REVOCATION_UNKNOWN,
    "InvalidOldCRLnextUpdateTest11": Check.REVOCATION_UNKNOWN,
    "Invalidpre2000CRLnextUpdateTest12": Check.REVOCATION_UNKNOWN,
    "ValidGeneralizedTimeCRLnextUpdateTest13": VALID,
    "ValidNegativeSerialNumberTest14": VALID,
    # its end entity's serial number is negative (RFC 5280 4.1.2.2: positive), which
    # cryptography warns it will refuse to load; the core refuses it first
    "InvalidNegativeSerialNumberTest15": REFUSED_NEGATIVE_SERIAL,
    "ValidLongSerialNumberTest16": VALID,
    "ValidLongSerialNumberTest17": VALID,
    "InvalidLongSerialNumberTest18": Check.REVOKED,
    "ValidSeparateCertificateandCRLKeysTest19": VALID,
    "InvalidSeparateCertificateandCRLKeysTest20": Check.REVOKED,
    "InvalidSeparateCertificateandCRLKeysTest21": Check.REVOCATION_UNKNOWN,
    # 4.5 self-issued certificates
    "ValidBasicSelfIssuedOldWithNewTest1": VALID,
    "InvalidBasicSelfIssuedOldWithNewTest2": Check.REVOKED,
    "ValidBasicSelfIssuedNewWithOldTest3": VALID,
    "ValidBasicSelfIssuedNewWithOldTest4": VALID,
    "InvalidBasicSelfIssuedNewWithOldTest5": Check.REVOKED,
    "ValidBasicSelfIssuedCRLSigningKeyTest6": VALID,
    "InvalidBasicSelfIssuedCRLSigningKeyTest7": Check.REVOKED,
    "InvalidBasicSelfIssuedCRLSigningKeyTest8": Check.PATH_CONSTRAINTS,
    # 4.6 basic constraints
    "InvalidMissingbasicConstraintsTest1": Check.PATH_CONSTRAINTS,
    "InvalidcAFalseTest2": Check.PATH_CONSTRAINTS,
    "InvalidcAFalseTest3": Check.PATH_CONSTRAINTS,
    "ValidbasicConstraintsNotCriticalTest4": VALID,
    "InvalidpathLenConstraintTest5": Check.PATH_CONSTRAINTS,
    "InvalidpathLenConstraintTest6": Check.PATH_CONSTRAINTS,
    "ValidpathLenConstraintTest7": VALID,
    "ValidpathLenConstraintTest8": VALID,
    "InvalidpathLenConstraintTest9": Check.PATH_CONSTRAINTS,
    "InvalidpathLenConstraintTest10": Check.PATH_CONSTRAINTS,
    "InvalidpathLenConstraintTest11": Check.PATH_CONSTRAINTS,
    "InvalidpathLenConstraintTest12": Check.PATH_CONSTRAINTS,
    "ValidpathLenConstraintTest13": VALID,
    "ValidpathLenConstraintTest14": VALID,
    "ValidSelfIssuedpathLenConstraintTest15": VALID,
    "InvalidSelfIssuedpathLenConstraintTest16": Check.PATH_CONSTRAINTS,
    "ValidSelfIssuedpathLenConstraintTest17": VALID,
    # 4.7 key usage
    "InvalidkeyUsageCriticalkeyCertSignFalseTest1": Check.PATH_CONSTRAINTS,
    "InvalidkeyUsageNotCriticalkeyCertSignFalseTest2": Check.PATH_CONSTRAINTS,
    "ValidkeyUsageNotCriticalTest3": VALID,
    "InvalidkeyUsageCriticalcRLSignFalseTest4": Check.REVOCATION_UNKNOWN,
    "InvalidkeyUsageNotCriticalcRLSignFalseTest5": Check.REVOCATION_UNKNOWN,
    # 4.8 certificate policies
    "AllCertificatesSamePolicyTest1": VALID,
    "AllCertificatesNoPoliciesTest2": VALID,
    "DifferentPoliciesTest3": VALID,
    "DifferentPoliciesTest4": Check.PATH_CONSTRAINTS,
    "DifferentPoliciesTest5": Check.PATH_CONSTRAINTS,
    "OverlappingPoliciesTest6": VALID,
    "DifferentPoliciesTest7": Check.PATH_CONSTRAINTS,
    "DifferentPoliciesTest8": Check.PATH_CONSTRAINTS,
    "DifferentPoliciesTest9": Check.PATH_CONSTRAINTS,
    "AllCertificatesSamePoliciesTest10": VALID,
    "AllCertificatesAnyPolicyTest11": VALID,
    "DifferentPoliciesTest12": Check.PATH_CONSTRAINTS,
    "AllCertificatesSamePoliciesTest13": VALID,
    "AnyPolicyTest14": VALID,
    "UserNoticeQualifierTest15": VALID,
    "UserNoticeQualifierTest16": VALID,
    "UserNoticeQualifierTest17": VALID,
    "UserNoticeQualifierTest18": VALID,
    "UserNoticeQualifierTest19": VALID,
    "CPSPointerQualifierTest20": VALID,
    # 4.9 require explicit policy
    "ValidRequireExplicitPolicyTest1": VALID,
    "ValidRequireExplicitPolicyTest2": VALID,
    "InvalidRequireExplicitPolicyTest3": Check.PATH_CONSTRAINTS,
    "ValidRequireExplicitPolicyTest4": VALID,
    "InvalidRequireExplicitPolicyTest5": Check.PATH_CONSTRAINTS,
    "ValidSelfIssuedrequireExplicitPolicyTest6": VALID,
    "InvalidSelfIssuedrequireExplicitPolicyTest7": Check.PATH_CONSTRAINTS,
    "InvalidSelfIssuedrequireExplicitPolicyTest8": Check.PATH_CONSTRAINTS,
    # 4.10 policy mappings
    "ValidPolicyMappingTest1": VALID,
    "InvalidPolicyMappingTest2": Check.PATH_CONSTRAINTS,
    "ValidPolicyMappingTest3": VALID,
    "InvalidPolicyMappingTest4": Check.PATH_CONSTRAINTS,
    "ValidPolicyMappingTest5": VALID,
    "ValidPolicyMappingTest6": VALID,
    "InvalidMappingFromanyPolicyTest7": Check.PATH_CONSTRAINTS,
    "InvalidMappingToanyPolicyTest8": Check.PATH_CONSTRAINTS,
    "ValidPolicyMappingTest9": VALID,
    "InvalidPolicyMappingTest10": Check.PATH_CONSTRAINTS,
    "ValidPolicyMappingTest11": VALID,
    "ValidPolicyMappingTest12": VALID,
    "ValidPolicyMappingTest13": VALID,
    "ValidPolicyMappingTest14": VALID,
    # 4.11 inhibit policy mapping
    "InvalidinhibitPolicyMappingTest1": Check.PATH_CONSTRAINTS,
    "ValidinhibitPolicyMappingTest2": VALID,
    "InvalidinhibitPolicyMappingTest3": Check.PATH_CONSTRAINTS,
    "ValidinhibitPolicyMappingTest4": VALID,
    "InvalidinhibitPolicyMappingTest5": Check.PATH_CONSTRAINTS,
    "InvalidinhibitPolicyMappingTest6": Check.PATH_CONSTRAINTS,
    "ValidSelfIssuedinhibitPolicyMappingTest7": VALID,
    "InvalidSelfIssuedinhibitPolicyMappingTest8": Check.PATH_CONSTRAINTS,
    "InvalidSelfIssuedinhibitPolicyMappingTest9": Check.PATH_CONSTRAINTS,
    "InvalidSelfIssuedinhibitPolicyMappingTest10": Check.PATH_CONSTRAINTS,
    "InvalidSelfIssuedinhibitPolicyMappingTest11": Check.PATH_CONSTRAINTS,
    # 4.12 inhibit any policy
    "InvalidinhibitAnyPolicyTest1": Check.PATH_CONSTRAINTS,
    "ValidinhibitAnyPolicyTest2": VALID,
    "inhibitAnyPolicyTest3": VALID,
    "InvalidinhibitAnyPolicyTest4": Check.PATH_CONSTRAINTS,
    "InvalidinhibitAnyPolicyTest5": Check.PATH_CONSTRAINTS,
    "InvalidinhibitAnyPolicyTest6": Check.PATH_CONSTRAINTS,
    "ValidSelfIssuedinhibitAnyPolicyTest7": VALID,
    "InvalidSelfIssuedinhibitAnyPolicyTest8": Check.PATH_CONSTRAINTS,
    "ValidSelfIssuedinhibitAnyPolicyTest9": VALID,
    "InvalidSelfIssuedinhibitAnyPolicyTest10": Check.PATH_CONSTRAINTS,
    # 4.13 name constraints
    "ValidDNnameConstraintsTest1": VALID,
    "InvalidDNnameConstraintsTest2": Check.PATH_CONSTRAINTS,
    "InvalidDNnameConstraintsTest3": Check.PATH_CONSTRAINTS,
    "ValidDNnameConstraintsTest4": VALID,
    "ValidDNnameConstraintsTest5": VALID,
    "ValidDNnameConstraintsTest6": VALID,
    "InvalidDNnameConstraintsTest7": Check.PATH_CONSTRAINTS,
    "InvalidDNnameConstraintsTest8": Check.PATH_CONSTRAINTS,
    "InvalidDNnameConstraintsTest9": Check.PATH_CONSTRAINTS,
    "InvalidDNnameConstraintsTest10": Check.PATH_CONSTRAINTS,
    "ValidDNnameConstraintsTest11": VALID,
    "InvalidDNnameConstraintsTest12": Check.PATH_CONSTRAINTS,
    "InvalidDNnameConstraintsTest13": Check.PATH_CONSTRAINTS,
    "ValidDNnameConstraintsTest14": VALID,
    "InvalidDNnameConstraintsTest15": Check.PATH_CONSTRAINTS,
    "InvalidDNnameConstraintsTest16": Check.PATH_CONSTRAINTS,
    "InvalidDNnameConstraintsTest17": Check.PATH_CONSTRAINTS,
    "ValidDNnameConstraintsTest18": VALID,
    "ValidSelfIssuedDNnameConstraintsTest19": VALID,
    "InvalidSelfIssuedDNnameConstraintsTest20": Check.PATH_CONSTRAINTS,
    "ValidRFC822nameConstraintsTest21": VALID,
    "InvalidRFC822nameConstraintsTest22": Check.PATH_CONSTRAINTS,
    "ValidRFC822nameConstraintsTest23": VALID,
    "InvalidRFC822nameConstraintsTest24": Check.PATH_CONSTRAINTS,
    "ValidRFC822nameConstraintsTest25": VALID,
    "InvalidRFC822nameConstraintsTest26": Check.PATH_CONSTRAINTS,
    "ValidDNandRFC822nameConstraintsTest27": VALID,
    "InvalidDNandRFC822nameConstraintsTest28": Check.PATH_CONSTRAINTS,
    "InvalidDNandRFC822nameConstraintsTest29": Check.PATH_CONSTRAINTS,
    "ValidDNSnameConstraintsTest30": VALID,
    "InvalidDNSnameConstraintsTest31": Check.PATH_CONSTRAINTS,
    "ValidDNSnameConstraintsTest32": VALID,
    "InvalidDNSnameConstraintsTest33": Check.PATH_CONSTRAINTS,
    "ValidURInameConstraintsTest34": VALID,
    "InvalidURInameConstraintsTest35": Check.PATH_CONSTRAINTS,
    "ValidURInameConstraintsTest36": VALID,
    "InvalidURInameConstraintsTest37": Check.PATH_CONSTRAINTS,
    "InvalidDNSnameConstraintsTest38": Check.PATH_CONSTRAINTS,
    # 4.14 distribution points
    "ValiddistributionPointTest1": VALID,
    "InvaliddistributionPointTest2": Check.REVOKED,
    "InvaliddistributionPointTest3": Check.REVOCATION_UNKNOWN,
    "ValiddistributionPointTest4": VALID,
    "ValiddistributionPointTest5": VALID,
    "InvaliddistributionPointTest6": Check.REVOKED,
    "ValiddistributionPointTest7": VALID,
    "InvaliddistributionPointTest8": Check.REVOCATION_UNKNOWN,
    "InvaliddistributionPointTest9": Check.REVOCATION_UNKNOWN,
    "ValidNoissuingDistributionPointTest10": VALID,
    "InvalidonlyContainsUserCertsCRLTest11": Check.REVOCATION_UNKNOWN,
    "InvalidonlyContainsCACertsCRLTest12": Check.REVOCATION_UNKNOWN,
    "ValidonlyContainsCACertsCRLTest13": VALID,
    "InvalidonlyContainsAttributeCertsTest14": Check.REVOCATION_UNKNOWN,
    "InvalidonlySomeReasonsTest15": Check.REVOKED,
    "InvalidonlySomeReasonsTest16": Check.REVOKED,
    "InvalidonlySomeReasonsTest17": Check.REVOCATION_UNKNOWN,
    "ValidonlySomeReasonsTest18": VALID,
    "ValidonlySomeReasonsTest19": VALID,
    "InvalidonlySomeReasonsTest20": Check.REVOKED,
    "InvalidonlySomeReasonsTest21": Check.REVOKED,
    "ValidIDPwithindirectCRLTest22": VALID,
    "InvalidIDPwithindirectCRLTest23": Check.REVOKED,
    "ValidIDPwithindirectCRLTest24": VALID,
    "ValidIDPwithindirectCRLTest25": VALID,
    "InvalidIDPwithindirectCRLTest26": Check.REVOCATION_UNKNOWN,
    "InvalidcRLIssuerTest27": Check.REVOCATION_UNKNOWN,
    "ValidcRLIssuerTest28": VALID,
    "ValidcRLIssuerTest29": VALID,
    "ValidcRLIssuerTest30": VALID,
    "InvalidcRLIssuerTest31": Check.REVOKED,
    "InvalidcRLIssuerTest32": Check.REVOKED,
    "ValidcRLIssuerTest33": VALID,
    "InvalidcRLIssuerTest34": Check.REVOKED,
    "InvalidcRLIssuerTest35": Check.REVOCATION_UNKNOWN,
    # 4.15 delta CRLs
    "InvaliddeltaCRLIndicatorNoBaseTest1": Check.REVOCATION_UNKNOWN,
    "ValiddeltaCRLTest2": VALID,
    "InvaliddeltaCRLTest3": Check.REVOKED,
    "InvaliddeltaCRLTest4": Check.REVOKED,
    "ValiddeltaCRLTest5": VALID,
    "InvaliddeltaCRLTest6": Check.REVOKED,
    "ValiddeltaCRLTest7": VALID,
    "ValiddeltaCRLTest8": VALID,
    "InvaliddeltaCRLTest9": Check.REVOKED,
    "InvaliddeltaCRLTest10": Check.REVOCATION_UNKNOWN,
    # 4.16 private certificate extensions
    "ValidUnknownNotCriticalCertificateExtensionTest1": VALID,
    "InvalidUnknownCriticalCertificateExtensionTest2": Check.PATH_CONSTRAINTS,
}


def _data() -> Path:
    try:
        import cryptography_vectors
    except ImportError:
        unavailable("cryptography-vectors is not installed (pip install -e '.[dev]' brings it): it ships NIST PKITS")
    return Path(cryptography_vectors.__file__).parent / "x509" / "PKITS_data"


@cache
def _anchor_and_crls() -> tuple[CertRef, tuple[CachedCrl, ...]]:
    """Parsed once for the run, as the gateway parses a supplied CRL once for its life."""
    data = _data()
    anchor = CertRef((data / "certs" / "TrustAnchorRootCertificate.crt").read_bytes())
    return anchor, tuple(parse_crl(p.read_bytes(), "supplied") for p in sorted((data / "crls").glob("*.crl")))


def _service(anchor: CertRef, crls: tuple[CachedCrl, ...]) -> TrustService:
    """A service per message: no decision, fetch failure or CRL issuer validation carried over."""
    revocation = RevocationCache(OfflineFetcher())
    for entry in crls:
        revocation.add_crl(entry)
    return TrustService(StaticAnchors((anchor,)), OfflineFetcher(), DomainPolicies(POLICY), revocation=revocation)


def test_the_table_covers_every_section_4_message():
    shipped = {p.stem.removeprefix("Signed") for p in (_data() / "smime").glob("Signed*.eml")}
    assert shipped == set(EXPECTED)


# A PKITS certificate has a negative serial number on purpose (4.4.15); cryptography
# warns that a future release will refuse to parse it, wherever it is loaded first.
_NEGATIVE_SERIAL = pytest.mark.filterwarnings("ignore:Parsed a serial number which wasn't positive")


@_NEGATIVE_SERIAL
@pytest.mark.parametrize(("name", "expected"), list(EXPECTED.items()), ids=list(EXPECTED))
async def test_pkits(name: str, expected: Check | Refused | None) -> None:
    anchor, crls = _anchor_and_crls()
    raw = (_data() / "smime" / f"Signed{name}.eml").read_bytes()
    opened = open_inbound(raw, [], at=AT, require_encryption=False)
    if isinstance(expected, Refused):
        assert not isinstance(opened, Opened), f"{name}: {expected.why}, yet it opened"
        assert opened.reason in expected.reasons, opened
        return
    assert isinstance(opened, Opened), opened
    verdict = await _service(anchor, crls).check_inbound(opened, recipient=RECIPIENT, at=AT, binding=False)
    decision = verdict.decision
    if expected is VALID:
        assert decision.trusted, decision
        assert decision.path[-1] == anchor
        return
    assert decision.failure is not None, f"{name} should fail {expected.value}, yet: {decision}"
    assert decision.failure.check is expected, decision
    # what can change later is only the status that could not be established
    assert decision.temporary is (expected is Check.REVOCATION_UNKNOWN)


@pytest.mark.parametrize(
    ("name", "check", "certificate"),
    [
        ("InvalidCASignatureTest2", Check.CHAIN, "BadSignedCACert"),
        ("InvalidEESignatureTest3", Check.CHAIN, "InvalidEESignatureTest3EE"),
        ("InvalidcAFalseTest2", Check.PATH_CONSTRAINTS, "basicConstraintsCriticalcAFalseCACert"),
        ("InvalidBasicSelfIssuedCRLSigningKeyTest8", Check.PATH_CONSTRAINTS, "BasicSelfIssuedCRLSigningKeyCRLCert"),
        ("InvalidkeyUsageCriticalkeyCertSignFalseTest1", Check.PATH_CONSTRAINTS, "keyUsageCriticalkeyCertSignFalseCACert"),
        ("DifferentPoliciesTest8", Check.PATH_CONSTRAINTS, "PoliciesP12subsubCAP1P2Cert"),
        ("DifferentPoliciesTest9", Check.PATH_CONSTRAINTS, "PoliciesP123subsubsubCAP12P2P1Cert"),
        ("InvalidDNnameConstraintsTest2", Check.PATH_CONSTRAINTS, "InvalidDNnameConstraintsTest2EE"),
        ("InvalidRevokedCATest2", Check.REVOKED, "RevokedsubCACert"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
async def test_the_failing_certificate_is_named(name: str, check: Check, certificate: str) -> None:
    """Which certificate failed: a bad signature is found on the path itself, but
    pyhanko names an intermediate's position only in its message ("intermediate
    certificate 2"), which trust.validation reads. These cases pin that reading."""
    anchor, crls = _anchor_and_crls()
    raw = (_data() / "smime" / f"Signed{name}.eml").read_bytes()
    opened = open_inbound(raw, [], at=AT, require_encryption=False)
    assert isinstance(opened, Opened), opened
    verdict = await _service(anchor, crls).check_inbound(opened, recipient=RECIPIENT, at=AT, binding=False)
    failure = verdict.decision.failure
    assert failure is not None and failure.check is check, verdict.decision
    assert failure.certificate.der == (_data() / "certs" / f"{certificate}.crt").read_bytes(), failure.certificate.subject
