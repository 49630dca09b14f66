"""A real HTTP server on 127.0.0.1 for CRLs, CA certificates (AIA) and OCSP.

Routes map a path to bytes (GET) or to a function of the request body (POST);
``hits`` counts requests per path, so a test can prove a cache held.
The fetcher refuses loopback unless allowed: tests build theirs with
``destinations=LOOPBACK_ALLOWED``, as the ``fetcher`` fixture does.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

import pytest
from aiohttp import web

from trust import Destinations, HttpFetcher

LOOPBACK_ALLOWED = Destinations.allowing(["127.0.0.0/8", "::1/128"])
"""Fetches in tests go to servers on loopback, which the fetcher refuses unless allowed."""


class LoopbackHttp:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.posts: dict[str, Callable[[bytes], bytes]] = {}
        self.hits: Counter[str] = Counter()
        self.delays: dict[str, float] = {}
        self.redirects: dict[str, str] = {}
        """A path answered by a 302 to this location."""
        self.hosts: list[str] = []
        """The Host header of each request, in order."""
        """Seconds to wait before answering a path (a responder that hangs)."""
        self._runner: web.AppRunner | None = None
        self.port = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.Response:
        self.hits[request.path] += 1
        self.hosts.append(request.headers.get("Host", ""))
        if request.path in self.redirects:
            return web.Response(status=302, headers={"Location": self.redirects[request.path]})
        if request.path in self.delays:
            await asyncio.sleep(self.delays[request.path])
        if request.method == "POST" and request.path in self.posts:
            body = await request.read()
            return web.Response(body=self.posts[request.path](body), content_type="application/ocsp-response")
        if request.method == "GET" and request.path in self.files:
            return web.Response(body=self.files[request.path], content_type="application/octet-stream")
        return web.Response(status=404)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr,attr-defined,unused-ignore]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture(name="http")
async def http_fixture():
    server = LoopbackHttp()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture(name="fetcher")
async def fetcher_fixture():
    f = HttpFetcher(timeout=2.0, destinations=LOOPBACK_ALLOWED)
    yield f
    await f.close()
