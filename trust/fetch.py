"""Fetching what path validation needs from the network: CA certificates named
by AIA caIssuers (RFC 5280 4.2.2.1, Direct item 11), CRLs named by CRL
distribution points (RFC 5280 4.2.1.13, Direct item 10) and OCSP answers
(RFC 6960 appendix A.1, HTTP POST).

The fetcher itself (``Fetcher``, ``HttpFetcher``, ``OfflineFetcher``, its
typed errors, and the rule that it connects only to public addresses unless
configured) lives in the neutral ``gateway.common.http_fetch``, which
discovery and trust bundles use too; this module names it for the trust
engine and holds the sizes the engine accepts.
"""

from __future__ import annotations

from gateway.common.destinations import AddressClass, Destinations
from gateway.common.http_fetch import (
    FETCH_TIMEOUT_SECONDS,
    MAX_REDIRECTS,
    Fetcher,
    FetchError,
    FetchProblem,
    HttpFetcher,
    OfflineFetcher,
)

MAX_CERT_BYTES = 64 * 1024
"""A certificate or a PKCS#7 bundle of a few (DCDT D18 serves one CA certificate)."""
MAX_CRL_BYTES = 10 * 1024 * 1024
"""Large public CAs publish CRLs of a few MB; anything bigger is refused rather than held."""
MAX_OCSP_BYTES = 64 * 1024

__all__ = [
    "FETCH_TIMEOUT_SECONDS", "MAX_CERT_BYTES", "MAX_CRL_BYTES", "MAX_OCSP_BYTES", "MAX_REDIRECTS", "AddressClass",
    "Destinations", "FetchError", "FetchProblem", "Fetcher", "HttpFetcher", "OfflineFetcher",
]
