"""Trust bundles fetched by URL and refreshed on an interval (Direct item 15).

A refresh downloads the bundle (bounded in size and time), and if its SHA-256
equals the stored checksum does nothing more. Otherwise it reads it exactly as
``anchors add`` would (``importing.read_anchor_file``, checking the signer when
one is configured) and, in one transaction, stores the new copy and swaps the
bundle's anchors. Any failure leaves the last good copy and its anchors in
place and records a typed ``RefreshProblem``; the bundle is retried sooner than
its interval.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import aiohttp
from sqlalchemy import delete, func, select, update

from gateway.common.destinations import Destinations
from gateway.common.http_fetch import Fetcher, FetchError, FetchProblem, HttpFetcher
from gateway.core.certs import CertRef
from gateway.store import Store, StoreError, StoreProblem, schema
from gateway.store.lookups import domain_id

from .importing import AnchorFileError, AnchorProblem, read_anchor_file
from .source import Direction
from .store import bundle_source, replace_bundle_rows

MAX_BUNDLE_BYTES = 5 * 1024 * 1024
"""The same bound as an uploaded anchor file (see importing.MAX_ANCHOR_FILE_BYTES)."""
BUNDLE_TIMEOUT_SECONDS = 30.0
"""Whole download, connect included: community bundle hosts answer in seconds."""
DEFAULT_REFRESH = timedelta(hours=6)
MIN_REFRESH = timedelta(minutes=1)
MAX_REFRESH = timedelta(days=30)
"""A bundle unrefreshed for longer is stale: revoked members stay trusted."""
RETRY_AFTER_FAILURE = timedelta(minutes=15)
"""A failed refresh is retried this soon (or at the interval, if shorter)."""


class RefreshProblem(enum.Enum):
    NOT_FOUND = "not-found"
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    INVALID_FORMAT = "invalid-format"
    INVALID_SIGNER = "invalid-signer"


class RefreshError(Exception):
    def __init__(self, url: str, problem: RefreshProblem, detail: str) -> None:
        self.url = url
        self.problem = problem
        self.detail = detail
        super().__init__(f"{url}: {problem.value}: {detail}")


class BundleDefinitionError(ValueError):
    """A bundle that cannot be added as given (its URL or interval)."""


class RefreshStatus(enum.Enum):
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class RefreshOutcome:
    bundle_id: int
    url: str
    status: RefreshStatus
    certificates: int
    """Certificates the bundle holds now (the last good copy's, after a failure)."""
    problem: RefreshProblem | None = None
    detail: str = ""
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class BundleRecord:
    id: int
    domain: str
    url: str
    directions: tuple[Direction, ...]
    refresh: timedelta
    signer: CertRef | None
    checksum: str | None
    certificates: int
    last_refresh_at: datetime | None
    last_status: str | None
    last_error: str | None
    next_refresh_at: datetime
    added_at: datetime


def _directions(text: str) -> tuple[Direction, ...]:
    return tuple(Direction(d) for d in text.split(",") if d)


_REFRESH_PROBLEMS = {
    FetchProblem.TIMEOUT: RefreshProblem.TIMEOUT,
    FetchProblem.TOO_LARGE: RefreshProblem.INVALID_FORMAT,
    FetchProblem.INVALID: RefreshProblem.INVALID_FORMAT,
}


async def download(fetcher: Fetcher, url: str, *, max_bytes: int) -> bytes:
    """The body at ``url`` through the trust engine's fetcher, or a typed ``RefreshError``."""
    try:
        return await fetcher.get(url, max_bytes=max_bytes)
    except FetchError as exc:
        if exc.status in (404, 410):
            raise RefreshError(url, RefreshProblem.NOT_FOUND, exc.detail) from exc
        problem = _REFRESH_PROBLEMS.get(exc.problem, RefreshProblem.UNREACHABLE)
        raise RefreshError(url, problem, exc.detail) from exc


_LISTED = (
    select(schema.bundles, schema.domains.c.name.label("domain"))
    .join(schema.domains, schema.domains.c.id == schema.bundles.c.domain_id)
    .order_by(schema.bundles.c.id)
)


class Bundles:
    """The bundles table, and refreshing it. ``session`` is only needed to refresh."""

    def __init__(
        self,
        store: Store,
        session: aiohttp.ClientSession | None = None,
        *,
        timeout: float = BUNDLE_TIMEOUT_SECONDS,
        max_bytes: int = MAX_BUNDLE_BYTES,
    ) -> None:
        self._store = store
        self._fetcher = (
            # any address: the administrator typed this URL (an internal bundle
            # host is theirs to choose); the public-only rule is for URLs a
            # peer's certificate or DNS zone names (gateway.common.destinations)
            HttpFetcher(session, timeout=timeout, schemes=("http", "https"), destinations=Destinations.anywhere())
            if session is not None
            else None
        )
        self._max_bytes = max_bytes

    async def add(
        self, url: str, domain: str, directions: tuple[Direction, ...], *, refresh: timedelta,
        signer: CertRef | None, at: datetime,
    ) -> BundleRecord:
        try:
            parsed = urlsplit(url)
            host = parsed.hostname
            parsed.port  # noqa: B018 -- raises on a port that is not a number
        except ValueError as exc:
            raise BundleDefinitionError(f"{url}: not a URL ({exc})") from exc
        if parsed.scheme not in ("http", "https") or not host:
            raise BundleDefinitionError(f"{url}: a bundle URL must be http:// or https:// with a host")
        if refresh < MIN_REFRESH:
            raise BundleDefinitionError(f"a refresh interval under {MIN_REFRESH} would hammer {url}")
        if refresh > MAX_REFRESH:
            raise BundleDefinitionError(f"a refresh interval over {MAX_REFRESH.days} days would leave {url} stale")
        async with self._store.begin() as conn:
            did = await domain_id(conn, domain)
            taken = await conn.scalar(
                select(func.count()).where(schema.bundles.c.domain_id == did).where(schema.bundles.c.url == url)
            )
            if taken:
                raise StoreError(StoreProblem.CONFLICT, f"{url} is already a bundle of {domain}")
            result = await conn.execute(  # a racing add of the same URL fails on the unique constraint
                schema.bundles.insert().values(
                    domain_id=did, url=url, directions=",".join(d.value for d in directions),
                    refresh_seconds=int(refresh.total_seconds()), signer_der=signer.der if signer else None,
                    next_refresh_at=at, added_at=at,
                )
            )
            assert result.inserted_primary_key is not None
            bundle_id = int(result.inserted_primary_key[0])
        return await self.get(bundle_id)

    async def all(self) -> list[BundleRecord]:
        async with self._store.engine.connect() as conn:
            rows = (await conn.execute(_LISTED)).all()
            counted = await conn.execute(
                select(schema.anchors.c.source, func.count()).group_by(schema.anchors.c.source)
            )
            counts: dict[str, int] = {str(source): int(n) for source, n in counted.all()}
        return [self._record(r, counts) for r in rows]

    async def get(self, bundle_id: int) -> BundleRecord:
        for record in await self.all():
            if record.id == bundle_id:
                return record
        raise StoreError(StoreProblem.NOT_FOUND, f"no bundle with id {bundle_id}")

    @staticmethod
    def _record(row: object, counts: dict[str, int]) -> BundleRecord:
        r = row._mapping  # type: ignore[attr-defined]
        directions = _directions(r["directions"])
        held = counts.get(bundle_source(r["id"]), 0) // max(len(directions), 1)
        return BundleRecord(
            r["id"], r["domain"], r["url"], directions, timedelta(seconds=r["refresh_seconds"]),
            CertRef(bytes(r["signer_der"])) if r["signer_der"] is not None else None, r["checksum"], held,
            r["last_refresh_at"], r["last_status"], r["last_error"], r["next_refresh_at"], r["added_at"],
        )

    async def remove(self, bundle_id: int) -> BundleRecord:
        record = await self.get(bundle_id)
        async with self._store.begin() as conn:
            await conn.execute(delete(schema.anchors).where(schema.anchors.c.source == bundle_source(bundle_id)))
            await conn.execute(delete(schema.bundles).where(schema.bundles.c.id == bundle_id))
        return record

    async def refresh_due(self, at: datetime, *, force: bool = False) -> list[RefreshOutcome]:
        """Refresh every bundle whose time has come (all of them with ``force``)."""
        return [await self.refresh(b, at) for b in await self.all() if force or b.next_refresh_at <= at]

    async def refresh(self, bundle: BundleRecord, at: datetime) -> RefreshOutcome:
        if self._fetcher is None:
            raise RuntimeError("Bundles needs an aiohttp session to refresh")
        try:
            data = await download(self._fetcher, bundle.url, max_bytes=self._max_bytes)
            checksum = hashlib.sha256(data).hexdigest()
            if checksum == bundle.checksum:
                await self._mark(bundle, at, RefreshStatus.UNCHANGED.value, None, bundle.refresh)
                return RefreshOutcome(bundle.id, bundle.url, RefreshStatus.UNCHANGED, bundle.certificates)
            try:
                imported = read_anchor_file(data, bundle.url, at=at, signer=bundle.signer)
            except AnchorFileError as exc:
                signer_problems = (AnchorProblem.WRONG_SIGNER, AnchorProblem.INVALID_SIGNATURE, AnchorProblem.UNSIGNED)
                problem = RefreshProblem.INVALID_SIGNER if exc.problem in signer_problems else RefreshProblem.INVALID_FORMAT
                raise RefreshError(bundle.url, problem, exc.detail) from exc
        except RefreshError as exc:
            await self._mark(bundle, at, exc.problem.value, exc.detail, min(bundle.refresh, RETRY_AFTER_FAILURE))
            return RefreshOutcome(
                bundle.id, bundle.url, RefreshStatus.FAILED, bundle.certificates, exc.problem, exc.detail
            )
        async with self._store.begin() as conn:
            did = await domain_id(conn, bundle.domain)
            await replace_bundle_rows(
                conn, self._store.dialect, did, bundle.id, bundle.directions, imported.certificates, at
            )
            await conn.execute(
                update(schema.bundles).where(schema.bundles.c.id == bundle.id).values(
                    last_good=data, checksum=checksum, last_refresh_at=at, last_status=RefreshStatus.UPDATED.value,
                    last_error=None, next_refresh_at=at + bundle.refresh,
                )
            )
        return RefreshOutcome(
            bundle.id, bundle.url, RefreshStatus.UPDATED, len(set(imported.certificates)),
            warnings=imported.warnings,
        )

    async def _mark(self, bundle: BundleRecord, at: datetime, status: str, error: str | None, wait: timedelta) -> None:
        async with self._store.begin() as conn:
            await conn.execute(
                update(schema.bundles).where(schema.bundles.c.id == bundle.id).values(
                    last_refresh_at=at, last_status=status, last_error=error, next_refresh_at=at + wait,
                )
            )
