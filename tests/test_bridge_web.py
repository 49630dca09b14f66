"""The bridge's shared web layer: sign-up, sign-in, sign-out, sessions, CSRF, security headers, rate limits."""

from __future__ import annotations

from tests.bridge_fixtures import PASSWORD, bridge_fixture  # noqa: F401 -- fixture
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
