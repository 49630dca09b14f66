"""Gathering the CA certificates a path may need, following AIA caIssuers.

RFC 5280 4.2.2.1: a certificate may say where its issuer's certificate can
be fetched (a DER certificate, or a PKCS#7 certs-only bundle). Direct item 11
(DCDT D18) requires following it when the sender left the intermediate out.
This only collects candidates; path building and validation are
pyhanko-certvalidator's, over exactly these certificates and the anchors.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from asn1crypto import cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509

from gateway.core.certs import CertRef, KeyMaterialError, load_certificates
from gateway.ttl_cache import TtlCache

from .fetch import MAX_CERT_BYTES, Fetcher, FetchError, FetchProblem

MAX_CHAIN_LENGTH = 8
"""Longest path we look for (Direct HISPs use 2-4; a bound stops loops and fetch storms)."""
MAX_CARRIED_CERTIFICATES = 32
"""Certificates a message may bring for path building; more are ignored. A
Direct chain needs two or three; thousands would make path building the
attacker's lever."""
AIA_CACHE_TTL = timedelta(hours=24)
AIA_CACHE_ENTRIES = 1024


def ca_issuer_urls(cert: CertRef) -> list[str]:
    return cert.access_urls(x509.AuthorityInformationAccessOID.CA_ISSUERS)


def parse_ca_certificates(data: bytes, url: str) -> list[CertRef]:
    """A DER or PEM certificate, or a PKCS#7 certs-only bundle (``.p7c``)."""
    try:
        return load_certificates(data) if b"-----BEGIN" in data else [_one_der(data)]
    except (KeyMaterialError, ValueError):
        pass
    try:
        info = cms.ContentInfo.load(data)
        if info["content_type"].native == "signed_data":
            found = [CertRef(c.chosen.dump()) for c in info["content"]["certificates"] or ()]
            for c in found:
                c.x509  # noqa: B018 -- parse now
            if found:
                return found
    except (ValueError, TypeError, KeyError):
        pass
    raise FetchError(url, FetchProblem.INVALID, "neither a certificate nor a PKCS#7 certs-only bundle")


def _parses(cert: CertRef) -> bool:
    """A certificate a message carried that cannot be parsed is left out of path
    building rather than failing the decision: the path may not need it."""
    try:
        cert.x509  # noqa: B018
        asn1_x509.Certificate.load(cert.der).native  # noqa: B018
    except (ValueError, TypeError):
        return False
    return True


def _one_der(data: bytes) -> CertRef:
    ref = CertRef(data)
    ref.x509  # noqa: B018 -- parse now, so garbage fails here
    return ref


def _issued_by(cert: CertRef, candidate: CertRef) -> bool:
    if candidate.subject_der != cert.issuer_der:
        return False
    try:
        aki = cert.x509.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    except x509.ExtensionNotFound:
        aki = None
    ski = candidate.subject_key_identifier
    return aki is None or ski is None or aki == ski


class IssuerCache:
    """CA certificates fetched through AIA, per URL, shared across decisions."""

    def __init__(self, fetcher: Fetcher) -> None:
        self._fetcher = fetcher
        self._by_url: TtlCache[tuple[CertRef, ...]] = TtlCache(AIA_CACHE_ENTRIES)
        self.fetches = 0

    async def fetch(self, url: str, at: datetime) -> tuple[CertRef, ...]:
        hit = self._by_url.get(url, at)
        if hit is not None:
            return hit
        self.fetches += 1
        certs = tuple(parse_ca_certificates(await self._fetcher.get(url, max_bytes=MAX_CERT_BYTES), url))
        self._by_url.put(url, certs, at, AIA_CACHE_TTL)
        return certs


async def gather(
    leaf: CertRef,
    given: Sequence[CertRef],
    anchors: Sequence[CertRef],
    issuers: IssuerCache,
    at: datetime,
) -> tuple[list[CertRef], list[CertRef], list[FetchError]]:
    """Walk up from ``leaf`` by issuer name, fetching a missing issuer through AIA.

    Returns (the chain walked, leaf first, ending at an anchor when one was
    reached; every non-anchor certificate available for path building; fetch
    problems met on the way).
    """
    carried = list(dict.fromkeys(c for c in given if c != leaf))[:MAX_CARRIED_CERTIFICATES]
    pool: list[CertRef] = [c for c in carried if _parses(c)]
    anchor_set = set(anchors)
    chain = [leaf]
    problems: list[FetchError] = []
    current = leaf
    while len(chain) < MAX_CHAIN_LENGTH and current not in anchor_set:
        anchor = next((a for a in anchors if _issued_by(current, a)), None)
        if anchor is not None:
            chain.append(anchor)
            break
        if current.subject_der == current.issuer_der:
            break  # self-issued and not an anchor: the path ends here, untrusted
        found = next((c for c in pool if _issued_by(current, c) and c not in chain), None)
        if found is None:
            for url in ca_issuer_urls(current):
                try:
                    fetched = await issuers.fetch(url, at)
                except FetchError as exc:
                    problems.append(exc)
                    continue
                pool.extend(c for c in fetched if c not in pool)
                found = next((c for c in fetched if _issued_by(current, c) and c not in chain), None)
                if found is not None:
                    break
        if found is None:
            break
        chain.append(found)
        current = found
    return chain, pool, problems
