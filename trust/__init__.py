"""Trust decisions: RFC 5280 path validation, revocation and Direct certificate policy.

Build one ``TrustService`` at the composition root::

    trust, fetcher = build_trust_service(config.section("trust"), anchor_store)
    # or by hand: TrustService(anchor_store, HttpFetcher(), policies_from_mapping(table))
    decision = await trust.decide(cert, purpose=Purpose.ENCRYPTION, bound_to="bob@b.test",
                                  local_domain="a.test", direction=Direction.OUTGOING, at=now)
    verdict = await trust.check_inbound(opened, recipient="bob@b.test", at=now)

The names below are imported on first use: ``anchors`` implements this
package's ``AnchorSource`` interface (``trust.anchor_source``), and importing
that should not load the path validator, aiohttp and pyhanko with it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .anchor_source import AnchorSet, AnchorSource, Direction
    from .cache import DecisionCache
    from .fetch import Destinations, Fetcher, FetchError, FetchProblem, HttpFetcher, OfflineFetcher
    from .inbound import Accepted, InboundVerdict, Rejected
    from .paths import PathLimits
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

_WHERE = {
    ".anchor_source": ("AnchorSet", "AnchorSource", "Direction"),
    ".cache": ("DecisionCache",),
    ".fetch": ("Destinations", "Fetcher", "FetchError", "FetchProblem", "HttpFetcher", "OfflineFetcher"),
    ".inbound": ("Accepted", "InboundVerdict", "Rejected"),
    ".paths": ("PathLimits",),
    ".policy": (
        "DEFAULT_POLICY", "DomainPolicies", "Policy", "PolicyError", "PolicyLookup", "RevocationUnknown",
        "policies_from_mapping", "policy_from_mapping",
    ),
    ".revinfo": ("RevocationCache",),
    ".service": ("TrustService",),
    ".settings": ("TrustSettings", "build_trust_service", "settings_from_mapping"),
    ".types": ("Check", "Purpose", "TrustDecision", "TrustFailure"),
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}

__all__ = [
    "DEFAULT_POLICY", "Accepted", "AnchorSet", "AnchorSource", "Check", "DecisionCache", "Destinations", "Direction",
    "DomainPolicies",
    "FetchError", "FetchProblem", "Fetcher", "HttpFetcher", "InboundVerdict", "OfflineFetcher", "PathLimits",
    "Policy", "PolicyError", "PolicyLookup", "Purpose", "Rejected", "RevocationCache", "RevocationUnknown",
    "TrustDecision", "TrustFailure", "TrustService", "TrustSettings", "build_trust_service",
    "policies_from_mapping", "policy_from_mapping", "settings_from_mapping",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
