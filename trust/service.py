"""The trust service: one call decides whether a certificate is trusted.

``TrustService.decide`` is the single place where RFC 5280 and Direct trust
decisions are made, for inbound signers (``check_inbound``) and for
recipients' certificates found by discovery. The anchors depend on the
direction (Direct item 8): inbound, the signer is judged against the
INCOMING anchors of the recipient's local domain and must be bound to the
sender's address; outbound, a recipient's certificate is judged against the
OUTGOING anchors of our sender's local domain and must be bound to the
recipient's address.

Checks run cheapest first: Direct's checks on the leaf (binding, key usage,
EKU, policy OIDs, key and signature algorithm), then the CA certificates'
keys and algorithms, then path building and validation, then revocation.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from anchors.source import AnchorSet, AnchorSource, Direction
from gateway.core.certs import CertRef, utc
from gateway.core.outcomes import Opened

from . import direct
from .cache import DecisionCache
from .chain import IssuerCache, gather
from .fetch import Fetcher
from .inbound import InboundVerdict, check_inbound
from .policy import DomainPolicies, Policy, PolicyLookup, RevocationUnknown
from .revinfo import RevocationCache
from .types import Check, Purpose, TrustDecision, TrustFailure
from .validation import validate

SOFT_PASS_TTL_SECONDS = 300
"""A decision that passed only because revocation status was unknown and the
policy says soft-pass is reused for at most five minutes."""


class TrustService:
    """Built once by the composition root; shared by every inbound and outbound task.

    ``fetcher`` reaches AIA, CRL and OCSP URLs (``HttpFetcher``; ``OfflineFetcher``
    for offline use); ``policies`` gives each local domain's ``Policy``;
    ``supplied_crls`` are CRLs the administrator gave (DER or PEM), honoured for
    their issuer's certificates whether or not those name a distribution point.
    """

    def __init__(
        self,
        anchors: AnchorSource,
        fetcher: Fetcher,
        policies: PolicyLookup | None = None,
        cache: DecisionCache | None = None,
        *,
        supplied_crls: Sequence[bytes] = (),
        revocation: RevocationCache | None = None,
    ) -> None:
        self._anchors = anchors
        self._policies: PolicyLookup = policies or DomainPolicies()
        self.cache = cache if cache is not None else DecisionCache()
        self.revocation = revocation or RevocationCache(fetcher, supplied_crls)
        self.issuers = IssuerCache(fetcher)

    async def decide(
        self,
        cert: CertRef,
        *,
        purpose: Purpose,
        bound_to: str,
        local_domain: str,
        direction: Direction,
        at: datetime,
        intermediates: Sequence[CertRef] = (),
        binding: bool = True,
    ) -> TrustDecision:
        at = utc(at)
        anchor_set = await self._anchors.anchors(local_domain.lower(), direction)
        policy = self._policies.for_domain(local_domain)
        key = (
            cert.sha256,
            tuple(sorted({c.sha256 for c in intermediates})),
            purpose,
            bound_to.lower(),
            binding,
            anchor_set.domain,
            anchor_set.direction,
            anchor_set.version,
            policy,
        )
        hit = self.cache.get(key, at)
        if hit is not None:
            return hit
        decision, expires = await self._decide(cert, purpose, bound_to, anchor_set, policy, at, intermediates, binding)
        self.cache.put(key, decision, expires)
        return decision

    async def _decide(
        self,
        cert: CertRef,
        purpose: Purpose,
        bound_to: str,
        anchor_set: AnchorSet,
        policy: Policy,
        at: datetime,
        intermediates: Sequence[CertRef],
        binding: bool,
    ) -> tuple[TrustDecision, datetime]:
        def result(
            failure: TrustFailure | None, path: tuple[CertRef, ...] = (), waived: tuple[TrustFailure, ...] = ()
        ) -> TrustDecision:
            return TrustDecision(
                trusted=failure is None,
                certificate=cert,
                purpose=purpose,
                bound_to=bound_to,
                direction=anchor_set.direction,
                local_domain=anchor_set.domain,
                anchors=anchor_set.describe(),
                anchors_version=anchor_set.version,
                at=at,
                path=path if failure is None else (),
                failure=failure,
                waived=waived,
            )

        ttl_end = at + policy.decision_ttl
        anchors = anchor_set.certificates
        if not anchors:
            detail = f"there are no {anchor_set.direction.value} anchors for {anchor_set.domain}"
            return result(TrustFailure(Check.NO_ANCHORS, cert, detail)), ttl_end
        failure = direct.check_leaf(cert, purpose=purpose, bound_to=bound_to, binding=binding, policy=policy)
        if failure is not None:
            return result(failure), ttl_end

        chain, pool, problems = await gather(cert, intermediates, anchors, self.issuers, at)
        failure = direct.check_issuers([c for c in chain[1:] if c not in anchors], policy)
        if failure is not None:
            return result(failure), ttl_end

        outcome = await validate(
            cert, chain_hint=chain, pool=pool, anchors=anchors, at=at, policy=policy, revocation=self.revocation,
            fetch_problems=problems,
        )
        expires = min([ttl_end, *(c.not_after for c in (outcome.path or chain))])
        if outcome.expires is not None:
            expires = min(expires, outcome.expires)
        failure = outcome.failure
        if failure is not None and failure.check is Check.NOT_YET_VALID:
            # the same question gets another answer once the certificate starts
            expires = min(expires, failure.certificate.not_before)
        if failure is not None and failure.check is Check.REVOCATION_UNKNOWN:
            if policy.revocation_unknown is RevocationUnknown.SOFT_PASS:
                waived = (TrustFailure(failure.check, failure.certificate, failure.detail, temporary=True),)
                return result(None, outcome.path, waived), min(expires, at + timedelta(seconds=SOFT_PASS_TTL_SECONDS))
            temporary = policy.revocation_unknown is RevocationUnknown.TEMPORARY
            failure = TrustFailure(failure.check, failure.certificate, failure.detail, temporary=temporary)
        return result(failure, outcome.path), expires

    async def check_inbound(
        self, opened: Opened, *, recipient: str, at: datetime, binding: bool = True
    ) -> InboundVerdict:
        """The signer of an opened message against the INCOMING anchors of ``recipient``'s domain."""
        policy = self._policies.for_domain(recipient.rpartition("@")[2])
        return await check_inbound(self, opened, recipient=recipient, at=at, binding=binding, policy=policy)
