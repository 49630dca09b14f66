"""The values a trust decision is made of.

A decision says whether one certificate is trusted for one purpose, for one
address or domain, against one anchor set, at one moment; when it is not, it
names the check that failed, the certificate in the chain that failed it, and
whether asking again later could give another answer (``temporary``: the
revocation status could not be established, Direct item 10).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from gateway.core.certs import CertRef

from .anchor_source import Direction


class Purpose(enum.Enum):
    """What the certificate is used for (Direct item 13: key usage per operation)."""

    SIGNING = "signing"
    ENCRYPTION = "encryption"


class Check(enum.Enum):
    """Each check a certificate can fail, in the order they are made."""

    BINDING = "binding"  # Direct item 12
    KEY_USAGE = "key-usage"  # Direct item 13, RFC 5280 4.2.1.3
    EXTENDED_KEY_USAGE = "extended-key-usage"  # RFC 5280 4.2.1.12, RFC 8550 4.4.4
    POLICY_OID = "policy-oid"  # RFC 5280 4.2.1.4, trust community policies
    KEY_SIZE = "key-size"  # Direct item 14
    WEAK_SIGNATURE_ALGORITHM = "weak-signature-algorithm"  # Direct item 14 (SHA-1)
    CHAIN = "chain"  # no path could be built, or a signature in it does not verify
    UNTRUSTED_ROOT = "untrusted-root"  # the path ends at a root that is not an anchor
    EXPIRED = "expired"  # Direct item 9
    NOT_YET_VALID = "not-yet-valid"  # Direct item 9
    PATH_CONSTRAINTS = "path-constraints"  # RFC 5280 6.1: basic constraints, names, policies
    REVOKED = "revoked"  # Direct item 10
    REVOCATION_UNKNOWN = "revocation-unknown"  # Direct item 10: status could not be established
    NO_ANCHORS = "no-anchors"  # the domain has no anchors for that direction
    WEAK_MESSAGE_ALGORITHM = "weak-message-algorithm"  # Direct item 2: SHA-1 digest or 3DES on the message
    PATH_LIMIT = "path-limit"  # path building gave up: more candidate paths than trust.paths.PathLimits allows
    TIME_LIMIT = "time-limit"  # the decision took longer than its time budget (temporary)


@dataclass(frozen=True, slots=True)
class TrustFailure:
    check: Check
    certificate: CertRef
    """Which certificate in the chain failed the check."""
    detail: str
    """A sentence for an administrator: what failed and what would fix it."""
    temporary: bool = False
    """True when the same question may get another answer later (SMTP 4.x.x)."""

    def __str__(self) -> str:
        return f"{self.check.value}: {self.detail} ({self.certificate.subject})"


@dataclass(frozen=True, slots=True)
class TrustDecision:
    trusted: bool
    certificate: CertRef
    purpose: Purpose
    bound_to: str
    direction: Direction
    local_domain: str
    anchors: str
    """The anchor set judged against (``AnchorSet.describe()``)."""
    anchors_version: str
    at: datetime
    path: tuple[CertRef, ...] = ()
    """Leaf first, anchor last, when trusted."""
    failure: TrustFailure | None = None
    cached: bool = False
    waived: tuple[TrustFailure, ...] = ()
    """Failures the policy let pass (revocation unknown under ``soft-pass``), for the log."""

    def __post_init__(self) -> None:
        if self.trusted == (self.failure is not None):
            raise ValueError("a trust decision is trusted exactly when it carries no failure")

    @property
    def temporary(self) -> bool:
        return self.failure is not None and self.failure.temporary

    def __str__(self) -> str:
        if self.trusted:
            return (
                f"trusted for {self.purpose.value} as {self.bound_to}: "
                f"{' <- '.join(c.subject for c in self.path)} ({self.anchors})"
            )
        return f"not trusted for {self.purpose.value} as {self.bound_to}: {self.failure} ({self.anchors})"
