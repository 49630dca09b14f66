"""Fetching what path validation needs from the network: CA certificates named
by AIA caIssuers (RFC 5280 4.2.2.1, Direct item 11), CRLs named by CRL
distribution points (RFC 5280 4.2.1.13, Direct item 10) and OCSP answers
(RFC 6960 appendix A.1, HTTP POST).

``Fetcher`` is the interface; ``HttpFetcher`` speaks HTTP through aiohttp with
a bounded size and time for every answer; ``OfflineFetcher`` refuses every
request (``directgw verify`` and tests judge only what they were given).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

import aiohttp

MAX_CERT_BYTES = 64 * 1024
"""A certificate or a PKCS#7 bundle of a few (DCDT D18 serves one CA certificate)."""
MAX_CRL_BYTES = 10 * 1024 * 1024
"""Large public CAs publish CRLs of a few MB; anything bigger is refused rather than held."""
MAX_OCSP_BYTES = 64 * 1024
FETCH_TIMEOUT_SECONDS = 10.0
"""Inbound judging waits on this; the sender's SMTP client waits minutes, but
queued mail behind it should not."""


class FetchProblem(enum.Enum):
    UNREACHABLE = "unreachable"
    TIMEOUT = "timeout"
    HTTP_STATUS = "http-status"
    TOO_LARGE = "too-large"
    UNSUPPORTED_URL = "unsupported-url"
    OFFLINE = "offline"
    INVALID = "invalid"


class FetchError(Exception):
    def __init__(self, url: str, problem: FetchProblem, detail: str, *, status: int | None = None) -> None:
        self.url = url
        self.problem = problem
        self.detail = detail
        self.status = status
        """The HTTP status, for HTTP_STATUS."""
        super().__init__(f"{url}: {problem.value}: {detail}")


class Fetcher(Protocol):
    async def get(self, url: str, *, max_bytes: int) -> bytes: ...

    async def post(self, url: str, body: bytes, *, content_type: str, max_bytes: int) -> bytes: ...


@dataclass(frozen=True)
class OfflineFetcher:
    """No network: every fetch fails, so a certificate that needs one is judged on what was given."""

    async def get(self, url: str, *, max_bytes: int) -> bytes:
        raise FetchError(url, FetchProblem.OFFLINE, "fetching is disabled (offline)")

    async def post(self, url: str, body: bytes, *, content_type: str, max_bytes: int) -> bytes:
        raise FetchError(url, FetchProblem.OFFLINE, "fetching is disabled (offline)")


class HttpFetcher:
    """HTTP GET/POST with a size cap and a total timeout. By default only
    http:// URLs: CRLs and CA certificates are signed objects, and RFC 5280
    4.2.1.13 notes that fetching them over TLS invites circular dependencies.
    Trust bundles, which are published over HTTPS, widen ``schemes``. Give it an
    ``aiohttp.ClientSession`` to share connections; it closes only one it made."""

    def __init__(
        self,
        session: aiohttp.ClientSession | None = None,
        *,
        timeout: float = FETCH_TIMEOUT_SECONDS,
        schemes: tuple[str, ...] = ("http",),
    ) -> None:
        self._schemes = tuple(f"{s.lower()}://" for s in schemes)
        self._session = session
        self._owned = session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        if self._owned and self._session is not None:
            await self._session.close()
            self._session = None

    async def get(self, url: str, *, max_bytes: int) -> bytes:
        return await self._request("GET", url, None, None, max_bytes)

    async def post(self, url: str, body: bytes, *, content_type: str, max_bytes: int) -> bytes:
        return await self._request("POST", url, body, content_type, max_bytes)

    async def _request(
        self, method: str, url: str, body: bytes | None, content_type: str | None, max_bytes: int
    ) -> bytes:
        if not url.lower().startswith(self._schemes):
            raise FetchError(url, FetchProblem.UNSUPPORTED_URL, f"only {' and '.join(self._schemes)} URLs are fetched")
        headers = {"Content-Type": content_type} if content_type else {}
        try:
            async with self._client().request(
                method, url, data=body, headers=headers, timeout=self._timeout, allow_redirects=True
            ) as resp:
                if resp.status != 200:
                    raise FetchError(
                        url, FetchProblem.HTTP_STATUS, f"HTTP {resp.status} {resp.reason or ''}".strip(),
                        status=resp.status,
                    )
                if resp.content_length is not None and resp.content_length > max_bytes:
                    raise FetchError(url, FetchProblem.TOO_LARGE, f"{resp.content_length} bytes, limit {max_bytes}")
                data = bytearray()
                async for chunk in resp.content.iter_chunked(64 * 1024):
                    data += chunk
                    if len(data) > max_bytes:
                        raise FetchError(url, FetchProblem.TOO_LARGE, f"over the limit of {max_bytes} bytes")
                return bytes(data)
        except TimeoutError as exc:
            raise FetchError(url, FetchProblem.TIMEOUT, f"no answer within {self._timeout.total} s") from exc
        except (aiohttp.ClientError, OSError, ValueError) as exc:  # ValueError: a URL aiohttp cannot use
            raise FetchError(url, FetchProblem.UNREACHABLE, str(exc) or type(exc).__name__) from exc
