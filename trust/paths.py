"""Candidate certification paths, found within named bounds.

Path building is where a message's own certificates become the attacker's
lever: ten CA certificates with one subject name and one key, each issued by
that name, give a naive builder 10! orderings to try (pyhanko-certvalidator
excludes only a certificate already on the path, so the decision never came
back). So we build the candidate paths here, depth first, and the validator
is handed one candidate at a time:

- a path never holds the same subject name and key twice: a second
  certificate for a key already on the path adds no signature, only length
  (RFC 4158 2.4.2 treats such repeats as loops);
- among the certificates that could have issued one certificate (same name as
  its issuer, AKI/SKI consistent, RFC 5280 4.2.1.1), those identical in
  subject, key, issuer name and issuer key are one candidate (the one valid at ``at`` and
  whose SKI matches the AKI exactly is kept), the anchors come first, and at
  most ``issuers_per_cert`` are considered (RFC 4158 3.5's ordering advice);
  when more compete for those places, the ones whose signature on the
  certificate verifies go first (names and key identifiers are only claims);
- at most ``paths`` complete candidates are tried, ``expansions`` partial
  paths extended and ``aia_fetches`` issuers fetched; past any of these the
  search stops and says which (``limit``).

Every bound counts work, not time; the whole decision also has a time budget
(``decision_seconds``) enforced by the service, for the network waits.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from gateway.core.certs import CertRef

from .chain import MAX_CARRIED_CERTIFICATES, IssuerCache, ca_issuer_urls, parses
from .fetch import FetchError


@dataclass(frozen=True, slots=True)
class PathLimits:
    """How much work one trust decision may cost. The defaults are generous for
    Direct (a HISP's chain is two to four certificates, RFC 4158's bridge
    topologies a few more) and small enough that a message crafted to explode
    path building costs about what a normal one does."""

    issuers_per_cert: int = 4
    """Candidate issuers considered for one certificate: a CA in key rollover
    has two (old-with-new, RFC 4210 4.4), cross-certified by two communities
    four."""
    paths: int = 8
    """Complete candidate paths (ending at an anchor) validated before giving up."""
    expansions: int = 64
    """Partial paths extended by one issuer, dead ends included: 8 paths of
    8 certificates."""
    chain_length: int = 8
    """Certificates in a path, leaf and anchor included (Direct HISPs use 2-4)."""
    aia_fetches: int = 4
    """Issuer certificates fetched through AIA caIssuers per decision (Direct
    item 11 needs one: the intermediate the sender left out)."""
    aia_urls_per_cert: int = 2
    """caIssuers URLs tried for one certificate; a certificate listing a hundred
    would otherwise cost a hundred timeouts."""
    decision_seconds: float = 30.0
    """Wall time for one decision, network waits included: three fetch
    timeouts (``FETCH_TIMEOUT_SECONDS``) back to back. Past it the decision is
    a temporary failure (the network may answer sooner later)."""


DEFAULT_LIMITS = PathLimits()


class Limit(enum.Enum):
    """Which bound stopped a search with candidates left unexplored."""

    PATHS = "paths"
    EXPANSIONS = "expansions"


def _aki(cert: CertRef) -> bytes | None:
    try:
        return cert.x509.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    except (x509.ExtensionNotFound, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class _Facts:
    """What path building compares, read once per certificate. Names are
    compared as RFC 5280 7.1 says (case and spaces folded in directory
    strings): asn1crypto's ``Name.hashable``, the comparison the validator
    itself uses, so no variant spelling of a name escapes the bounds here
    to be matched there."""

    subject: str
    issuer: str
    spki: bytes
    aki: bytes | None
    ski: bytes | None


def _facts(cert: CertRef) -> _Facts:
    try:
        tbs = asn1_x509.Certificate.load(cert.der)["tbs_certificate"]
        subject, issuer = tbs["subject"].hashable, tbs["issuer"].hashable
        spki = tbs["subject_public_key_info"].dump()
    except (ValueError, TypeError, KeyError):  # the leaf only: others are checked by ``parses``
        subject, issuer, spki = cert.subject_der.hex(), cert.issuer_der.hex(), cert.der
    return _Facts(subject, issuer, spki, _aki(cert), cert.subject_key_identifier)


def _issued_by(cert: _Facts, candidate: _Facts) -> bool:
    """``candidate`` may have issued ``cert``: its subject is ``cert``'s issuer
    and, when both say, its key identifier is the one ``cert`` names (RFC 5280 4.2.1.1)."""
    if candidate.subject != cert.issuer:
        return False
    return cert.aki is None or candidate.ski is None or cert.aki == candidate.ski


class PathSearch:
    """The candidate paths for ``leaf``, leaf first and anchor last, best first.

    ``pool`` holds every usable non-anchor certificate the search knew of
    (carried, then fetched); ``problems`` the AIA fetches that failed;
    ``dead_end`` the first chain that reached no anchor (for the failure
    message); ``limit`` the bound that cut the search short, if one did.
    """

    def __init__(
        self,
        leaf: CertRef,
        carried: Sequence[CertRef],
        anchors: Sequence[CertRef],
        issuers: IssuerCache,
        at: datetime,
        limits: PathLimits = DEFAULT_LIMITS,
    ) -> None:
        self._leaf = leaf
        self._anchors = tuple(anchors)
        self._anchor_set = set(anchors)
        self._issuers = issuers
        self._at = at
        self.limits = limits
        self._facts: dict[CertRef, _Facts] = {}
        self._verified: dict[tuple[CertRef, CertRef], bool] = {}
        self._by_subject: dict[str, list[CertRef]] = {}
        self._anchors_by_subject: dict[str, list[CertRef]] = {}
        for a in self._anchors:
            if parses(a):
                self._anchors_by_subject.setdefault(self._of(a).subject, []).append(a)
        self.pool: list[CertRef] = []
        unique = dict.fromkeys(c for c in carried if c != leaf and c not in self._anchor_set)
        for c in list(unique)[:MAX_CARRIED_CERTIFICATES]:
            self._add(c)
        self.problems: list[FetchError] = []
        self.dead_end: tuple[CertRef, ...] | None = None
        self.limit: Limit | None = None
        self.expansions = 0
        self.fetches = 0
        self.yielded = 0

    def _of(self, cert: CertRef) -> _Facts:
        facts = self._facts.get(cert)
        if facts is None:
            facts = self._facts[cert] = _facts(cert)
        return facts

    def _add(self, cert: CertRef) -> None:
        if cert in self._facts or cert in self._anchor_set or not parses(cert):
            return
        self._by_subject.setdefault(self._of(cert).subject, []).append(cert)
        self.pool.append(cert)

    def _key(self, cert: CertRef) -> tuple[str, bytes]:
        facts = self._of(cert)
        return facts.subject, facts.spki

    async def paths(self) -> AsyncIterator[tuple[CertRef, ...]]:
        stack: list[tuple[CertRef, ...]] = [(self._leaf,)]
        while stack:
            path = stack.pop()
            current = path[-1]
            if current in self._anchor_set:
                if self.yielded >= self.limits.paths:
                    self.limit = Limit.PATHS
                    return
                self.yielded += 1
                yield path
                continue
            if len(path) >= self.limits.chain_length:
                self._dead(path)
                continue
            if self.expansions >= self.limits.expansions:
                self.limit = Limit.EXPANSIONS
                return
            self.expansions += 1
            candidates = await self._issuers_of(current, path)
            if not candidates:
                self._dead(path)
                continue
            stack.extend((*path, c) for c in reversed(candidates))

    def _dead(self, path: tuple[CertRef, ...]) -> None:
        if self.dead_end is None:
            self.dead_end = path

    async def _issuers_of(self, cert: CertRef, path: tuple[CertRef, ...]) -> list[CertRef]:
        facts = self._of(cert)
        on_path = {self._key(c) for c in path}
        anchors = [
            a for a in self._anchors_by_subject.get(facts.issuer, ())
            if _issued_by(facts, self._of(a)) and self._key(a) not in on_path
        ]
        local = self._local_issuers(facts, on_path)
        if not anchors and not local and facts.subject != facts.issuer:
            await self._fetch_issuers(cert)
            local = self._local_issuers(facts, on_path)
        room = self.limits.issuers_per_cert - len(anchors)
        if len(local) > room > 0:
            # more look-alikes than the bound lets through (names and key
            # identifiers are only claims): those whose signature on ``cert``
            # verifies go first, so crafted ones cannot crowd out the issuer
            local.sort(key=lambda c: not self._signed(cert, c))
        return (anchors + local)[: self.limits.issuers_per_cert]

    def _signed(self, cert: CertRef, issuer: CertRef) -> bool:
        key = (cert, issuer)
        if key not in self._verified:
            try:
                cert.x509.verify_directly_issued_by(issuer.x509)
                self._verified[key] = True
            except (ValueError, TypeError, InvalidSignature):
                self._verified[key] = False
        return self._verified[key]

    def _local_issuers(self, cert: _Facts, on_path: set[tuple[str, bytes]]) -> list[CertRef]:
        found = [
            c for c in self._by_subject.get(cert.issuer, ())
            if _issued_by(cert, self._of(c)) and self._key(c) not in on_path
        ]
        # best first: the key identifier named exactly, valid now, the longest-lived
        found.sort(key=lambda c: (
            cert.aki is None or self._of(c).ski != cert.aki, not c.valid_at(self._at), -c.not_after.timestamp()
        ))
        same: set[tuple[str, bytes, str, bytes | None]] = set()
        out: list[CertRef] = []
        for c in found:
            f = self._of(c)
            ident = (f.subject, f.spki, f.issuer, f.aki)
            if ident not in same:
                same.add(ident)
                out.append(c)
        return out

    async def _fetch_issuers(self, cert: CertRef) -> None:
        """RFC 5280 4.2.2.1 / Direct item 11: fetch the issuer the sender left out."""
        facts = self._of(cert)
        for url in ca_issuer_urls(cert)[: self.limits.aia_urls_per_cert]:
            if self.fetches >= self.limits.aia_fetches:
                return
            self.fetches += 1
            try:
                fetched = await self._issuers.fetch(url, self._at)
            except FetchError as exc:
                self.problems.append(exc)
                continue
            for c in fetched:
                self._add(c)
            if any(c in self._facts and _issued_by(facts, self._of(c)) for c in fetched):
                return

    def building_pool(self, path: Sequence[CertRef]) -> list[CertRef]:
        """The certificates to give the validator with ``path``: the path's own,
        and of the rest of the pool only those whose name is not an issuer name
        on the path, so the validator's own path building can find no other
        ordering (it tries every certificate of a matching name) while a CRL
        issuer's certificate carried in the message is still at hand."""
        names = {self._of(c).issuer for c in path}
        members = set(path)
        return [c for c in self.pool if c in members or self._of(c).subject not in names]
