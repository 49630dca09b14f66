"""Trust decisions: RFC 5280 path validation, revocation and Direct certificate policy.

Build one ``TrustService`` at the composition root::

    trust, fetcher = build_trust_service(config.section("trust"), anchor_store)
    # or by hand: TrustService(anchor_store, HttpFetcher(), policies_from_mapping(table))
    decision = await trust.decide(cert, purpose=Purpose.ENCRYPTION, bound_to="bob@b.test",
                                  local_domain="a.test", direction=Direction.OUTGOING, at=now)
    verdict = await trust.check_inbound(opened, recipient="bob@b.test", at=now)
"""

from .cache import DecisionCache
from .fetch import Fetcher, FetchError, FetchProblem, HttpFetcher, OfflineFetcher
from .inbound import Accepted, InboundVerdict, Rejected
from .policy import (
    DEFAULT_POLICY,
    DomainPolicies,
    Policy,
    PolicyError,
    PolicyLookup,
    RevocationUnknown,
    policies_from_mapping,
    policy_from_mapping,
)
from .revinfo import RevocationCache
from .service import TrustService
from .settings import TrustSettings, build_trust_service, settings_from_mapping
from .types import Check, Purpose, TrustDecision, TrustFailure

__all__ = [
    "DEFAULT_POLICY", "Accepted", "Check", "DecisionCache", "DomainPolicies", "FetchError", "FetchProblem",
    "Fetcher", "HttpFetcher", "InboundVerdict", "OfflineFetcher", "Policy", "PolicyError", "PolicyLookup",
    "Purpose", "Rejected", "RevocationCache", "RevocationUnknown", "TrustDecision", "TrustFailure",
    "TrustService", "TrustSettings", "build_trust_service", "policies_from_mapping", "policy_from_mapping",
    "settings_from_mapping",
]
