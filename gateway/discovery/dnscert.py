"""CERT records (RFC 4398) as certificates.

Types read (RFC 4398 section 2.1): PKIX (1) holds a DER certificate; IPKIX (4)
holds the URL of one; URI (253, a private type Direct implementations use the
same way) holds a URL too. URLs are fetched through the same bounded fetcher
the trust engine uses for AIA (a size cap and a timeout, http only, public
addresses only unless allowed: the zone's owner chose the URL), at most
``MAX_URL_FETCHES`` per name, and one download per URL at a time. Other
types (PGP, SPKI...) are not for S/MIME and are passed over.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from gateway.common.http_fetch import Fetcher, FetchError
from gateway.common.single_flight import SingleFlight
from gateway.common.ttl_cache import TtlCache
from gateway.core.certs import CertRef, KeyMaterialError
from trust.fetch import MAX_CERT_BYTES

from .dnsclient import DnsClient, Status
from .parsing import certificates_in
from .types import Outcome, Source, SourceReport

CERT_PKIX = 1
CERT_IPKIX = 4
CERT_URI = 253
URL_TYPES = (CERT_IPKIX, CERT_URI)
URL_CACHE_TTL = timedelta(hours=1)
"""A fetched URL is reused as long as the record naming it, and at most an hour."""
MAX_URL_FETCHES = 4
"""URL records fetched for one name: a Direct address publishes one or two
certificates; a zone listing dozens of URLs would cost a fetch timeout each."""


class CertificateRecords(Protocol):
    """Certificates published in DNS under one name (what discovery asks of DNS)."""

    async def lookup(self, name: str, *, at: datetime) -> SourceReport: ...


class DnsCertSource:
    def __init__(self, dns: DnsClient, fetcher: Fetcher) -> None:
        self.dns = dns
        self.fetcher = fetcher
        self._fetched: TtlCache[tuple[CertRef, ...]] = TtlCache()
        self._flights: SingleFlight[str, tuple[CertRef, ...]] = SingleFlight()

    async def lookup(self, name: str, *, at: datetime) -> SourceReport:
        answer = await self.dns.query(name, "CERT", at=at)
        query = answer.describe()
        if answer.status in (Status.FAILED, Status.UNREACHABLE):
            return SourceReport(Source.DNS, query, answer.status.outcome, detail=answer.detail, cached=answer.cached)
        if answer.status is Status.NXDOMAIN:
            return SourceReport(Source.DNS, query, Outcome.NO_SUCH_NAME, cached=answer.cached)
        if answer.status is Status.NODATA or answer.rrset is None:
            return SourceReport(Source.DNS, query, Outcome.EMPTY, detail="no CERT record", cached=answer.cached)
        certs: list[CertRef] = []
        problems: list[str] = []
        ttl = timedelta(seconds=answer.rrset.ttl)
        urls_fetched: set[str] = set()
        for rdata in answer.rrset:
            kind = rdata.certificate_type
            if kind == CERT_PKIX:
                try:
                    certs.extend(certificates_in(rdata.certificate))
                except KeyMaterialError as exc:
                    problems.append(f"a PKIX record is not a certificate: {exc}")
            elif kind in URL_TYPES:
                url = rdata.certificate.decode("utf-8", "replace").strip()
                if url in urls_fetched:
                    continue
                if len(urls_fetched) >= MAX_URL_FETCHES:
                    problems.append(f"{url}: not fetched, over {MAX_URL_FETCHES} URL records for one name")
                    continue
                urls_fetched.add(url)
                try:
                    certs.extend(await self._fetch(url, at, min(ttl, URL_CACHE_TTL)))
                except (FetchError, KeyMaterialError) as exc:
                    problems.append(f"{url}: {exc}")
            else:
                problems.append(f"CERT type {kind} skipped (not X.509)")
        unique = tuple(dict.fromkeys(certs))
        outcome = Outcome.FOUND if unique else (Outcome.ERROR if problems else Outcome.EMPTY)
        return SourceReport(Source.DNS, query, outcome, unique, "; ".join(problems), cached=answer.cached)

    async def _fetch(self, url: str, at: datetime, ttl: timedelta) -> tuple[CertRef, ...]:
        hit = self._fetched.get(url, at)
        if hit is not None:
            return hit
        return await self._flights.run(url, lambda: self._download(url, at, ttl))

    async def _download(self, url: str, at: datetime, ttl: timedelta) -> tuple[CertRef, ...]:
        body = await self.fetcher.get(url, max_bytes=MAX_CERT_BYTES)
        certs = tuple(certificates_in(body))
        self._fetched.put(url, certs, at, ttl)
        return certs
