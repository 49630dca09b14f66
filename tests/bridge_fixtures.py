"""A running records bridge for tests, over the ``store`` fixture (SQLite and PostgreSQL).

Import the fixtures into a test module::

    from tests.bridge_fixtures import bridge_fixture  # noqa: F401 -- fixture
    from tests.storage_fixtures import store_fixture, store_url_fixture  # noqa: F401 -- fixtures

``bridge`` is a ``Bridge``: the real aiohttp app on 127.0.0.1 (a free port),
a pinned clock tests move with ``bridge.clock.advance(seconds)``, and helpers
to make people, clients and tokens without going through pages, and a
``browser()`` (a cookie-keeping HTTP client) that signs in like a person.
``authorize_code_flow`` walks the whole authorization code + PKCE flow the way
an app and a browser do.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import pytest
from aiohttp import web

from records_bridge.oauth.clients import ClientSpec, ClientStore, NewClient
from records_bridge.oauth.tokens import Issued, grant_in, issue_in, new_family_in
from records_bridge.people import Person
from records_bridge.store import RecordStore
from records_bridge.web.account import sign_up
from records_bridge.web.app import build_app
from records_bridge.web.context import BridgeContext
from records_bridge.web.settings import BridgeSettings
from tests.servers.common import free_port

T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def csrf_from(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, code_challenge) for S256 (RFC 7636 4.1, 4.2)."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = f"{client_id}:{secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


@dataclass
class Browser:
    """A person's browser: keeps cookies, never follows redirects by itself (tests look at them)."""

    session: aiohttp.ClientSession
    base_url: str

    def url(self, path: str) -> str:
        return path if path.startswith("http") else self.base_url + path

    async def get(self, path: str, **kw: Any) -> aiohttp.ClientResponse:
        return await self.session.get(self.url(path), allow_redirects=False, **kw)

    async def post(self, path: str, data: Any = None, **kw: Any) -> aiohttp.ClientResponse:
        return await self.session.post(self.url(path), data=data, allow_redirects=False, **kw)

    async def csrf(self, path: str = "/signin") -> str:
        """The CSRF token shown on ``path`` (the page sets the cookie it is bound to)."""
        async with await self.get(path) as r:
            return csrf_from(await r.text())

    async def sign_in(self, email: str, password: str = PASSWORD) -> aiohttp.ClientResponse:
        token = await self.csrf("/signin")
        return await self.post("/signin", {"email": email, "password": password, "csrf_token": token, "next": "/"})


@dataclass
class Bridge:
    ctx: BridgeContext
    base_url: str
    clock: Clock
    _browsers: list[aiohttp.ClientSession] = field(default_factory=list)

    @property
    def clients(self) -> ClientStore:
        return ClientStore(self.ctx.store, self.ctx.settings.secret("client-secret"))

    def url(self, path: str) -> str:
        return self.base_url + path

    async def browser(self) -> Browser:
        # unsafe=True: accept cookies from an IP-address host (the loopback test server)
        session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self._browsers.append(session)
        return Browser(session, self.base_url)

    async def signed_in(self, email: str | None = None, password: str = PASSWORD) -> tuple[Browser, Person, int]:
        """A browser signed in as a new person; returns it, the person and their own record's id."""
        person, record_id = await self.person(email, password=password)
        b = await self.browser()
        async with await b.sign_in(person.email or "", password) as r:
            assert r.status == 303, await r.text()
        return b, person, record_id

    async def person(self, email: str | None = None, *, name: str = "Pat Patient",
                     password: str = PASSWORD) -> tuple[Person, int]:
        """A person with their own record (as sign-up makes them); returns it and the record's id."""
        address = email or f"p{secrets.token_hex(4)}@example.com"
        person = await sign_up(self.ctx, address, name, password, at=self.clock())
        from records_bridge.access import records_of

        return person, (await records_of(self.ctx.store, person.id))[0].record_id

    async def client(self, name: str = "Test App", *, redirect_uris: Iterable[str] = ("https://app.example/cb",),
                     **spec: Any) -> NewClient:
        """A registered client (ClientSpec's options: public, scopes, required_scopes, optional_scopes, ...)."""
        spec.setdefault("scopes", ("records.*.r",))
        return await self.clients.add(ClientSpec(name, tuple(redirect_uris), **spec), at=self.clock())

    async def user_token(self, client: NewClient, person_id: int, record_ids: Iterable[int],
                         scopes: Iterable[str] = ("records.*.r",), *, offline: bool = False) -> Issued:
        """An access token (and refresh token when ``offline``) as if the person had authorized the app."""
        ids, granted, at = list(record_ids), frozenset(scopes), self.clock()
        pk = client.client.pk

        def mint(conn: Any) -> Issued:
            grants = [grant_in(conn, pk, person_id, r, granted, offline=offline, at=at) for r in ids]
            family = new_family_in(conn, client_pk=pk, person_id=person_id, record_id=ids[0] if ids else None,
                                   scopes=granted, offline=offline, grant_ids=grants, code_id=None, at=at)
            return issue_in(conn, family, granted, refresh=offline, at=at)

        return await self.ctx.store.run(mint)

    async def client_token(self, client: NewClient, scopes: Iterable[str]) -> str:
        """A client-credentials access token, obtained from /oauth/token like an app would."""
        assert client.secret is not None
        async with aiohttp.ClientSession() as http, http.post(
            self.url("/oauth/token"), data={"grant_type": "client_credentials", "scope": " ".join(scopes)},
            headers=basic(client.client.client_id, client.secret),
        ) as r:
            body = await r.json()
            assert r.status == 200, body
            return str(body["access_token"])

    async def authorize_code_flow(self, browser: Browser, client: NewClient, *, scope: str = "records.*.r",
                                  redirect_uri: str | None = None, state: str = "xyz",
                                  form: dict[str, str] | None = None, extra: dict[str, str] | None = None,
                                  ) -> tuple[str, str, str]:
        """Authorize through the pages (the person says Allow); returns (code, code_verifier, redirect_uri)."""
        redirect_uri = redirect_uri or client.client.redirect_uris[0]
        verifier, challenge = pkce_pair()
        query = {"response_type": "code", "client_id": client.client.client_id, "redirect_uri": redirect_uri,
                 "scope": scope, "state": state, "code_challenge": challenge, "code_challenge_method": "S256",
                 **(extra or {})}
        async with await browser.get("/oauth/authorize?" + urlencode(query)) as r:
            page = await r.text()
            assert r.status == 200, page
        fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page))
        fields = {k: _unescape(v) for k, v in fields.items()}
        chosen = re.search(r'name="record"\s+value="(\d+)" checked', page)
        assert chosen, "no record preselected"
        data = {**fields, "record": chosen.group(1), "decision": "allow", **(form or {})}
        async with await browser.post("/oauth/authorize", data) as r:
            assert r.status == 303, await r.text()
            location = r.headers["Location"]
        got = parse_qs(urlsplit(location).query)
        assert got["state"] == [state]
        return got["code"][0], verifier, redirect_uri

    async def exchange(self, client: NewClient, code: str, verifier: str | None, redirect_uri: str,
                       ) -> tuple[int, dict[str, Any]]:
        """POST /oauth/token with the code; (status, JSON body)."""
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        if verifier is not None:
            data["code_verifier"] = verifier
        return await self.token_request(client, data)

    async def token_request(self, client: NewClient, data: dict[str, str]) -> tuple[int, dict[str, Any]]:
        headers = basic(client.client.client_id, client.secret) if client.secret else {}
        if not client.secret:
            data = {**data, "client_id": client.client.client_id}
        async with aiohttp.ClientSession() as http, http.post(self.url("/oauth/token"), data=data,
                                                              headers=headers) as r:
            return r.status, await r.json()

    async def close(self) -> None:
        for s in self._browsers:
            await s.close()


def _unescape(value: str) -> str:
    import html

    return html.unescape(value)


async def start_bridge(store: Any, clock: Clock | None = None, *, cookie_secure: bool = False,
                       ) -> tuple[Bridge, web.AppRunner]:
    clock = clock or Clock()
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    settings = BridgeSettings(base_url=base_url, key=secrets.token_bytes(32), cookie_secure=cookie_secure)
    ctx = BridgeContext(store=store, records=RecordStore(store), clock=clock, settings=settings)
    runner = web.AppRunner(build_app(ctx), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return Bridge(ctx, base_url, clock), runner


@pytest.fixture(name="bridge")
async def bridge_fixture(store: Any) -> AsyncIterator[Bridge]:
    bridge, runner = await start_bridge(store)
    try:
        yield bridge
    finally:
        await bridge.close()
        await runner.cleanup()
