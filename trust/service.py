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
EKU, policy OIDs, key and signature algorithm), then for each candidate path
(``paths.PathSearch``, bounded by ``PathLimits``) the CA certificates' keys
and algorithms, then validation, then revocation; the first path that passes
wins. Concurrent identical questions share one computation (``SingleFlight``)
and the whole decision has a time budget.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from gateway.common.single_flight import SingleFlight
from gateway.core.certs import CertRef, utc
from gateway.core.outcomes import Opened

from . import direct
from .anchor_source import AnchorSet, AnchorSource, Direction
from .cache import DecisionCache
from .chain import IssuerCache
from .fetch import Fetcher
from .inbound import InboundVerdict, check_inbound
from .paths import DEFAULT_LIMITS, Limit, PathLimits, PathSearch
from .policy import DomainPolicies, Policy, PolicyLookup, RevocationUnknown
from .revinfo import RevocationCache
from .types import Check, Purpose, TrustDecision, TrustFailure
from .validation import PathOutcome, validate

SOFT_PASS_TTL_SECONDS = 300
"""A decision that passed only because revocation status was unknown and the
policy says soft-pass is reused for at most five minutes."""


@dataclass(frozen=True, slots=True)
class _Tried:
    """One candidate path and what became of it."""

    chain: tuple[CertRef, ...]
    outcome: PathOutcome


class TrustService:
    """Built once by the composition root; shared by every inbound and outbound task.

    ``fetcher`` reaches AIA, CRL and OCSP URLs (``HttpFetcher``; ``OfflineFetcher``
    for offline use); ``policies`` gives each local domain's ``Policy``;
    ``supplied_crls`` are CRLs the administrator gave (DER or PEM), honoured for
    their issuer's certificates whether or not those name a distribution point;
    ``limits`` bounds the work of one decision.
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
        limits: PathLimits = DEFAULT_LIMITS,
    ) -> None:
        self._anchors = anchors
        self._policies: PolicyLookup = policies or DomainPolicies()
        self.cache = cache if cache is not None else DecisionCache()
        self.revocation = revocation or RevocationCache(fetcher, supplied_crls)
        self.issuers = IssuerCache(fetcher)
        self.limits = limits
        self._flights: SingleFlight[Hashable, tuple[TrustDecision, datetime]] = SingleFlight()
        self.paths_tried = 0
        """Candidate paths validated, over the service's life (tests count work with it)."""

    @property
    def decisions_computed(self) -> int:
        """Decisions computed rather than taken from the cache or shared."""
        return self._flights.started

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

        async def compute() -> tuple[TrustDecision, datetime]:
            made = await self._decide_in_time(cert, purpose, bound_to, anchor_set, policy, at, intermediates, binding)
            self.cache.put(key, *made)
            return made

        decision, expires = await self._flights.run(key, compute)
        if decision.at == at:
            return decision
        if decision.at <= at < expires:
            # another caller's computation, made for a moment whose answer covers ours
            return replace(decision, at=at, cached=True)
        decision, _ = await self._decide_in_time(cert, purpose, bound_to, anchor_set, policy, at, intermediates, binding)
        return decision

    async def _decide_in_time(
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
        try:
            async with asyncio.timeout(self.limits.decision_seconds):
                return await self._decide(cert, purpose, bound_to, anchor_set, policy, at, intermediates, binding)
        except TimeoutError:
            # Temporary: what took long was waiting on the network (fetches are
            # bounded in count and size), which may answer in time later.
            failure = TrustFailure(
                Check.TIME_LIMIT,
                cert,
                f"the decision took longer than its budget of {self.limits.decision_seconds:g} s "
                "(issuer, CRL or OCSP servers too slow); it will be retried",
                temporary=True,
            )
            return _decision(cert, purpose, bound_to, anchor_set, at, failure), at + policy.decision_ttl

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
            return _decision(cert, purpose, bound_to, anchor_set, at, failure, path, waived)

        ttl_end = at + policy.decision_ttl
        anchors = anchor_set.certificates
        if not anchors:
            detail = f"there are no {anchor_set.direction.value} anchors for {anchor_set.domain}"
            return result(TrustFailure(Check.NO_ANCHORS, cert, detail)), ttl_end
        failure = direct.check_leaf(cert, purpose=purpose, bound_to=bound_to, binding=binding, policy=policy)
        if failure is not None:
            return result(failure), ttl_end

        search = PathSearch(cert, intermediates, anchors, self.issuers, at, self.limits)
        tried: list[_Tried] = []
        async for chain in search.paths():
            self.paths_tried += 1
            failure = direct.check_issuers([c for c in chain[1:] if c not in anchors], policy)
            if failure is not None:
                tried.append(_Tried(chain, PathOutcome((), failure, None)))
                continue
            outcome = await validate(
                cert, chain_hint=chain, pool=search.building_pool(chain), anchors=anchors, at=at, policy=policy,
                revocation=self.revocation, fetch_problems=search.problems, crl_issuers=search.pool,
            )
            tried.append(_Tried(chain, outcome))
            if outcome.failure is None:
                break
        if search.limit is not None and not (tried and tried[-1].outcome.failure is None):
            return result(_limit_failure(cert, search, tried)), ttl_end
        if not tried:
            # no candidate reached an anchor: the validator says why, from the first dead end
            chain = search.dead_end or (cert,)
            outcome = await validate(
                cert, chain_hint=chain, pool=search.building_pool(chain), anchors=anchors, at=at, policy=policy,
                revocation=self.revocation, fetch_problems=search.problems, crl_issuers=search.pool,
            )
            tried.append(_Tried(chain, outcome))
        # the path that passed; else, as pyhanko-certvalidator reports, a failure
        # other than a bad signature when one path had one
        best = next((t for t in tried if t.outcome.failure is None), None) or next(
            (t for t in tried if t.outcome.failure is not None and t.outcome.failure.check is not Check.CHAIN), tried[0]
        )
        outcome = best.outcome
        expires = min([ttl_end, *(c.not_after for c in (outcome.path or best.chain))])
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


def _decision(
    cert: CertRef,
    purpose: Purpose,
    bound_to: str,
    anchor_set: AnchorSet,
    at: datetime,
    failure: TrustFailure | None,
    path: tuple[CertRef, ...] = (),
    waived: tuple[TrustFailure, ...] = (),
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


def _limit_failure(cert: CertRef, search: PathSearch, tried: Sequence[_Tried]) -> TrustFailure:
    """Permanent: the same certificates give the same search, so asking again
    cannot help; the sender has to send a plainer chain (RFC 4158 section 8
    describes such deliberately costly inputs)."""
    limits = search.limits
    if search.limit is Limit.PATHS:
        bound = f"the {limits.paths} candidate paths allowed were tried and more remained"
    else:
        bound = f"{limits.expansions} steps of path building were taken and candidates remained"
    first = next((t.outcome.failure for t in tried if t.outcome.failure is not None), None)
    seen = f"; the first path tried failed: {first.check.value}, {first.detail}" if first is not None else ""
    return TrustFailure(
        Check.PATH_LIMIT,
        cert,
        f"no trusted path found within the path-building limits: {bound} "
        f"(the certificates carried offer too many alternatives){seen}",
    )
