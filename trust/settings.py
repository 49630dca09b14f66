"""The ``[trust]`` table of the configuration, and building the service from it.

```toml
[trust]
revocation_unknown = "temporary"   # or "hard-fail", "soft-pass" (Direct item 10)
revocation = "when-declared"       # or "required": every CA and leaf below the anchor needs a CRL or OCSP answer
allow_sha1 = false                 # Direct item 2: receivers MAY accept, as policy
min_rsa_bits = 2048                # Direct item 14
required_policy_oids = []          # e.g. a trust community's certificate policy
required_eku = []
decision_ttl = 3600                # seconds
crl_files = ["/etc/directgw/crl/partner.crl"]   # honoured without a distribution point
fetch_timeout = 10                 # seconds, for AIA, CRL and OCSP over HTTP
fetch_allow = ["10.20.0.0/16"]     # networks fetched from although not public (default: none)

[trust.domains."hisp.example.org"]  # overrides for one local domain
allow_sha1 = true
```

The composition root does ``build_trust_service(config.section("trust"), anchor_store)``
once and hands the service to the inbound and outbound workers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.common.destinations import PUBLIC_ONLY, parse_networks

from .anchor_source import AnchorSource
from .fetch import FETCH_TIMEOUT_SECONDS, Destinations, HttpFetcher
from .policy import DomainPolicies, PolicyError, policies_from_mapping
from .service import TrustService

_SERVICE_KEYS = ("crl_files", "fetch_timeout", "fetch_allow")


@dataclass(frozen=True, slots=True)
class TrustSettings:
    policies: DomainPolicies
    crl_files: tuple[Path, ...] = ()
    fetch_timeout: float = FETCH_TIMEOUT_SECONDS
    fetch_destinations: Destinations = PUBLIC_ONLY
    """Public addresses only, plus the ``fetch_allow`` networks (gateway.common.destinations)."""


def settings_from_mapping(table: Mapping[str, Any]) -> TrustSettings:
    policy_table = {k: v for k, v in table.items() if k.replace("-", "_") not in _SERVICE_KEYS}
    crl_files = table.get("crl_files", table.get("crl-files", []))
    if not isinstance(crl_files, list) or not all(isinstance(p, str) for p in crl_files):
        raise PolicyError("crl_files", "expected a list of file paths")
    timeout = table.get("fetch_timeout", table.get("fetch-timeout", FETCH_TIMEOUT_SECONDS))
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or not 0 < timeout <= 120:
        raise PolicyError("fetch_timeout", "expected seconds between 0 and 120")
    try:
        destinations = Destinations.allowing(parse_networks(table.get("fetch_allow", table.get("fetch-allow", []))))
    except ValueError as exc:
        raise PolicyError("fetch_allow", str(exc)) from None
    return TrustSettings(
        policies_from_mapping(policy_table), tuple(Path(p) for p in crl_files), float(timeout), destinations
    )


def build_trust_service(table: Mapping[str, Any], anchors: AnchorSource) -> tuple[TrustService, HttpFetcher]:
    """The service and its fetcher (close the fetcher at shutdown). Reads the CRL files now."""
    settings = settings_from_mapping(table)
    crls = []
    for path in settings.crl_files:
        try:
            crls.append(path.read_bytes())
        except OSError as exc:
            raise PolicyError("crl_files", f"cannot read {path}: {exc.strerror}") from exc
    fetcher = HttpFetcher(timeout=settings.fetch_timeout, destinations=settings.fetch_destinations)
    return TrustService(anchors, fetcher, settings.policies, supplied_crls=crls), fetcher
