"""Revocation information: CRLs and OCSP answers, fetched, parsed once, and cached.

A CRL is cached until its nextUpdate (RFC 5280 5.1.2.5), keyed both by the
URL it came from and by its issuer's name, so that a CRL the administrator
supplied or that another certificate's distribution point brought in counts
for every certificate of that issuer, whether or not the certificate names a
distribution point (Direct item 10). Several CRLs of one issuer are all held:
a base CRL and its delta (RFC 5280 5.2.4), or partitions by reason or scope
(5.2.5 onlySomeReasons, onlyContainsCACerts); a certificate is given every
CRL of its issuer and of each cRLIssuer its distribution points name (an
indirect CRL, 5.2.5 and 6.3.3 (b)). An OCSP answer (RFC 6960) is cached until
its nextUpdate, keyed by the certificate it speaks for.

Issuer names are compared as RFC 5280 7.1 says (asn1crypto's normalised form:
case and inner whitespace of strings do not matter), never as raw DER.

Parsed CRLs are reused across decisions (re-parsing a CRL per message
tripled the cost of a validation, shared/PERFORMANCE.md); certificates are
not kept here at all. Whether a CRL or answer is genuine, fresh and in scope
is decided by the validation step, not here. Fetched CRLs are bounded in
number and in bytes (``MAX_CACHED_CRLS``, ``MAX_CACHED_CRL_BYTES``), the least
recently used going first; the administrator's own are always kept.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

from asn1crypto import crl as asn1_crl
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from gateway.core.certs import DER_ERRORS, CertRef, pem_blocks

from .fetch import MAX_CRL_BYTES, MAX_OCSP_BYTES, Fetcher, FetchError, FetchProblem

MAX_CRL_URLS = 4
"""CRL (or delta CRL) URLs fetched for one certificate: a CA names one or two
(HTTP, perhaps LDAP); a certificate naming a hundred would cost a hundred fetches."""
MAX_OCSP_ENTRIES = 10_000
"""One answer per certificate; a HISP talks to a few thousand peers."""
MAX_FAILED_FETCHES = 10_000
"""Remembered failures (for FAILED_FETCH_BACKOFF), one per URL or OCSP question."""
MAX_CACHED_CRLS = 512
"""Fetched CRLs held at once. A Direct trust community has a few hundred CAs,
each with one or two CRLs (a base and a delta); beyond that the least recently
used one is dropped, which costs only another download."""
MAX_CACHED_CRL_BYTES = 16 * 1024 * 1024
"""Total DER of the fetched CRLs held. Parsed, a CRL costs about 25 times its
DER (asn1crypto objects per entry: 20 MB for an 800 KB CRL of 20,000 entries),
so this keeps the revocation cache near 400 MB at worst: one CRL at the 10 MB
fetch limit (MAX_CRL_BYTES) and a few more, or thousands of the few-KB CRLs
Direct CAs publish."""
T = TypeVar("T")

CRL_TTL_WITHOUT_NEXT_UPDATE = timedelta(hours=1)
"""RFC 5280 5.1.2.5 makes nextUpdate mandatory for conforming CAs; for one that
omits it, fetch again after this long."""
FAILED_FETCH_BACKOFF = timedelta(seconds=60)
"""Matches the decision cache's temporary-failure TTL: retried about once a minute."""


def name_key(der: bytes) -> str | None:
    """A distinguished name compared as RFC 5280 7.1 says; None when it does not parse."""
    try:
        return cast(str, asn1_x509.Name.load(der).hashable)
    except (ValueError, TypeError, KeyError):
        return None


@dataclass(frozen=True, slots=True)
class CachedCrl:
    der: bytes = field(repr=False)
    parsed: asn1_crl.CertificateList = field(repr=False, compare=False)
    issuer_der: bytes
    next_update: datetime | None
    source: str
    """The URL it came from, or ``supplied``."""
    issuer_key: str = field(default="", compare=False)
    """The issuer name as compared (``name_key``)."""
    delta_urls: tuple[str, ...] = field(default=(), compare=False)
    """Where its delta CRLs are, when it is a complete CRL that names them."""

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
        # cryptography parses lazily: every field read later is read here
        meta = x509.load_der_x509_crl(data)
        issuer_der = meta.issuer.public_bytes()
        next_update = meta.next_update_utc
        meta.last_update_utc  # noqa: B018
        for entry in meta:
            entry.revocation_date_utc  # noqa: B018
            entry.extensions  # noqa: B018
        parsed = asn1_crl.CertificateList.load(data)
        _walk_entries(parsed)
        deltas = _delta_urls(meta)
    except DER_ERRORS as exc:  # InvalidVersion is not a ValueError
        raise FetchError(source, FetchProblem.INVALID, f"not a CRL: {exc}") from exc
    key = name_key(issuer_der)
    if key is None:
        raise FetchError(source, FetchProblem.INVALID, "the CRL's issuer name does not parse")
    return CachedCrl(data, parsed, issuer_der, next_update, source, key, deltas)


def _walk_entries(parsed: asn1_crl.CertificateList) -> None:
    """Parse every entry now, as RFC 5280 6.3 processing will (pyhanko reads
    each entry's encoding and serial number), so a malformed CRL fails here.

    Not ``.native``: the Python values of every entry would be kept with the
    CRL and cost about three times the parsed objects (an 800 KB CRL of 20,000
    entries: 67 MB with them, 20 MB without), and nothing reads them."""
    for entry in parsed["tbs_cert_list"]["revoked_certificates"]:
        entry.dump()
        entry["user_certificate"].dump()


def _http_urls(names: Iterable[x509.GeneralName]) -> list[str]:
    return [n.value for n in names if isinstance(n, x509.UniformResourceIdentifier)]


def _distribution_points(cert: CertRef) -> list[x509.DistributionPoint]:
    try:
        return list(cert.x509.extensions.get_extension_for_class(x509.CRLDistributionPoints).value)
    except x509.ExtensionNotFound:
        return []


def crl_urls(cert: CertRef) -> list[str]:
    """Where the certificate's CRLs are (RFC 5280 4.2.1.13), at most MAX_CRL_URLS."""
    urls = [u for dp in _distribution_points(cert) for u in _http_urls(dp.full_name or ())]
    return list(dict.fromkeys(urls))[:MAX_CRL_URLS]


def _delta_urls(meta: x509.CertificateRevocationList) -> tuple[str, ...]:
    """Where a complete CRL says its deltas are (freshestCRL, RFC 5280 5.2.6)."""
    try:
        points = meta.extensions.get_extension_for_class(x509.FreshestCRL).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(dict.fromkeys(u for dp in points for u in _http_urls(dp.full_name or ())))[:MAX_CRL_URLS]


def crl_issuer_keys(cert: CertRef) -> set[str]:
    """Whose CRLs speak for ``cert``: its issuer, and every cRLIssuer its
    distribution points name (an indirect CRL, RFC 5280 4.2.1.13, 6.3.3 (b))."""
    keys = {name_key(cert.issuer_der)}
    for dp in _distribution_points(cert):
        for name in dp.crl_issuer or ():
            if isinstance(name, x509.DirectoryName):
                keys.add(name_key(name.value.public_bytes()))
    return {k for k in keys if k is not None}


def ocsp_urls(cert: CertRef) -> list[str]:
    return cert.access_urls(x509.AuthorityInformationAccessOID.OCSP)


class RevocationCache:
    """CRLs and OCSP answers shared by every decision of one process.

    ``fetches`` counts network requests made, for tests and metrics.
    """

    def __init__(
        self,
        fetcher: Fetcher,
        supplied_crls: Iterable[bytes] = (),
        *,
        max_crls: int = MAX_CACHED_CRLS,
        max_crl_bytes: int = MAX_CACHED_CRL_BYTES,
    ) -> None:
        self._fetcher = fetcher
        self._max_crls = max_crls
        self._max_crl_bytes = max_crl_bytes
        # issuer name key -> slot -> CRL; a slot is the URL of a fetched CRL (a
        # newer download replaces the older) or the hash of a supplied one
        self._by_issuer: dict[str, dict[str, CachedCrl]] = {}
        self._by_url: OrderedDict[str, CachedCrl] = OrderedDict()
        self._fetched_bytes = 0
        self._ocsp: dict[str, CachedOcsp] = {}
        self._inflight: dict[str, asyncio.Future[Any]] = {}
        self._failed: dict[str, tuple[datetime, FetchError]] = {}
        self.fetches = 0
        for data in supplied_crls:
            self.add_crl(parse_crl(data, "supplied"))

    def add_crl(self, entry: CachedCrl) -> None:
        """Hold a CRL for its issuer: every supplied one, the newest per URL fetched."""
        key = entry.issuer_key or name_key(entry.issuer_der) or ""
        if entry.source == "supplied":
            self._by_issuer.setdefault(key, {})[hashlib.sha256(entry.der).hexdigest()] = entry
            return
        self._drop(entry.source)
        self._by_issuer.setdefault(key, {})[entry.source] = entry
        self._by_url[entry.source] = entry
        self._fetched_bytes += len(entry.der)
        while len(self._by_url) > 1 and (
            len(self._by_url) > self._max_crls or self._fetched_bytes > self._max_crl_bytes
        ):
            self._drop(next(iter(self._by_url)))

    def _drop(self, url: str) -> None:
        old = self._by_url.pop(url, None)
        if old is None:
            return
        self._fetched_bytes -= len(old.der)
        key = old.issuer_key or name_key(old.issuer_der) or ""
        per_issuer = self._by_issuer.get(key, {})
        per_issuer.pop(url, None)
        if not per_issuer:
            self._by_issuer.pop(key, None)

    @property
    def held(self) -> tuple[int, int]:
        """(fetched CRLs held, their total DER bytes), for tests and metrics."""
        return len(self._by_url), self._fetched_bytes

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
                if len(self._failed) >= MAX_FAILED_FETCHES:
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
            self._by_url.move_to_end(url)
            return cached
        return await self._once(url, at, lambda: self._fetch_crl(url, at))

    async def _fetch_crl(self, url: str, at: datetime) -> CachedCrl:
        self.fetches += 1
        data = await self._fetcher.get(url, max_bytes=MAX_CRL_BYTES)
        entry = parse_crl(data, url)
        if entry.next_update is None:
            entry = replace(entry, next_update=at + CRL_TTL_WITHOUT_NEXT_UPDATE)
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
        entry = _parse_ocsp(data, url)
        if len(self._ocsp) >= MAX_OCSP_ENTRIES:
            self._ocsp.pop(next(iter(self._ocsp)))
        self._ocsp[key] = entry
        return entry

    def held_crls(self, cert: CertRef, at: datetime) -> list[CachedCrl]:
        """Every CRL held from ``cert``'s issuer or from a cRLIssuer it names."""
        return [c for key in sorted(crl_issuer_keys(cert)) for c in self._by_issuer.get(key, {}).values()]

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
        held = self.held_crls(cert, at)
        for url in list(dict.fromkeys(u for c in (*named, *held) for u in c.delta_urls))[:MAX_CRL_URLS]:
            # a complete CRL that names its deltas is used only with one
            # (pyhanko applies RFC 5280 6.3.3 (c) so): a delta that cannot be
            # had leaves that CRL unusable, and the fetch error says why
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
        # the issuer's and named cRLIssuers' CRLs, plus what its own
        # distribution points gave
        crls = tuple(dict.fromkeys([*held, *named]))
        return RevocationInfo(crls, tuple(answers), declared, tuple(problems))


CERT_ID_HASHES = frozenset({"sha1", "sha256"})
"""The hashes an OCSP CertID may use here (RFC 6960 4.1.1 names SHA-1; RFC 5019 and
most responders use it, some SHA-256): the validator compares them through
asn1crypto's Name.sha1 / Name.sha256, and any other algorithm would fail there
rather than be judged, so such an answer is refused as unusable when it arrives."""


def _parse_ocsp(data: bytes, url: str) -> CachedOcsp:
    """A successful OCSP response (RFC 6960 4.2.1), read whole now: cryptography
    parses lazily, and a field that does not parse must fail here, not later."""
    try:
        meta = ocsp.load_der_ocsp_response(data)
        status = meta.response_status
        if status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
            raise FetchError(url, FetchProblem.INVALID, f"the responder answered {status.name}")
        # the earliest nextUpdate of its answers (one per certificate asked about)
        updates = [r.next_update_utc for r in meta.responses]
        next_update = min((u for u in updates if u is not None), default=None)
        parsed = asn1_ocsp.OCSPResponse.load(data)
        parsed.native  # noqa: B018 -- a few KB (MAX_OCSP_BYTES): parse now, fail here
        hashes_named = {r["cert_id"]["hash_algorithm"]["algorithm"].native
                        for r in parsed["response_bytes"]["response"].parsed["tbs_response_data"]["responses"]}
    except DER_ERRORS as exc:
        raise FetchError(url, FetchProblem.INVALID, f"not an OCSP response: {exc}") from exc
    unusable = hashes_named - CERT_ID_HASHES
    if unusable:
        raise FetchError(url, FetchProblem.INVALID,
                         f"an answer identifies its certificate by an unsupported hash ({sorted(unusable)[0]})")
    return CachedOcsp(parsed, next_update, url)


def _declares_crl(cert: CertRef) -> bool:
    """A distribution point we cannot fetch (LDAP, relative name) still declares one."""
    try:
        cert.x509.extensions.get_extension_for_class(x509.CRLDistributionPoints)
    except x509.ExtensionNotFound:
        return False
    return True
