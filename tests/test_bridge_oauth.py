"""The authorization endpoint and the code exchange (spec section 2; acceptance items 10 and 12).

Each error case the spec lists is one test: unknown client, redirect URI
mismatch (never a redirect), PKCE missing or wrong, expired and reused codes,
access_denied, scopes outside the client's, offline_access without
permission, public clients asking for connect or packages, state round-trip.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from records_bridge.oauth.clients import ClientError, ClientSpec
from records_bridge.oauth.token_endpoint import pkce_ok
from records_bridge.web.refusals import Refusal
from tests.bridge_fixtures import basic, bridge_fixture, pkce_pair  # noqa: F401 -- fixture
from tests.storage_fixtures import store_fixture, store_url_fixture  # noqa: F401 -- fixtures

REDIRECT = "https://app.example/cb"


def _query(client_id: str, **over: str) -> dict[str, str]:
    _, challenge = pkce_pair()
    q = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT, "scope": "records.*.r",
         "state": "s1", "code_challenge": challenge, "code_challenge_method": "S256"}
    q.update(over)
    return {k: v for k, v in q.items() if v != "-"}


def _error_at_redirect(location: str) -> dict[str, list[str]]:
    assert location.startswith(REDIRECT + "?"), location
    return parse_qs(urlsplit(location).query)


async def test_unknown_client_gets_an_error_page_and_no_redirect(bridge):
    b, _, _ = await bridge.signed_in()
    async with await b.get("/oauth/authorize?" + urlencode(_query("no-such-client"))) as r:
        assert r.status == 400
        assert "Location" not in r.headers
        assert "not registered" in await r.text()
    assert bridge.ctx.refusals.counts[Refusal.UNKNOWN_CLIENT] == 1


@pytest.mark.parametrize("uri", [
    "https://app.example/cb/",                 # trailing slash
    "https://app.example/cb?x=1",              # extra query
    "https://app.example/CB",                  # case of the path
    "http://app.example/cb",                   # scheme
    "https://app.example:8443/cb",             # port
    "https://evil.example/cb",                 # host
    "https://app.example.evil.example/cb",     # suffix
    "https://app.example/cb#frag",             # fragment
    "",                                        # missing
], ids=["slash", "query", "case", "scheme", "port", "host", "suffix", "fragment", "missing"])
async def test_redirect_uri_mismatch_shows_an_error_page_and_never_redirects(bridge, uri):
    client = await bridge.client()
    b, _, _ = await bridge.signed_in()
    async with await b.get("/oauth/authorize?" + urlencode(_query(client.client.client_id, redirect_uri=uri or "-"))) as r:
        assert r.status == 400
        assert "Location" not in r.headers
        assert "has not registered" in await r.text()
    assert bridge.ctx.refusals.counts[Refusal.REDIRECT_MISMATCH] == 1


@pytest.mark.parametrize(("over", "error"), [
    ({"code_challenge_method": "plain"}, "invalid_request"),
    ({"code_challenge_method": "-"}, "invalid_request"),
    ({"code_challenge": "-"}, "invalid_request"),
    ({"code_challenge": "short"}, "invalid_request"),
    ({"response_type": "token"}, "unsupported_response_type"),
    ({"scope": "records.ccd.cr"}, "invalid_scope"),            # outside allowed_scopes
    ({"scope": "records.*.r offline_access"}, "invalid_scope"),  # client without offline_allowed
    ({"scope": "records.nonsense.r"}, "invalid_scope"),        # not in the grammar
    ({"scope": "connect"}, "invalid_scope"),                   # client-credentials only
], ids=["pkce-plain", "pkce-no-method", "pkce-missing", "pkce-malformed", "response-type", "scope-outside",
        "offline-not-allowed", "scope-grammar", "client-scope"])
async def test_request_errors_go_back_to_the_app_with_state(bridge, over, error):
    client = await bridge.client()
    b, _, _ = await bridge.signed_in()
    async with await b.get("/oauth/authorize?" + urlencode(_query(client.client.client_id, **over))) as r:
        assert r.status == 302
        got = _error_at_redirect(r.headers["Location"])
    assert got["error"] == [error]
    assert got["state"] == ["s1"]


@pytest.mark.parametrize("scope", ["connect", "packages", "records.*.r packages"])
async def test_a_public_client_asking_for_connect_or_packages_gets_invalid_scope(bridge, scope):
    """Acceptance item 12."""
    client = await bridge.client(public=True, scopes=("records.*.r",))
    b, _, _ = await bridge.signed_in()
    async with await b.get("/oauth/authorize?" + urlencode(_query(client.client.client_id, scope=scope))) as r:
        assert _error_at_redirect(r.headers["Location"])["error"] == ["invalid_scope"]
    status, body = await bridge.token_request(client, {"grant_type": "client_credentials", "scope": scope})
    assert (status, body["error"]) == (400, "unauthorized_client")


@pytest.mark.parametrize("scope", ["connect", "packages"])
async def test_a_public_client_cannot_be_registered_with_connect_or_packages(bridge, scope):
    with pytest.raises(ClientError, match="public client may not"):
        await bridge.clients.add(ClientSpec("App", (REDIRECT,), public=True, scopes=(scope,)), at=bridge.clock())


async def test_signing_in_comes_first_then_the_consent_page_spells_out_the_scopes(bridge):
    client = await bridge.client(scopes=("records.*.r", "records.file.cr"), required_scopes=("records.*.r",),
                                 optional_scopes=("records.file.cr",), offline=True)
    b = await bridge.browser()
    q = _query(client.client.client_id, scope="records.*.r records.file.cr offline_access")
    async with await b.get("/oauth/authorize?" + urlencode(q)) as r:
        assert r.status == 302
        where = urlsplit(r.headers["Location"])
    assert where.path == "/signin" and parse_qs(where.query)["next"][0].startswith("/oauth/authorize?")
    b, _, _ = await bridge.signed_in()
    async with await b.get("/oauth/authorize?" + urlencode(q)) as r:
        page = await r.text()
    assert "<li>Read your records of every kind</li>" in page  # required: listed, no toggle
    assert 'name="optional" value="records.file.cr"' in page and "Add and read your files" in page
    assert 'name="offline"' in page and "Keep access when you are not using the app" in page
    # the consent answer is a redirect to the app: CSP form-action names exactly its origin
    assert "form-action 'self' https://app.example;" in r.headers["Content-Security-Policy"] + ";"


async def test_offline_access_is_offered_only_when_requested(bridge):
    client = await bridge.client(offline=True)
    b, _, _ = await bridge.signed_in()
    async with await b.get("/oauth/authorize?" + urlencode(_query(client.client.client_id))) as r:
        assert 'name="offline"' not in await r.text()


async def test_cancel_answers_access_denied_with_the_state(bridge):
    client = await bridge.client()
    b, _, _ = await bridge.signed_in()
    q = _query(client.client.client_id, state="keep me")
    async with await b.get("/oauth/authorize?" + urlencode(q)) as r:
        token = re.search(r'name="csrf_token" value="([^"]+)"', await r.text()).group(1)
    async with await b.post("/oauth/authorize", {**q, "csrf_token": token, "decision": "deny"}) as r:
        assert r.status == 303
        got = _error_at_redirect(r.headers["Location"])
    assert got["error"] == ["access_denied"] and got["state"] == ["keep me"]


async def test_the_consent_answer_needs_the_csrf_token(bridge):
    client = await bridge.client()
    b, _, record = await bridge.signed_in()
    q = _query(client.client.client_id)
    async with await b.post("/oauth/authorize", {**q, "record": str(record), "decision": "allow"}) as r:
        assert r.status == 403
        assert "Location" not in r.headers
    assert bridge.ctx.refusals.counts[Refusal.CSRF] == 1


STATES = ["abc", "a b&c=d?e#f", "ünïcode✓", "x" * 500, "%41%42"]


@pytest.mark.parametrize("state", STATES, ids=["plain", "reserved", "unicode", "long", "percent"])
async def test_state_comes_back_verbatim(bridge, state):
    client = await bridge.client()
    b, _, _ = await bridge.signed_in()
    await bridge.authorize_code_flow(b, client, state=state)  # asserts state round-trips


async def test_code_exchange_answers_the_token_response_of_the_spec(bridge):
    client = await bridge.client()
    b, person, record = await bridge.signed_in()
    code, verifier, uri = await bridge.authorize_code_flow(b, client)
    status, body = await bridge.exchange(client, code, verifier, uri)
    assert status == 200, body
    assert body["token_type"] == "Bearer" and body["expires_in"] == 600 and body["scope"] == "records.*.r"
    assert body["person"] == str(person.id) and body["patient"] == str(record)
    assert body["records"] == [{"id": str(record), "auth_action": "none"}]
    assert "refresh_token" not in body  # acceptance 10: no refresh token without offline_access


async def test_token_responses_are_not_cached(bridge):
    client = await bridge.client()
    b, _, _ = await bridge.signed_in()
    code, verifier, uri = await bridge.authorize_code_flow(b, client)
    async with await b.post("/oauth/token", {"grant_type": "authorization_code", "code": code, "code_verifier": verifier,
                                             "redirect_uri": uri}, headers=basic(client.client.client_id, client.secret)) as r:
        assert r.status == 200
        assert r.headers["Cache-Control"] == "no-store" and r.headers["Pragma"] == "no-cache"


async def test_offline_access_granted_gives_a_refresh_token(bridge):
    client = await bridge.client(offline=True)
    b, _, _ = await bridge.signed_in()
    code, verifier, uri = await bridge.authorize_code_flow(b, client, scope="records.*.r offline_access",
                                                           form={"offline": "on"})
    status, body = await bridge.exchange(client, code, verifier, uri)
    assert status == 200 and body["refresh_token"].startswith("rbr_")
    assert set(body["scope"].split()) == {"records.*.r", "offline_access"}


async def test_offline_access_declined_by_the_person_gives_no_refresh_token(bridge):
    client = await bridge.client(offline=True)
    b, _, _ = await bridge.signed_in()
    code, verifier, uri = await bridge.authorize_code_flow(b, client, scope="records.*.r offline_access")
    status, body = await bridge.exchange(client, code, verifier, uri)
    assert status == 200 and "refresh_token" not in body


@pytest.mark.parametrize("verifier", [None, "", "wrong" * 10, "a" * 42, "a" * 129, "ä" * 50],
                         ids=["missing", "empty", "wrong", "too-short", "too-long", "non-ascii"])
async def test_a_missing_or_bad_code_verifier_is_invalid_grant(bridge, verifier):
    """Acceptance item 10."""
    client = await bridge.client()
    b, _, _ = await bridge.signed_in()
    code, _, uri = await bridge.authorize_code_flow(b, client)
    status, body = await bridge.exchange(client, code, verifier, uri)
    assert (status, body["error"]) == (400, "invalid_grant")


def test_pkce_s256_matches_rfc_7636_appendix_b():
    assert pkce_ok("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
    assert not pkce_ok("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")


async def test_a_reused_code_is_invalid_grant_and_revokes_the_tokens_it_gave(bridge):
    """Acceptance item 10 (RFC 6749 4.1.2)."""
    client = await bridge.client(offline=True)
    b, _, _ = await bridge.signed_in()
    code, verifier, uri = await bridge.authorize_code_flow(b, client, scope="records.*.r offline_access",
                                                           form={"offline": "on"})
    status, first = await bridge.exchange(client, code, verifier, uri)
    assert status == 200
    status, again = await bridge.exchange(client, code, verifier, uri)
    assert (status, again["error"]) == (400, "invalid_grant")
    assert bridge.ctx.refusals.counts[Refusal.CODE_REPLAY] == 1
    async with await b.get("/v1/me", headers={"Authorization": "Bearer " + first["access_token"]}) as r:
        assert r.status == 401
    status, body = await bridge.token_request(client, {"grant_type": "refresh_token",
                                                       "refresh_token": first["refresh_token"]})
    assert (status, body["error"]) == (400, "invalid_grant")


async def test_a_code_expires_after_60_seconds(bridge):
    client = await bridge.client()
    b, _, _ = await bridge.signed_in()
    code, verifier, uri = await bridge.authorize_code_flow(b, client)
    bridge.clock.advance(60)
    status, body = await bridge.exchange(client, code, verifier, uri)
    assert (status, body["error"]) == (400, "invalid_grant")


async def test_a_code_is_good_just_before_60_seconds(bridge):
    client = await bridge.client()
    b, _, _ = await bridge.signed_in()
    code, verifier, uri = await bridge.authorize_code_flow(b, client)
    bridge.clock.advance(59)
    status, _ = await bridge.exchange(client, code, verifier, uri)
    assert status == 200


async def test_a_code_is_bound_to_its_client_and_redirect_uri(bridge):
    client = await bridge.client(redirect_uris=(REDIRECT, "https://app.example/other"))
    other = await bridge.client("Other App")
    b, _, _ = await bridge.signed_in()
    code, verifier, uri = await bridge.authorize_code_flow(b, client)
    status, body = await bridge.exchange(other, code, verifier, uri)
    assert (status, body["error"]) == (400, "invalid_grant")
    code, verifier, uri = await bridge.authorize_code_flow(b, client)
    status, body = await bridge.exchange(client, code, verifier, "https://app.example/other")
    assert (status, body["error"]) == (400, "invalid_grant")


@pytest.mark.parametrize("auth", ["wrong-secret", "secret-in-body", "none", "garbage"])
async def test_confidential_clients_authenticate_with_client_secret_basic(bridge, auth):
    client = await bridge.client()
    cid = client.client.client_id
    data = {"grant_type": "client_credentials"}
    headers = {"wrong-secret": basic(cid, "nope"), "garbage": {"Authorization": "Basic !!!"}}.get(auth, {})
    if auth == "secret-in-body":
        data |= {"client_id": cid, "client_secret": client.secret}
    if auth == "none":
        data |= {"client_id": cid}
    b = await bridge.browser()
    async with await b.post("/oauth/token", data, headers=headers) as r:
        body = await r.json()
        assert (r.status, body["error"]) == (401, "invalid_client")
        assert r.headers["WWW-Authenticate"].startswith("Basic")


async def test_form_post_response_mode_posts_code_and_state_to_the_app(bridge):
    client = await bridge.client()
    b, _, record = await bridge.signed_in()
    q = _query(client.client.client_id, response_mode="form_post", state="fp")
    async with await b.get("/oauth/authorize?" + urlencode(q)) as r:
        token = re.search(r'name="csrf_token" value="([^"]+)"', await r.text()).group(1)
    async with await b.post("/oauth/authorize", {**q, "csrf_token": token, "decision": "allow",
                                                 "record": str(record)}) as r:
        page = await r.text()
        assert r.status == 200 and "Location" not in r.headers
        assert f'<form method="post" action="{REDIRECT}"' in page
        assert re.search(r'name="code" value="rbc_[^"]+"', page) and 'name="state" value="fp"' in page
        assert '<script src="/static/form_post.js"></script>' in page
        assert "form-action 'self' https://app.example" in r.headers["Content-Security-Policy"]


async def test_record_hint_preselects_the_record_and_multi_record_apps_get_several(bridge):
    client = await bridge.client(multi_record=True)
    b, person, own = await bridge.signed_in()
    other = (await bridge.ctx.records.create_record("Child", (), at=bridge.clock())).id
    from records_bridge.access import Role, give

    await give(bridge.ctx.store, person.id, other, Role.CUSTODIAN, at=bridge.clock())
    q = _query(client.client.client_id, record_hint=str(other))
    async with await b.get("/oauth/authorize?" + urlencode(q)) as r:
        page = await r.text()
    assert re.search(rf'value="{other}" checked', page) and 'type="checkbox" id="record-' in page
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    verifier, challenge = pkce_pair()
    q["code_challenge"] = challenge
    async with await b.post("/oauth/authorize", [*q.items(), ("csrf_token", token), ("decision", "allow"),
                                                 ("record", str(other)), ("record", str(own))]) as r:
        code = parse_qs(urlsplit(r.headers["Location"]).query)["code"][0]
    status, body = await bridge.exchange(client, code, verifier, REDIRECT)
    assert status == 200 and body["patient"] == str(other)
    assert {x["id"] for x in body["records"]} == {str(own), str(other)}


async def test_a_single_record_app_may_not_be_given_two_records(bridge):
    client = await bridge.client()
    b, person, own = await bridge.signed_in()
    other = (await bridge.ctx.records.create_record("Child", (), at=bridge.clock())).id
    from records_bridge.access import Role, give

    await give(bridge.ctx.store, person.id, other, Role.CUSTODIAN, at=bridge.clock())
    q = _query(client.client.client_id)
    token = await b.csrf("/signin")
    async with await b.post("/oauth/authorize", [*q.items(), ("csrf_token", token), ("decision", "allow"),
                                                 ("record", str(other)), ("record", str(own))]) as r:
        assert r.status == 400 and "Choose one record" in await r.text()


async def test_a_person_cannot_give_a_record_they_have_no_access_to(bridge):
    client = await bridge.client()
    b, _, _ = await bridge.signed_in()
    _, someone_elses = await bridge.person()
    q = _query(client.client.client_id)
    token = await b.csrf("/signin")
    async with await b.post("/oauth/authorize", {**q, "csrf_token": token, "decision": "allow",
                                                 "record": str(someone_elses)}) as r:
        assert r.status == 400 and "Location" not in r.headers
    assert bridge.ctx.refusals.counts[Refusal.FOREIGN_RECORD] == 1


async def test_no_code_token_or_client_secret_is_stored_in_clear(bridge):
    """Every text column of every OAuth table, after a full flow with refresh."""
    from sqlalchemy import String, Text, select

    from records_bridge.oauth import schema as oauth_schema

    client = await bridge.client(offline=True)
    b, _, _ = await bridge.signed_in()
    code, verifier, uri = await bridge.authorize_code_flow(b, client, scope="records.*.r offline_access",
                                                           form={"offline": "on"})
    _, first = await bridge.exchange(client, code, verifier, uri)
    _, second = await bridge.token_request(client, {"grant_type": "refresh_token",
                                                    "refresh_token": first["refresh_token"]})
    secrets_ = [code, first["access_token"], first["refresh_token"], second["access_token"],
                second["refresh_token"], client.secret]

    def dump(conn):
        cells = []
        for table in oauth_schema.metadata.sorted_tables:
            columns = [c for c in table.columns if isinstance(c.type, String | Text)]
            if columns:
                cells += [str(v) for row in conn.execute(select(*columns)).all() for v in row]
        return cells

    cells = await bridge.ctx.store.read(dump)
    assert cells and not [s for s in secrets_ if any(s in cell for cell in cells)]


@pytest.mark.parametrize(("scope", "ok"), [
    ("records.file.r", True), ("records.ccd.crud", True), ("records.*.cr", True), ("records.message.d", True),
    ("records.file.rc", False), ("records.file.rr", False), ("records.file.", False), ("records.file.x", False),
    ("records.photo.r", False), ("records..r", False),
    ("patient/DocumentReference.rs", True), ("patient/DocumentReference.cruds", True), ("patient/Binary.r", True),
    ("patient/DocumentReference.sr", False), ("patient/Observation.rs", False), ("user/DocumentReference.rs", False),
    ("patient/DocumentReference.read", False),
    ("launch/patient", True), ("offline_access", True), ("openid", True), ("fhirUser", True),
    ("connect", True), ("packages", True), ("inbound.messages", True), ("Connect", False), ("", False),
])
def test_the_scope_grammar(scope, ok):
    from records_bridge.oauth.scopes import parse

    assert (parse(scope) is not None) is ok


@pytest.mark.parametrize(("granted", "item_type", "op", "allowed"), [
    (["records.file.r"], "file", "r", True),
    (["records.file.r"], "file", "c", False),
    (["records.file.r"], "ccd", "r", False),
    (["records.*.cr"], "ccd", "c", True),
    (["patient/DocumentReference.rs"], "cda", "r", True),
    (["patient/DocumentReference.s"], "ccd", "r", True),
    (["patient/DocumentReference.rs"], "file", "c", False),
    (["patient/DocumentReference.c"], "file", "c", True),
    (["patient/DocumentReference.rs"], "message", "r", False),
    (["offline_access", "records.bogus.r"], "file", "r", False),
])
def test_what_scopes_permit(granted, item_type, op, allowed):
    from records_bridge.oauth.scopes import permits

    assert permits(granted, item_type, op) is allowed


@pytest.mark.parametrize(("scope", "words"), [
    ("records.file.r", "Read your files"),
    ("records.ccd.cr", "Add and read your care summaries (CCD)"),
    ("records.*.crud", "Add, read, change and delete your records of every kind"),
    ("patient/DocumentReference.rs", "Read and search your documents"),
    ("offline_access", "Keep access when you are not using the app, until you remove it"),
])
def test_scopes_in_words(scope, words):
    from records_bridge.oauth.scopes import describe

    assert describe(scope) == words


async def test_a_duplicated_parameter_is_refused_without_a_redirect(bridge):
    client = await bridge.client()
    b, _, _ = await bridge.signed_in()
    q = [*list(_query(client.client.client_id).items()), ("redirect_uri", "https://evil.example/cb")]
    async with await b.get("/oauth/authorize?" + urlencode(q)) as r:
        assert r.status == 400 and "Location" not in r.headers


async def test_prompt_create_sends_a_new_person_to_sign_up_and_back(bridge):
    client = await bridge.client()
    b = await bridge.browser()
    q = _query(client.client.client_id, prompt="create")
    async with await b.get("/oauth/authorize?" + urlencode(q)) as r:
        where = urlsplit(r.headers["Location"])
    assert where.path == "/signup"
    back = parse_qs(where.query)["next"][0]
    token = await b.csrf("/signup?" + where.query)
    async with await b.post("/signup", {"name": "New", "email": "new@example.com", "password": "long enough pw",
                                        "csrf_token": token, "next": back}) as r:
        assert r.status == 303 and r.headers["Location"] == back
    async with await b.get(back) as r:
        assert r.status == 200 and "Allow Test App to use your record?" in await r.text()


async def test_prompt_login_asks_a_signed_in_person_to_sign_in_again(bridge):
    client = await bridge.client()
    b, _, _ = await bridge.signed_in()
    async with await b.get("/oauth/authorize?" + urlencode(_query(client.client.client_id, prompt="login"))) as r:
        where = urlsplit(r.headers["Location"])
    assert where.path == "/signin" and "prompt" not in parse_qs(urlsplit(parse_qs(where.query)["next"][0]).query)


async def test_access_denied_through_form_post(bridge):
    client = await bridge.client()
    b, _, _ = await bridge.signed_in()
    q = _query(client.client.client_id, response_mode="form_post", state="st")
    token = await b.csrf("/signin")
    async with await b.post("/oauth/authorize", {**q, "csrf_token": token, "decision": "deny"}) as r:
        page = await r.text()
    assert r.status == 200 and 'name="error" value="access_denied"' in page and 'name="state" value="st"' in page


async def test_a_session_works_on_every_node(bridge, store):
    """Sessions live in the database: a second bridge over the same store (another node) knows them."""
    from tests.bridge_fixtures import start_bridge

    b, person, _ = await bridge.signed_in()
    other, runner = await start_bridge(store, bridge.clock)
    try:
        async with b.session.get(other.url("/"), allow_redirects=False) as r:
            assert r.status == 200 and f"Signed in as {person.display_name}" in await r.text()
    finally:
        await other.close()
        await runner.cleanup()
