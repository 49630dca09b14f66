"""RFC 5280 path validation and revocation checking, through pyhanko-certvalidator.

How it works, and why this way:

1. One ``ValidationContext`` per decision, built from exactly the decision's
   certificates (those the message carried plus those fetched through AIA)
   and the anchor set, parsed fresh from their original DER (asn1crypto can
   re-encode a reused certificate differently, its issue #249). A context
   shared across decisions grew slower and once accepted a CRL with a bad
   signature (shared/specs/direct.md, library notes).
2. pyhanko builds and validates the path (RFC 5280 6.1: signatures, validity
   at ``at`` for every certificate, basic constraints, name constraints,
   policy processing) with its own revocation checking switched off...
3. ...because its revocation modes decide per position (end entity or CA),
   and its ``hard-fail`` mode ignores a CRL we hold for a certificate that
   names no distribution point. Instead, for each certificate on the path we
   collect what we hold or can fetch (``RevocationCache.lookup``) and run
   pyhanko's own RFC 5280 6.3 CRL and RFC 6960 OCSP processing on it
   (``verify_crl``, ``verify_ocsp_response``) in a second context that holds
   that revocation information. Revoked anywhere on the path: rejected.
   Status unknown for a certificate that declares a source, or for which a
   held CRL or answer does not validate: ``REVOCATION_UNKNOWN``.
4. Under ``revocation = "required"`` every certificate below the anchor must
   be shown not revoked, declared source or not. The second context then
   holds every CRL of the certificate's issuer and of the cRLIssuers it names,
   and pyhanko's 6.3 processing combines them: base with delta (6.3.3 (c)),
   indirect CRLs (6.3.3 (b)(2)), reason partitions until all reasons are
   covered (6.3.3 (l)), and validates each CRL issuer's own path *with*
   revocation required (6.3.3 (f)), so a CRL signing key that is itself
   revoked does not count. The certificates of the main path are recorded as
   validated in that context: they were, and asn1crypto cannot re-encode
   some of them faithfully (a uniqueIdentifier's unused bits) once parsed,
   so validating them twice could fail for nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import rsa
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import (
    CRLNoMatchesError,
    CRLValidationError,
    DisallowedAlgorithmError,
    ExpiredError,
    InvalidCertificateError,
    NotYetValidError,
    OCSPNoMatchesError,
    OCSPValidationError,
    PathBuildingError,
    PathValidationError,
    RevokedError,
    ValidationError,
)
from pyhanko_certvalidator.path import ValidationPath
from pyhanko_certvalidator.policy_decl import (
    NO_REVOCATION,
    REQUIRE_REVINFO,
    CertRevTrustPolicy,
    DisallowWeakAlgorithmsPolicy,
)
from pyhanko_certvalidator.revinfo.validate_crl import verify_crl
from pyhanko_certvalidator.revinfo.validate_ocsp import verify_ocsp_response

from gateway.core.certs import DER_ERRORS, CertRef

from .fetch import FetchError, FetchProblem
from .policy import Policy, RevocationRequirement
from .revinfo import CachedCrl, RevocationCache, RevocationInfo
from .types import Check, TrustFailure

_POSITION = re.compile(r"intermediate certificate (\d+)")


@dataclass(frozen=True, slots=True)
class PathOutcome:
    path: tuple[CertRef, ...]
    """Leaf first, anchor last; empty when no path was validated."""
    failure: TrustFailure | None
    expires: datetime | None
    """The earliest nextUpdate of the revocation information used."""


@dataclass(frozen=True, slots=True)
class RevocationFinding:
    certificate: CertRef
    revoked: bool
    detail: str


class _Parsed:
    """asn1crypto views of one decision's certificates, mapped back to ``CertRef``."""

    def __init__(self, refs: Sequence[CertRef]) -> None:
        self.objects: dict[bytes, asn1_x509.Certificate] = {}
        self._by_id: dict[int, CertRef] = {}
        self._by_serial: dict[bytes, CertRef] = {}
        for ref in refs:
            if ref.der in self.objects:
                continue
            obj = asn1_x509.Certificate.load(ref.der)
            self.objects[ref.der] = obj
            self._by_id[id(obj)] = ref
            self._by_serial[obj.issuer_serial] = ref

    def of(self, ref: CertRef) -> asn1_x509.Certificate:
        return self.objects[ref.der]

    def ref(self, obj: asn1_x509.Certificate) -> CertRef:
        found = self._by_id.get(id(obj)) or self._by_serial.get(obj.issuer_serial)
        return found if found is not None else CertRef(obj.dump())


def _weak_digests(policy: Policy) -> frozenset[str]:
    return frozenset({"md2", "md5"} if policy.allow_sha1 else {"md2", "md5", "sha1"})


def _algorithm_policy(policy: Policy) -> DisallowWeakAlgorithmsPolicy:
    return DisallowWeakAlgorithmsPolicy(_weak_digests(policy), rsa_key_size_threshold=policy.min_rsa_bits)


def _context(
    parsed: _Parsed,
    anchors: Sequence[CertRef],
    others: Sequence[CertRef],
    at: datetime,
    policy: Policy,
    info: Sequence[RevocationInfo] = (),
) -> ValidationContext:
    # the main context checks no revocation (see the module's note); the
    # revocation context requires it of CRL issuers off the path when the
    # policy requires it of the path
    required = bool(info) and policy.revocation is RevocationRequirement.REQUIRED
    return ValidationContext(
        trust_roots=[parsed.of(a) for a in anchors],
        other_certs=[parsed.of(c) for c in others],
        moment=at,
        crls=list({id(c.parsed): c.parsed for i in info for c in i.crls}.values()),
        ocsps=list({id(o.parsed): o.parsed for i in info for o in i.ocsp}.values()),
        revinfo_policy=CertRevTrustPolicy(REQUIRE_REVINFO if required else NO_REVOCATION),
        algorithm_usage_policy=_algorithm_policy(policy),
        # RFC 5280 6.1.3 (a)(2): valid at the time of interest, no slack
        time_tolerance=timedelta(0),
    )


def _failing_cert(exc: PathValidationError, parsed: _Parsed, leaf: CertRef) -> CertRef:
    """The certificate a path error is about.

    pyhanko's errors say whether it was the end entity (``is_ee_cert``) but
    give an intermediate's position only in the message ("intermediate
    certificate 2"): the one message-text reading left here, pinned by
    tests/test_trust_pkits.py::test_the_failing_certificate_is_named."""
    if exc.is_ee_cert and not exc.is_side_validation:
        return leaf
    path = exc.current_path
    m = _POSITION.search(str(exc))
    if m:
        try:
            return parsed.ref(path[int(m.group(1))])
        except (IndexError, KeyError):
            pass
    return leaf


def _issued(path: ValidationPath, parsed: _Parsed) -> list[tuple[CertRef, CertRef]]:
    """(issuer, certificate) along ``path``, top down, as the DER they came in."""
    certs = [parsed.ref(c) for c in path.iter_certs(include_root=True)]
    return list(itertools.pairwise(certs))


def _signature_verifies(cert: CertRef, issuer: CertRef) -> bool:
    """RFC 5280 6.1.3 (a)(1), checked again on the original DER with cryptography."""
    try:
        cert.x509.verify_directly_issued_by(issuer.x509)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def _hash_name(cert: CertRef) -> str | None:
    try:
        algorithm = cert.x509.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return None
    return algorithm.name if algorithm is not None else None


def _disallowed(exc: DisallowedAlgorithmError, parsed: _Parsed, leaf: CertRef, policy: Policy) -> TrustFailure:
    """A weak digest on a certificate, or an issuer's RSA key below the policy's
    size (Direct item 14). Direct's own checks see the leaf and the CA
    certificates first; what reaches here is mostly a small anchor key."""
    weak = _weak_digests(policy)
    for issuer, cert in _issued(exc.current_path, parsed):
        if _hash_name(cert) in weak:
            return TrustFailure(Check.WEAK_SIGNATURE_ALGORITHM, cert, str(exc))
        key = issuer.x509.public_key()
        if isinstance(key, rsa.RSAPublicKey) and key.key_size < policy.min_rsa_bits:
            detail = (
                f"the RSA key of {issuer.subject}, which signed {cert.subject}, is {key.key_size} bits; "
                f"the policy requires {policy.min_rsa_bits}"
            )
            return TrustFailure(Check.KEY_SIZE, issuer, detail)
    return TrustFailure(Check.WEAK_SIGNATURE_ALGORITHM, _failing_cert(exc, parsed, leaf), str(exc))


def _map_validation_error(exc: ValidationError, parsed: _Parsed, leaf: CertRef, policy: Policy) -> TrustFailure:
    """pyhanko's error, classified by its class and by the path it carries."""
    if isinstance(exc, ExpiredError):
        cert = next(
            (parsed.ref(c) for c in exc.current_path if c["tbs_certificate"]["validity"]["not_after"].native == exc.expired_dt),
            _failing_cert(exc, parsed, leaf),
        )
        return TrustFailure(Check.EXPIRED, cert, f"the certificate expired on {exc.expired_dt:%Y-%m-%d %H:%M:%SZ}")
    if isinstance(exc, NotYetValidError):
        cert = next(
            (parsed.ref(c) for c in exc.current_path if c["tbs_certificate"]["validity"]["not_before"].native == exc.valid_from),
            _failing_cert(exc, parsed, leaf),
        )
        return TrustFailure(Check.NOT_YET_VALID, cert, f"the certificate is not valid before {exc.valid_from:%Y-%m-%d %H:%M:%SZ}")
    if isinstance(exc, DisallowedAlgorithmError):
        return _disallowed(exc, parsed, leaf, policy)
    if isinstance(exc, PathValidationError):
        # pyhanko raises the plain class both for a signature that does not
        # verify and for a constraint (basic, name, policy, key usage): which
        # one is decided on the path itself, not on the message
        forged = next((c for i, c in _issued(exc.current_path, parsed) if not _signature_verifies(c, i)), None)
        if forged is not None:
            return TrustFailure(Check.CHAIN, forged, str(exc))
        return TrustFailure(Check.PATH_CONSTRAINTS, _failing_cert(exc, parsed, leaf), str(exc))
    return TrustFailure(Check.CHAIN, leaf, str(exc))


def _no_path(chain: Sequence[CertRef], anchors: Sequence[CertRef], problems: Sequence[FetchError] = ()) -> TrustFailure:
    top = chain[-1]
    extra = "".join(f"; fetching {p.url} failed: {p.problem.value}, {p.detail}" for p in problems)
    # an issuer we could not fetch because its server is down may be fetched later
    temporary = any(p.problem in (FetchProblem.UNREACHABLE, FetchProblem.TIMEOUT) for p in problems)
    if top.subject_der == top.issuer_der and top not in anchors:
        return TrustFailure(
            Check.UNTRUSTED_ROOT,
            top,
            f"the chain ends at {top.subject}, which is not among the anchors{extra}",
        )
    return TrustFailure(
        Check.CHAIN,
        top,
        f"the chain stops at {top.subject}: its issuer {top.issuer} is not an anchor, "
        f"and no certificate of it was carried or fetched{extra}",
        temporary=temporary,
    )


async def validate(
    leaf: CertRef,
    *,
    chain_hint: Sequence[CertRef],
    pool: Sequence[CertRef],
    anchors: Sequence[CertRef],
    at: datetime,
    policy: Policy,
    revocation: RevocationCache,
    fetch_problems: Sequence[FetchError] = (),
    crl_issuers: Sequence[CertRef] = (),
) -> PathOutcome:
    """Validate ``leaf`` to one of ``anchors`` through ``pool``, then check revocation.

    ``fetch_problems`` are the AIA fetches that failed while gathering ``pool``.
    ``crl_issuers`` are further certificates given to the revocation step only:
    a CA's separate CRL-signing certificate, or its old or new self-issued one
    (RFC 5280 6.3.3 (f); PKITS 4.4.19, 4.5.6), often shares its name with an
    issuer on the path, so path building is not shown it."""
    parsed = _Parsed([leaf, *pool, *crl_issuers, *anchors])
    others = [c for c in pool if c not in anchors]
    context = _context(parsed, anchors, others, at, policy)
    validator = CertificateValidator(parsed.of(leaf), validation_context=context)
    try:
        vpath = await validator.async_validate_path()
    except InvalidCertificateError:
        return PathOutcome((), _no_path([leaf], anchors), None)
    except PathBuildingError:
        return PathOutcome((), _no_path(chain_hint, anchors, fetch_problems), None)
    except ValidationError as exc:
        return PathOutcome((), _map_validation_error(exc, parsed, leaf, policy), None)

    path = tuple(parsed.ref(c) for c in reversed(list(vpath.iter_certs(include_root=True))))
    # RFC 5280 leaves the anchor's own dates to the relying party; Direct item 9
    # says "anywhere in the chain", so an expired anchor fails too.
    anchor = path[-1]
    if at > anchor.not_after:
        return PathOutcome(path, TrustFailure(Check.EXPIRED, anchor, f"the trust anchor expired on {anchor.not_after:%Y-%m-%d %H:%M:%SZ}"), None)
    if at < anchor.not_before:
        return PathOutcome(path, TrustFailure(Check.NOT_YET_VALID, anchor, f"the trust anchor is not valid before {anchor.not_before:%Y-%m-%d %H:%M:%SZ}"), None)
    others = list(dict.fromkeys([*others, *(c for c in crl_issuers if c not in anchors)]))
    return await _check_revocation(path, vpath, parsed, anchors, others, at, policy, revocation)


async def _check_revocation(
    path: tuple[CertRef, ...],
    vpath: ValidationPath,
    parsed: _Parsed,
    anchors: Sequence[CertRef],
    others: Sequence[CertRef],
    at: datetime,
    policy: Policy,
    revocation: RevocationCache,
) -> PathOutcome:
    # The anchor itself is trusted as configured (RFC 5280 6.1.1 (d)); every
    # certificate below it is checked, top down (Direct item 10).
    subjects = [c for c in path if c not in anchors]
    # fetched side by side: a decision waits for the slowest source, not the sum
    infos = await asyncio.gather(
        *(revocation.lookup(cert, path[i + 1] if i + 1 < len(path) else None, at) for i, cert in enumerate(subjects))
    )
    context = _context(parsed, anchors, others, at, policy, infos)
    for cert in subjects:
        obj = parsed.of(cert)
        with contextlib.suppress(LookupError):
            context.record_validation(obj, vpath.truncate_to_issuer_and_append(obj))
    required = policy.revocation is RevocationRequirement.REQUIRED
    findings: list[RevocationFinding] = []
    for i in reversed(range(len(subjects))):
        cert, info = subjects[i], infos[i]
        issuer = path[i + 1] if i + 1 < len(path) else None
        finding = await _status(cert, issuer, info, vpath, parsed, context, anchors, at, required)
        if finding is not None:
            findings.append(finding)
    expires = min((i.expires for i in infos if i.expires), default=None)
    revoked = next((f for f in findings if f.revoked), None)
    if revoked is not None:
        return PathOutcome(path, TrustFailure(Check.REVOKED, revoked.certificate, revoked.detail), expires)
    if findings:
        f = findings[0]
        return PathOutcome(path, TrustFailure(Check.REVOCATION_UNKNOWN, f.certificate, f.detail, temporary=True), expires)
    return PathOutcome(path, None, expires)


async def _status(
    cert: CertRef,
    issuer: CertRef | None,
    info: RevocationInfo,
    vpath: ValidationPath,
    parsed: _Parsed,
    context: ValidationContext,
    anchors: Sequence[CertRef],
    at: datetime,
    required: bool,
) -> RevocationFinding | None:
    """None when the certificate is known not revoked, or (unless ``required``)
    nothing declares or holds its status."""
    obj = parsed.of(cert)
    try:
        sub_path = vpath.truncate_to_issuer_and_append(obj)
    except LookupError:
        sub_path = vpath
    problems: list[str] = [str(p) for p in info.problems]
    known_good = False
    # Both sources are consulted when both are held: a CA may revoke on its
    # CRL before its OCSP responder catches up, and revoked by either is revoked.
    if info.ocsp:
        try:
            await verify_ocsp_response(obj, sub_path, context)
            known_good = True
        except RevokedError as exc:
            return RevocationFinding(cert, True, _revoked_detail("OCSP", exc))
        except OCSPNoMatchesError:
            pass
        except OCSPValidationError as exc:
            problems.append(f"OCSP: {exc}{_failures(exc)}")
    if info.crls and issuer is not None and issuer in anchors and issuer.subject_der != issuer.issuer_der:
        # pyhanko cannot place a CRL issuer that is a non-self-signed anchor
        # (an intermediate configured as anchor) on a path; its key is trusted
        # as configured, so check its CRLs directly (RFC 5280 6.3.3 (f)-(i)).
        anchored = anchor_crl_status(cert, issuer, info, at)
        if anchored is not None and anchored.revoked:
            return anchored
        if anchored is None:
            known_good = True
        else:
            problems.append(anchored.detail)
    elif info.crls:
        try:
            await verify_crl(obj, sub_path, context)
            known_good = True
        except RevokedError as exc:
            return RevocationFinding(cert, True, _revoked_detail("CRL", exc))
        except CRLNoMatchesError:
            if (info.declared or required) and not known_good:
                problems.append("no CRL held for the certificate's issuer is in scope for it")
        except CRLValidationError as exc:
            # a CRL that names this issuer but does not validate (bad signature,
            # stale) is never taken as "not revoked"; a good OCSP answer still is
            problems.append(f"CRL: {exc}{_failures(exc)}")
    if known_good:
        return None
    if problems or info.declared or required:
        why = "; ".join(problems) or (
            "no CRL or OCSP answer obtained"
            if info.declared
            else "the certificate names no CRL or OCSP responder and no CRL of its issuer is held, "
            "while revocation = required asks it of every certificate below the anchor"
        )
        return RevocationFinding(cert, False, "revocation status could not be established: " + why)
    return None


def _failures(exc: Exception) -> str:
    failures = getattr(exc, "failures", None) or []
    texts = [str(f[0]) if isinstance(f, tuple) else str(f) for f in failures]
    return f" ({'; '.join(texts)})" if texts else ""


def _revoked_detail(kind: str, exc: RevokedError) -> str:
    return f"revoked on {exc.revocation_dt:%Y-%m-%d %H:%M:%SZ} ({exc.reason.human_friendly}), according to the {kind}"


def anchor_crl_status(cert: CertRef, issuer: CertRef, info: RevocationInfo, at: datetime) -> RevocationFinding | None:
    """Complete CRLs signed by an anchor's key: None when one shows ``cert`` not revoked."""
    problems: list[str] = []
    for held in info.crls:
        try:
            outcome = _anchor_crl(cert, issuer, held, at)
        except DER_ERRORS as exc:
            outcome = f"the CRL from {held.source} cannot be read: {exc}"
        if outcome is None or isinstance(outcome, RevocationFinding):
            return outcome
        if outcome:
            problems.append(outcome)
    return RevocationFinding(cert, False, "; ".join(problems) or "no CRL of the anchor is in scope")


def _anchor_crl(cert: CertRef, issuer: CertRef, held: CachedCrl, at: datetime) -> RevocationFinding | str | None:
    """One CRL of an anchor: a finding, None (not revoked), a problem, or "" (not the anchor's)."""
    meta = x509.load_der_x509_crl(held.der)
    if meta.issuer.public_bytes() != issuer.subject_der:
        return ""
    if not meta.is_signature_valid(issuer.x509.public_key()):  # type: ignore[arg-type]
        return f"the CRL from {held.source} does not verify with the anchor's key"
    critical = [e.oid.dotted_string for e in meta.extensions if e.critical]
    if critical:
        return (
            f"the CRL from {held.source} has critical extensions {critical} "
            "(partitioned or delta CRLs are not supported for intermediate anchors)"
        )
    if meta.last_update_utc > at or (meta.next_update_utc is not None and at > meta.next_update_utc):
        return f"the CRL from {held.source} is not current at {at:%Y-%m-%d %H:%M:%SZ}"
    entry = meta.get_revoked_certificate_by_serial_number(cert.serial)
    if entry is not None and entry.revocation_date_utc <= at:
        try:
            reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.value
        except x509.ExtensionNotFound:
            reason = "unspecified"
        when = f"{entry.revocation_date_utc:%Y-%m-%d %H:%M:%SZ}"
        return RevocationFinding(cert, True, f"revoked on {when} ({reason}), according to the CRL")
    return None
