"""Trust decisions: RFC 5280 path validation, revocation and Direct certificate policy.

Build one ``TrustService`` at the composition root::

    policies = policies_from_mapping(config.section("trust"))
    fetcher = HttpFetcher()
    trust = TrustService(anchor_store, fetcher, policies)
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
from .types import Check, Purpose, TrustDecision, TrustFailure

__all__ = [
    "DEFAULT_POLICY", "Accepted", "Check", "DecisionCache", "DomainPolicies", "FetchError", "FetchProblem",
    "Fetcher", "HttpFetcher", "InboundVerdict", "OfflineFetcher", "Policy", "PolicyError", "PolicyLookup",
    "Purpose", "Rejected", "RevocationCache", "RevocationUnknown", "TrustDecision", "TrustFailure",
    "TrustService", "policies_from_mapping", "policy_from_mapping",
]
