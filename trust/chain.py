"""Gathering the CA certificates a path may need, following AIA caIssuers.

RFC 5280 4.2.2.1: a certificate may say where its issuer's certificate can
be fetched (a DER certificate, or a PKCS#7 certs-only bundle). Direct item 11
(DCDT D18) requires following it when the sender left the intermediate out.
This fetches and caches them; ``paths`` builds candidate paths from them
within bounds, and pyhanko-certvalidator validates each candidate.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from asn1crypto import cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509

from gateway.common.single_flight import SingleFlight
from gateway.common.ttl_cache import TtlCache
from gateway.core.certs import DER_ERRORS, CertRef, load_certificates

from .fetch import MAX_CERT_BYTES, Fetcher, FetchError, FetchProblem

MAX_CARRIED_CERTIFICATES = 32
"""Certificates a message may bring for path building; more are ignored. A
Direct chain needs two or three; thousands would make path building the
attacker's lever."""
AIA_CACHE_TTL = timedelta(hours=24)
AIA_CACHE_ENTRIES = 1024
MAX_CERTS_PER_AIA_ANSWER = 8
"""Certificates taken from one caIssuers answer: a .p7c of a CA and its
cross-certificates holds a few; more would only feed path building."""


def ca_issuer_urls(cert: CertRef) -> list[str]:
    return cert.access_urls(x509.AuthorityInformationAccessOID.CA_ISSUERS)


def parse_ca_certificates(data: bytes, url: str) -> list[CertRef]:
    """A DER or PEM certificate, or a PKCS#7 certs-only bundle (``.p7c``)."""
    try:
        return load_certificates(data) if b"-----BEGIN" in data else [_one_der(data)]
    except DER_ERRORS:  # KeyMaterialError is a ValueError
        pass
    try:
        info = cms.ContentInfo.load(data)
        if info["content_type"].native == "signed_data":
            found = [CertRef(c.chosen.dump()) for c in info["content"]["certificates"] or ()]
            for c in found:
                c.x509  # noqa: B018 -- parse now
            if found:
                return found
    except DER_ERRORS:
        pass
    raise FetchError(url, FetchProblem.INVALID, "neither a certificate nor a PKCS#7 certs-only bundle")


def parses(cert: CertRef) -> bool:
    """A certificate a message carried that cannot be parsed is left out of path
    building rather than failing the decision: the path may not need it."""
    try:
        cert.x509  # noqa: B018
        asn1_x509.Certificate.load(cert.der).native  # noqa: B018
    except DER_ERRORS:
        return False
    return True


def _one_der(data: bytes) -> CertRef:
    ref = CertRef(data)
    ref.x509  # noqa: B018 -- parse now, so garbage fails here
    return ref


class IssuerCache:
    """CA certificates fetched through AIA, per URL, shared across decisions.

    Concurrent decisions needing the same URL share one download
    (``SingleFlight``); a failed one is shared by those waiting on it and then
    forgotten, so the next decision tries again."""

    def __init__(self, fetcher: Fetcher) -> None:
        self._fetcher = fetcher
        self._by_url: TtlCache[tuple[CertRef, ...]] = TtlCache(AIA_CACHE_ENTRIES)
        self._flights: SingleFlight[str, tuple[CertRef, ...]] = SingleFlight()
        self.fetches = 0

    async def fetch(self, url: str, at: datetime) -> tuple[CertRef, ...]:
        hit = self._by_url.get(url, at)
        if hit is not None:
            return hit
        return await self._flights.run(url, lambda: self._download(url, at))

    async def _download(self, url: str, at: datetime) -> tuple[CertRef, ...]:
        self.fetches += 1
        found = parse_ca_certificates(await self._fetcher.get(url, max_bytes=MAX_CERT_BYTES), url)
        certs = tuple(found[:MAX_CERTS_PER_AIA_ANSWER])
        self._by_url.put(url, certs, at, AIA_CACHE_TTL)
        return certs
