"""The values discovery answers with.

``discover`` returns either ``Discovered`` (the certificates to encrypt to, a
tuple of ``CertRef`` that ``seal_outbound`` takes as it is) or ``DoNotSend``
(Direct item 21: no valid certificate anywhere, so the message must not go
out). Both carry the ``SourceReport`` of every place asked and every
``Dropped`` certificate with its reason, for the log, the DSN and
``directgw discover``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from gateway.core.certs import CertRef


class Source(enum.Enum):
    DNS = "dns"
    LDAP = "ldap"


class Binding(enum.Enum):
    """Direct item 16: a certificate names the address, or the whole domain."""

    ADDRESS = "address"
    ORG = "org"


class Outcome(enum.Enum):
    """What one question to one source gave."""

    FOUND = "found"  # one or more certificates
    EMPTY = "empty"  # the name exists, no certificate (DNS NODATA, LDAP entry without one)
    NO_SUCH_NAME = "no-such-name"  # DNS NXDOMAIN, LDAP no entry, no SRV
    UNREACHABLE = "unreachable"  # connection refused, timeout
    ERROR = "error"  # SERVFAIL, REFUSED, a malformed answer, a failed URL fetch

    @property
    def temporary(self) -> bool:
        """Asking again later may give another answer."""
        return self in (Outcome.UNREACHABLE, Outcome.ERROR)


@dataclass(frozen=True, slots=True)
class SourceReport:
    source: Source
    query: str
    """What was asked, readable: ``CERT bob.example.test @127.0.0.1:5353``."""
    outcome: Outcome
    certificates: tuple[CertRef, ...] = ()
    detail: str = ""
    cached: bool = False

    def __str__(self) -> str:
        extra = f" ({self.detail})" if self.detail else ""
        cached = " [cached]" if self.cached else ""
        return f"{self.source.value}: {self.query}: {self.outcome.value}, {len(self.certificates)} certificate(s){extra}{cached}"


class DropReason(enum.Enum):
    EXPIRED = "expired"
    NOT_YET_VALID = "not-yet-valid"
    WRONG_KEY_USAGE = "wrong-key-usage"
    OTHER_BINDING = "bound-to-another-address"
    UNTRUSTED = "untrusted"  # the judge's failure says which check (revoked, chain, anchors...)
    NOT_A_CERTIFICATE = "not-a-certificate"


@dataclass(frozen=True, slots=True)
class Dropped:
    certificate: CertRef | None
    """None when the bytes were not a certificate at all."""
    reason: DropReason
    detail: str
    temporary: bool = False
    where: str = ""

    def __str__(self) -> str:
        who = self.certificate.subject if self.certificate is not None else "(unparseable)"
        return f"{who}: {self.reason.value}: {self.detail}"


@dataclass(frozen=True, slots=True)
class Discovered:
    address: str
    certificates: tuple[CertRef, ...]
    """Encrypt to all of these (Direct item 20); give them to ``seal_outbound``."""
    binding: Binding
    source: Source
    reports: tuple[SourceReport, ...]
    dropped: tuple[Dropped, ...] = ()

    def __post_init__(self) -> None:
        if not self.certificates:
            raise ValueError("Discovered needs at least one certificate; use DoNotSend")

    @property
    def send(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class DoNotSend:
    """Direct item 21: no valid certificate; the sender gets a failure notice instead."""

    address: str
    reports: tuple[SourceReport, ...]
    dropped: tuple[Dropped, ...] = ()

    @property
    def send(self) -> bool:
        return False

    @property
    def temporary(self) -> bool:
        """True when a source could not be asked or a certificate's status could not
        be established, so a later attempt may find one (SMTP 4.x.x, not 5.x.x)."""
        return any(r.outcome.temporary for r in self.reports) or any(d.temporary for d in self.dropped)

    def explain(self) -> str:
        lines = [f"no usable certificate for {self.address}:"]
        lines += [f"  asked {r}" for r in self.reports]
        lines += [f"  dropped {d}" for d in self.dropped]
        return "\n".join(lines)


DiscoveryResult = Discovered | DoNotSend
