"""The bridge's shared web layer: sign-up, sign-in, sign-out, sessions, CSRF, security
headers, rate limits, and the [bridge] settings with their key file."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote

import pytest
from sqlalchemy import select
from yarl import URL

from gateway.service.settings import ServeSettingsError
from records_bridge import schema
from records_bridge.oauth import schema as oauth_schema
from records_bridge.web.account import safe_next
from records_bridge.web.ratelimit import RateLimiter
from records_bridge.web.refusals import Refusal
from records_bridge.web.settings import KEY_BYTES, bridge_settings
from tests.bridge_fixtures import PASSWORD, bridge_fixture, start_bridge  # noqa: F401 -- fixture
from tests.storage_fixtures import store_fixture, store_url_fixture  # noqa: F401 -- fixtures


async def test_sign_up_signs_in_and_makes_the_persons_own_record(bridge):
    b = await bridge.browser()
    token = await b.csrf("/signup")
    async with await b.post("/signup", {"name": "Ann Example", "email": "Ann@Example.com", "password": PASSWORD,
                                        "csrf_token": token, "next": "/"}) as r:
        assert r.status == 303 and r.headers["Location"] == "/"
    async with await b.get("/") as r:
        page = await r.text()
    assert r.status == 200
    assert "Signed in as Ann Example" in page and "you look after this record" in page


async def test_passwords_are_stored_as_argon2id_hashes(bridge):
    person, _ = await bridge.person("hash@example.com")
    stored = await bridge.ctx.store.read(lambda conn: conn.execute(
        select(schema.persons.c.password_hash).where(schema.persons.c.id == person.id)).scalar_one())
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


@pytest.mark.parametrize(("fields", "says"), [
    ({"email": "not-an-address"}, "Enter an e-mail address"),
    ({"password": "short"}, "at least 10 characters"),
    ({"name": "  "}, "Enter your name"),
    ({"email": "taken@example.com"}, "already exists"),
])
async def test_sign_up_refusals_say_what_to_fix(bridge, fields, says):
    await bridge.person("taken@example.com")
    b = await bridge.browser()
    form = {"name": "Ann", "email": "new@example.com", "password": PASSWORD, "csrf_token": await b.csrf("/signup"),
            **fields}
    async with await b.post("/signup", form) as r:
        assert r.status == 400 and says in await r.text()


async def test_a_wrong_password_and_an_unknown_address_get_the_same_answer(bridge):
    await bridge.person("known@example.com")
    b = await bridge.browser()
    answers = []
    for email, password in (("known@example.com", "wrong password!"), ("unknown@example.com", PASSWORD)):
        async with await b.sign_in(email, password) as r:
            answers.append((r.status, "The e-mail address or password is not right." in await r.text()))
    assert answers == [(401, True), (401, True)]


async def test_sign_in_is_rate_limited(bridge):
    await bridge.person("victim@example.com")
    b = await bridge.browser()
    for _ in range(bridge.ctx.limits.sign_in.limit):
        async with await b.sign_in("victim@example.com", "guess guess guess") as r:
            assert r.status == 401
    async with await b.sign_in("victim@example.com", PASSWORD) as r:
        assert r.status == 429 and "Too many attempts" in await r.text()
    counts = bridge.ctx.refusals.counts
    assert (counts[Refusal.SIGN_IN_FAILED], counts[Refusal.RATE_LIMITED]) == (bridge.ctx.limits.sign_in.limit, 1)
    bridge.clock.advance(60)
    async with await b.sign_in("victim@example.com", PASSWORD) as r:
        assert r.status == 303


@pytest.mark.parametrize("path", ["/signin", "/signup", "/signout"])
@pytest.mark.parametrize("csrf", ["missing", "wrong", "other-browser"])
async def test_every_form_refuses_a_missing_or_foreign_csrf_token(bridge, path, csrf):
    b = await bridge.browser()
    await b.csrf("/signin")  # this browser has its CSRF cookie
    other = await bridge.browser()
    token = {"missing": None, "wrong": "x" * 43, "other-browser": await other.csrf("/signin")}[csrf]
    form = {"email": "a@example.com", "password": PASSWORD, "name": "A"}
    if token is not None:
        form["csrf_token"] = token
    async with await b.post(path, form) as r:
        assert r.status == 403
        assert "Location" not in r.headers and "rb_session" not in r.headers.get("Set-Cookie", "")


async def test_signing_in_makes_a_new_session_and_signing_out_ends_it_on_the_server(bridge):
    b, _person, _ = await bridge.signed_in()
    cookie = next(c for c in b.session.cookie_jar if c.key == "rb_session")
    stolen = cookie.value
    async with await b.post("/signout", {"csrf_token": await b.csrf("/")}) as r:
        assert r.status == 303
    thief = await bridge.browser()
    thief.session.cookie_jar.update_cookies({"rb_session": stolen}, response_url=URL(bridge.base_url))
    async with await thief.get("/") as r:
        assert r.status == 302 and r.headers["Location"].startswith("/signin")


async def test_a_session_lasts_twelve_hours(bridge):
    b, _, _ = await bridge.signed_in()
    bridge.clock.advance(12 * 3600 - 1)
    async with await b.get("/") as r:
        assert r.status == 200
    bridge.clock.advance(1)
    async with await b.get("/") as r:
        assert r.status == 302


async def test_sessions_are_stored_hashed(bridge):
    b, _, _ = await bridge.signed_in()
    value = next(c for c in b.session.cookie_jar if c.key == "rb_session").value
    hashes = await bridge.ctx.store.read(lambda conn: conn.execute(
        select(oauth_schema.bridge_sessions.c.token_hash)).scalars().all())
    assert value not in hashes and len(hashes) == 1 and len(hashes[0]) == 64


async def test_cookies_are_httponly_and_samesite_lax(bridge):
    b = await bridge.browser()
    async with await b.get("/signin") as r:
        set_cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie and "Path=/" in set_cookie


async def test_with_cookie_secure_the_cookies_are_secure_and_host_prefixed(store):
    bridge, runner = await start_bridge(store, cookie_secure=True)
    try:
        b = await bridge.browser()
        async with await b.get("/signin") as r:
            set_cookie = r.headers["Set-Cookie"]
        assert set_cookie.startswith("__Host-rb_csrf=") and "Secure" in set_cookie
    finally:
        await bridge.close()
        await runner.cleanup()


@pytest.mark.parametrize("path", ["/signin", "/nope", "/static/bridge.css", "/.well-known/oauth-authorization-server"])
async def test_every_response_carries_the_security_headers(bridge, path):
    b = await bridge.browser()
    async with await b.get(path) as r:
        csp = r.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "form-action 'self'" in csp
        assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp
        assert r.headers["X-Content-Type-Options"] == "nosniff" and r.headers["X-Frame-Options"] == "DENY"
        assert r.headers["Referrer-Policy"] == "no-referrer"


async def test_pages_carry_no_inline_script(bridge):
    b = await bridge.browser()
    for path in ("/signin", "/signup"):
        async with await b.get(path) as r:
            page = await r.text()
        assert "<script>" not in page and "onclick" not in page and "style=" not in page


async def test_the_home_page_needs_signing_in_and_comes_back_after(bridge):
    _person, _ = await bridge.person("back@example.com")
    b = await bridge.browser()
    async with await b.get("/") as r:
        assert r.status == 302 and unquote(r.headers["Location"]) == "/signin?next=/"
    token = await b.csrf("/signin?next=%2F")
    async with await b.post("/signin", {"email": "back@example.com", "password": PASSWORD, "csrf_token": token,
                                        "next": "/"}) as r:
        assert r.headers["Location"] == "/"


@pytest.mark.parametrize(("given", "goes"), [
    ("/oauth/authorize?x=1", "/oauth/authorize?x=1"),
    ("//evil.example/", "/"),
    ("/\\evil.example", "/"),
    ("https://evil.example/", "/"),
    ("javascript:alert(1)", "/"),
    ("/ok\r\nSet-Cookie: x", "/"),
    ("", "/"),
])
def test_after_sign_in_only_local_paths_are_followed(given, goes):
    assert safe_next(given) == goes


def test_the_rate_limiter_slides():
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    limiter = RateLimiter(2, timedelta(seconds=10))
    assert [limiter.allow("k", at=t0 + timedelta(seconds=s)) for s in (0, 1, 2, 9.9, 10, 11, 11)] == [
        True, True, False, False, True, True, False]
    assert limiter.allow("other", at=t0)


def test_the_key_file_is_made_once_with_mode_0600(tmp_path: Path):
    first = bridge_settings({}, base=tmp_path, data_dir=tmp_path)
    key = tmp_path / "bridge.key"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600 and len(key.read_bytes()) == KEY_BYTES
    again = bridge_settings({}, base=tmp_path, data_dir=tmp_path)
    assert again.secret("csrf") == first.secret("csrf") != first.secret("client-secret")


@pytest.mark.parametrize(("table", "key"), [
    ({"listen": "nope"}, "[bridge] listen"),
    ({"base_url": "ftp://x"}, "[bridge] base_url"),
    ({"cookie_secure": "yes"}, "[bridge] cookie_secure"),
    ({"colour": "blue"}, "[bridge] colour"),
    ({"key_file": "short.key"}, "[bridge] key_file"),
])
def test_bridge_settings_name_the_wrong_key(tmp_path: Path, table, key):
    (tmp_path / "short.key").write_bytes(b"x" * 5)
    from records_bridge.web.settings import bridge_table

    with pytest.raises(ServeSettingsError) as caught:
        bridge_settings(bridge_table({"bridge": table}), base=tmp_path, data_dir=tmp_path)
    assert caught.value.key == key


@pytest.mark.parametrize(("uri", "source"), [
    ("https://app.example/cb?x=1", "https://app.example"),
    ("https://app.example:8443/cb", "https://app.example:8443"),
    ("http://127.0.0.1/cb", "http://127.0.0.1:*"),
    ("http://[::1]:9000/cb", "http://[::1]:*"),
    ("com.example.app:/oauth2redirect", "com.example.app:"),
])
def test_the_form_action_source_for_a_redirect_uri(uri, source):
    from records_bridge.web.security import csp_source

    assert csp_source(uri) == source
