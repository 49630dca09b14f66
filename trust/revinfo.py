"""Revocation information: CRLs and OCSP answers, fetched, parsed once, and cached.

A CRL is cached until its nextUpdate (RFC 5280 5.1.2.5), keyed both by the
URL it came from and by its issuer's name, so that a CRL the administrator
supplied or that another certificate's distribution point brought in counts
for every certificate of that issuer, whether or not the certificate names a
distribution point (Direct item 10). An OCSP answer (RFC 6960) is cached until
its nextUpdate, keyed by the certificate it speaks for.

Parsed CRLs are reused across decisions (re-parsing a CRL per message
tripled the cost of a validation, shared/PERFORMANCE.md); certificates are
not kept here at all. Whether a CRL or answer is genuine, fresh and in scope
is decided by the validation step, not here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

from asn1crypto import crl as asn1_crl
from asn1crypto import ocsp as asn1_ocsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from gateway.core.certs import CertRef, pem_blocks

from .fetch import MAX_CRL_BYTES, MAX_OCSP_BYTES, Fetcher, FetchError, FetchProblem

MAX_OCSP_ENTRIES = 10_000
"""One answer per certificate; a HISP talks to a few thousand peers."""
T = TypeVar("T")

CRL_TTL_WITHOUT_NEXT_UPDATE = timedelta(hours=1)
FAILED_FETCH_BACKOFF = timedelta(seconds=60)
"""Matches the decision cache's temporary-failure TTL: retried about once a minute."""
"""RFC 5280 5.1.2.5 makes nextUpdate mandatory for conforming CAs; for one that
omits it, fetch again after this long."""


@dataclass(frozen=True, slots=True)
class CachedCrl:
    der: bytes = field(repr=False)
    parsed: asn1_crl.CertificateList = field(repr=False, compare=False)
    issuer_der: bytes
    next_update: datetime | None
    source: str
    """The URL it came from, or ``supplied``."""

    def usable_at(self, at: datetime) -> bool:
        return self.next_update is None or at <= self.next_update


@dataclass(frozen=True, slots=True)
class CachedOcsp:
    parsed: asn1_ocsp.OCSPResponse = field(repr=False, compare=False)
    next_update: datetime | None
    url: str


@dataclass(frozen=True, slots=True)
class RevocationInfo:
    """What is known about one certificate's revocation status sources."""

    crls: tuple[CachedCrl, ...]
    ocsp: tuple[CachedOcsp, ...]
    declared: bool
    """The certificate names a CRL distribution point or an OCSP responder."""
    problems: tuple[FetchError, ...]

    @property
    def expires(self) -> datetime | None:
        dates = [c.next_update for c in self.crls if c.next_update] + [o.next_update for o in self.ocsp if o.next_update]
        return min(dates) if dates else None


def parse_crl(data: bytes, source: str) -> CachedCrl:
    """A CRL in DER or PEM; raises FetchError(INVALID) for anything else."""
    if b"-----BEGIN" in data:
        blocks = [der for label, der in pem_blocks(data) if label in ("X509 CRL", "CRL")]
        if not blocks:
            raise FetchError(source, FetchProblem.INVALID, "no PEM X509 CRL block")
        data = blocks[0]
    try:
        meta = x509.load_der_x509_crl(data)
        parsed = asn1_crl.CertificateList.load(data)
        parsed["tbs_cert_list"]["revoked_certificates"].native  # noqa: B018 -- parse now, fail here
    except (ValueError, TypeError) as exc:
        raise FetchError(source, FetchProblem.INVALID, f"not a CRL: {exc}") from exc
    return CachedCrl(data, parsed, meta.issuer.public_bytes(), meta.next_update_utc, source)


def _http_urls(names: Iterable[x509.GeneralName]) -> list[str]:
    return [n.value for n in names if isinstance(n, x509.UniformResourceIdentifier)]


def crl_urls(cert: CertRef) -> list[str]:
    try:
        ext = cert.x509.extensions.get_extension_for_class(x509.CRLDistributionPoints)
    except x509.ExtensionNotFound:
        return []
    return [u for dp in ext.value for u in _http_urls(dp.full_name or ())]


def ocsp_urls(cert: CertRef) -> list[str]:
    return cert.access_urls(x509.AuthorityInformationAccessOID.OCSP)


class RevocationCache:
    """CRLs and OCSP answers shared by every decision of one process.

    ``fetches`` counts network requests made, for tests and metrics.
    """

    def __init__(self, fetcher: Fetcher, supplied_crls: Iterable[bytes] = ()) -> None:
        self._fetcher = fetcher
        self._by_url: dict[str, CachedCrl] = {}
        self._by_issuer: dict[bytes, dict[bytes, CachedCrl]] = {}
        self._ocsp: dict[str, CachedOcsp] = {}
        self._inflight: dict[str, asyncio.Future[Any]] = {}
        self._failed: dict[str, tuple[datetime, FetchError]] = {}
        self.fetches = 0
        for data in supplied_crls:
            self.add_crl(parse_crl(data, "supplied"))

    def add_crl(self, entry: CachedCrl) -> None:
        """Hold a CRL for its issuer; the newest per issuer and source wins."""
        per_issuer = self._by_issuer.setdefault(entry.issuer_der, {})
        per_issuer[entry.source.encode()] = entry
        if entry.source != "supplied":
            self._by_url[entry.source] = entry

    async def _once(self, key: str, at: datetime, make: Callable[[], Awaitable[T]]) -> T:
        """One fetch per key at a time: a burst of mail from one sender, or
        several decisions needing the same CRL, cost one download. A failed
        fetch is not retried for FAILED_FETCH_BACKOFF, so an unreachable CRL
        server costs one timeout, not one per new sender."""
        failed = self._failed.get(key)
        if failed is not None:
            if at < failed[0]:
                raise failed[1]
            del self._failed[key]
        pending = self._inflight.get(key)
        if pending is not None:
            return cast(T, await asyncio.shield(pending))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            result = await make()
        except BaseException as exc:
            if isinstance(exc, FetchError):
                if len(self._failed) >= MAX_OCSP_ENTRIES:
                    self._failed.pop(next(iter(self._failed)))
                self._failed[key] = (at + FAILED_FETCH_BACKOFF, exc)
            future.set_exception(exc)
            future.exception()  # retrieved here; waiters get it re-raised
            raise
        else:
            future.set_result(result)
            return result
        finally:
            del self._inflight[key]

    async def _crl(self, url: str, at: datetime) -> CachedCrl:
        cached = self._by_url.get(url)
        if cached is not None and cached.usable_at(at):
            return cached
        return await self._once(url, at, lambda: self._fetch_crl(url, at))

    async def _fetch_crl(self, url: str, at: datetime) -> CachedCrl:
        self.fetches += 1
        data = await self._fetcher.get(url, max_bytes=MAX_CRL_BYTES)
        entry = parse_crl(data, url)
        if entry.next_update is None:
            entry = CachedCrl(entry.der, entry.parsed, entry.issuer_der, at + CRL_TTL_WITHOUT_NEXT_UPDATE, url)
        self.add_crl(entry)
        return entry

    async def _ocsp_answer(self, url: str, cert: CertRef, issuer: CertRef, at: datetime) -> CachedOcsp:
        key = f"{cert.sha256}|{url}"
        cached = self._ocsp.get(key)
        if cached is not None and cached.next_update is not None and at <= cached.next_update:
            return cached
        return await self._once(key, at, lambda: self._fetch_ocsp(key, url, cert, issuer))

    async def _fetch_ocsp(self, key: str, url: str, cert: CertRef, issuer: CertRef) -> CachedOcsp:
        # RFC 6960 4.1.1 / RFC 5019 2.1.1: the CertID hashes are SHA-1 in practice
        request = ocsp.OCSPRequestBuilder().add_certificate(cert.x509, issuer.x509, hashes.SHA1()).build()
        self.fetches += 1
        data = await self._fetcher.post(
            url,
            request.public_bytes(serialization.Encoding.DER),
            content_type="application/ocsp-request",
            max_bytes=MAX_OCSP_BYTES,
        )
        try:
            meta = ocsp.load_der_ocsp_response(data)
            parsed = asn1_ocsp.OCSPResponse.load(data)
            parsed.native  # noqa: B018 -- parse now, fail here
        except (ValueError, TypeError) as exc:
            raise FetchError(url, FetchProblem.INVALID, f"not an OCSP response: {exc}") from exc
        if meta.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
            raise FetchError(url, FetchProblem.INVALID, f"the responder answered {meta.response_status.name}")
        entry = CachedOcsp(parsed, meta.next_update_utc, url)
        if len(self._ocsp) >= MAX_OCSP_ENTRIES:
            self._ocsp.pop(next(iter(self._ocsp)))
        self._ocsp[key] = entry
        return entry

    def held_crls(self, cert: CertRef, at: datetime) -> list[CachedCrl]:
        return list(self._by_issuer.get(cert.issuer_der, {}).values())

    async def lookup(self, cert: CertRef, issuer: CertRef | None, at: datetime) -> RevocationInfo:
        """Fetch what ``cert`` names (CRL distribution points, OCSP through AIA)
        and add every CRL already held for its issuer."""
        problems: list[FetchError] = []
        urls = crl_urls(cert)
        named: list[CachedCrl] = []
        for url in urls:
            try:
                named.append(await self._crl(url, at))
            except FetchError as exc:
                problems.append(exc)
        answers: list[CachedOcsp] = []
        responders = ocsp_urls(cert)
        if issuer is not None:
            for url in responders:
                try:
                    answers.append(await self._ocsp_answer(url, cert, issuer, at))
                except FetchError as exc:
                    problems.append(exc)
        declared = bool(urls or responders or _declares_crl(cert))
        # the issuer's CRLs, plus what its own distribution points gave (an
        # indirect CRL names another issuer, RFC 5280 5.2.5)
        crls = tuple(dict.fromkeys([*self.held_crls(cert, at), *named]))
        return RevocationInfo(crls, tuple(answers), declared, tuple(problems))


def _declares_crl(cert: CertRef) -> bool:
    """A distribution point we cannot fetch (LDAP, relative name) still declares one."""
    try:
        cert.x509.extensions.get_extension_for_class(x509.CRLDistributionPoints)
    except x509.ExtensionNotFound:
        return False
    return True
