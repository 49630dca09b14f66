"""One bounded HTTP client for every URL the gateway fetches.

``Fetcher`` is the interface (GET, and POST for OCSP); ``HttpFetcher`` speaks
HTTP through aiohttp; ``OfflineFetcher`` refuses every request. Every answer
is bounded in size (the caller's ``max_bytes``), in time (one total timeout
covering name resolution, redirects and the body) and in redirects.

Where it connects (``destinations``, public addresses by default): each hop
resolves the URL's host itself, checks every address the name has, and then
connects to the checked address, the URL's host replaced by the IP and the
name kept in the Host header and for TLS (SNI, certificate check). Asking the
resolver a second time at connect time would let a name answer a public
address to the check and 127.0.0.1 to the connection (DNS rebinding).
Redirects are followed here, not by aiohttp, so each new location is
resolved and checked the same way.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import aiohttp
from yarl import URL

from .destinations import AddressClass, Destinations, IPAddress

FETCH_TIMEOUT_SECONDS = 10.0
"""Inbound judging waits on this; the sender's SMTP client waits minutes, but
queued mail behind it should not."""
MAX_REDIRECTS = 3
"""A CA that moved its CRL needs one; a chain of them is a loop or a lure."""
MAX_ADDRESSES_TRIED = 2
"""Addresses of one name tried in turn when a connection fails (IPv6, then
IPv4, say); each was checked."""
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024


class FetchProblem(enum.Enum):
    UNREACHABLE = "unreachable"
    TIMEOUT = "timeout"
    HTTP_STATUS = "http-status"
    TOO_LARGE = "too-large"
    UNSUPPORTED_URL = "unsupported-url"
    OFFLINE = "offline"
    INVALID = "invalid"
    FORBIDDEN_DESTINATION = "forbidden-destination"
    """The URL, or a redirect, leads to an address that is not public (``Destinations``)."""
    TOO_MANY_REDIRECTS = "too-many-redirects"


class FetchError(Exception):
    def __init__(
        self,
        url: str,
        problem: FetchProblem,
        detail: str,
        *,
        status: int | None = None,
        refused: AddressClass | None = None,
    ) -> None:
        self.url = url
        self.problem = problem
        self.detail = detail
        self.status = status
        """The HTTP status, for HTTP_STATUS."""
        self.refused = refused
        """The kind of address refused, for FORBIDDEN_DESTINATION."""
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


@dataclass(frozen=True, slots=True)
class _Hop:
    """One request: the checked addresses to connect to, in order, and how to name the host."""

    connect: tuple[URL, ...]
    host_header: str | None
    server_hostname: str | None


class HttpFetcher:
    """HTTP GET/POST with a size cap, a total timeout, bounded redirects, and
    connections only to ``destinations`` (public addresses unless told).

    By default only http:// URLs: CRLs and CA certificates are signed objects,
    and RFC 5280 4.2.1.13 notes that fetching them over TLS invites circular
    dependencies. Trust bundles, published over HTTPS, widen ``schemes``. Give
    it an ``aiohttp.ClientSession`` to share connections; it closes only one it
    made. Tests against servers on loopback pass
    ``destinations=Destinations.allowing(["127.0.0.1/32"])``.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession | None = None,
        *,
        timeout: float = FETCH_TIMEOUT_SECONDS,
        schemes: tuple[str, ...] = ("http",),
        destinations: Destinations | None = None,
        max_redirects: int = MAX_REDIRECTS,
    ) -> None:
        self._schemes = tuple(s.lower() for s in schemes)
        self._session = session
        self._owned = session is None
        self._timeout = timeout
        self.destinations = destinations if destinations is not None else Destinations.public()
        self._max_redirects = max_redirects

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        if self._owned and self._session is not None:
            await self._session.close()
            self._session = None

    async def get(self, url: str, *, max_bytes: int) -> bytes:
        return await self._fetch("GET", url, None, None, max_bytes)

    async def post(self, url: str, body: bytes, *, content_type: str, max_bytes: int) -> bytes:
        return await self._fetch("POST", url, body, content_type, max_bytes)

    async def _fetch(
        self, method: str, url: str, body: bytes | None, content_type: str | None, max_bytes: int
    ) -> bytes:
        try:
            async with asyncio.timeout(self._timeout):
                return await self._follow(method, url, body, content_type, max_bytes)
        except TimeoutError as exc:
            raise FetchError(url, FetchProblem.TIMEOUT, f"no answer within {self._timeout} s") from exc

    async def _follow(
        self, method: str, url: str, body: bytes | None, content_type: str | None, max_bytes: int
    ) -> bytes:
        current = self._parse(url, url)
        for _ in range(self._max_redirects + 1):
            hop = await self._hop(url, current)
            location = await self._request(method, url, current, hop, body, content_type, max_bytes)
            if isinstance(location, bytes):
                return location
            current = self._parse(url, str(current.join(location)))
        raise FetchError(url, FetchProblem.TOO_MANY_REDIRECTS, f"more than {self._max_redirects} redirects")

    def _parse(self, original: str, url: str) -> URL:
        try:
            parsed = URL(url)
            parsed.port  # noqa: B018 -- a port that is not a number raises here
        except (ValueError, TypeError) as exc:
            raise FetchError(original, FetchProblem.UNSUPPORTED_URL, f"not a URL: {url}") from exc
        if parsed.scheme.lower() not in self._schemes:
            raise FetchError(
                original, FetchProblem.UNSUPPORTED_URL, f"only {' and '.join(s + '://' for s in self._schemes)} URLs are fetched"
            )
        if not parsed.host or parsed.user is not None or parsed.password is not None:
            raise FetchError(original, FetchProblem.UNSUPPORTED_URL, f"{url}: a URL needs a host and no credentials")
        return parsed.with_fragment(None)

    async def _hop(self, original: str, url: URL) -> _Hop:
        """Resolve and check ``url``'s host; the URL to connect to names the checked address."""
        assert url.host is not None and url.port is not None  # _parse
        if not self.destinations.check:
            return _Hop((url,), None, None)
        addresses = await self._resolve(original, url.host, url.raw_host or url.host, url.port)
        for address in addresses:
            kind = self.destinations.refused(address)
            if kind is not None:
                where = url.host if str(address) == url.host else f"{url.host} ({address})"
                raise FetchError(
                    original,
                    FetchProblem.FORBIDDEN_DESTINATION,
                    f"{where} is a {kind.value} address; only public addresses are fetched unless "
                    f"allowed in configuration ([trust] fetch_allow)",
                    refused=kind,
                )
        literal = _literal(url.host)
        https = url.scheme.lower() == "https"
        return _Hop(
            tuple(url.with_host(str(a)) for a in addresses[:MAX_ADDRESSES_TRIED]),
            url.host_port_subcomponent,
            (url.raw_host or url.host) if https and literal is None else None,
        )

    async def _resolve(self, original: str, host: str, ascii_host: str, port: int) -> Sequence[IPAddress]:
        literal = _literal(host)
        if literal is not None:
            return [literal]
        try:
            # the IDNA form yarl made, the name aiohttp would have asked for
            infos = await asyncio.get_running_loop().getaddrinfo(
                ascii_host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
            )
        except (OSError, UnicodeError) as exc:
            raise FetchError(original, FetchProblem.UNREACHABLE, f"cannot resolve {host}: {exc}") from exc
        # every address the name has is checked: a name answering a public and
        # a private address is refused, whichever a connection would pick
        found = [ipaddress.ip_address(str(info[4][0]).partition("%")[0]) for info in infos]
        if not found:
            raise FetchError(original, FetchProblem.UNREACHABLE, f"{host} has no address")
        return list(dict.fromkeys(found))

    async def _request(
        self,
        method: str,
        original: str,
        url: URL,
        hop: _Hop,
        body: bytes | None,
        content_type: str | None,
        max_bytes: int,
    ) -> bytes | URL:
        """The body, or the URL a redirect points to."""
        headers = {"Content-Type": content_type} if content_type else {}
        if hop.host_header is not None:
            headers["Host"] = hop.host_header
        for n, connect in enumerate(hop.connect):
            try:
                return await self._exchange(method, original, connect, hop, headers, body, max_bytes)
            except aiohttp.ClientConnectorError as exc:
                if n + 1 == len(hop.connect):
                    raise FetchError(original, FetchProblem.UNREACHABLE, str(exc) or type(exc).__name__) from exc
            except (aiohttp.ClientError, OSError, ValueError) as exc:  # ValueError: a URL aiohttp cannot use
                raise FetchError(original, FetchProblem.UNREACHABLE, str(exc) or type(exc).__name__) from exc
        raise AssertionError("a hop has at least one address")

    async def _exchange(
        self,
        method: str,
        original: str,
        connect: URL,
        hop: _Hop,
        headers: dict[str, str],
        body: bytes | None,
        max_bytes: int,
    ) -> bytes | URL:
        async with self._client().request(
            method, connect, data=body, headers=headers, allow_redirects=False, server_hostname=hop.server_hostname
        ) as resp:
            if resp.status in _REDIRECTS and method == "GET" and "Location" in resp.headers:
                try:
                    return URL(resp.headers["Location"])
                except (ValueError, TypeError) as exc:
                    raise FetchError(original, FetchProblem.UNSUPPORTED_URL, "a redirect to a malformed URL") from exc
            if resp.status != 200:
                raise FetchError(
                    original, FetchProblem.HTTP_STATUS, f"HTTP {resp.status} {resp.reason or ''}".strip(),
                    status=resp.status,
                )
            if resp.content_length is not None and resp.content_length > max_bytes:
                raise FetchError(original, FetchProblem.TOO_LARGE, f"{resp.content_length} bytes, limit {max_bytes}")
            data = bytearray()
            async for chunk in resp.content.iter_chunked(_CHUNK):
                data += chunk
                if len(data) > max_bytes:
                    raise FetchError(original, FetchProblem.TOO_LARGE, f"over the limit of {max_bytes} bytes")
            return bytes(data)


def _literal(host: str) -> IPAddress | None:
    """``host`` as an IP address when it is written as one (yarl gives IPv6 without brackets)."""
    try:
        return ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return None
