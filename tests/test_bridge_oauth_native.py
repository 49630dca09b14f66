"""Native apps (spec section 5, RFC 8252) and the metadata documents (RFC 8414, SMART App Launch 2.0):
loopback redirects on any port, private-use schemes, per-install registration (RFC 7591)
with its rate limit and the removal of unused instances, public clients with PKCE only."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlencode

import pytest

from records_bridge.oauth.clients import (
    ClientError,
    ClientSpec,
    check_redirect_uri,
    redirect_matches,
)
from records_bridge.web.server import housekeeping_in
from tests.bridge_fixtures import bridge_fixture, pkce_pair  # noqa: F401 -- fixture
from tests.storage_fixtures import store_fixture, store_url_fixture  # noqa: F401 -- fixtures

LOOPBACK = "http://127.0.0.1/callback"
APP_SCHEME = "com.example.records:/oauth2redirect"


@pytest.mark.parametrize(("registered", "given", "matches"), [
    (LOOPBACK, "http://127.0.0.1:51234/callback", True),
    (LOOPBACK, "http://127.0.0.1:1/callback", True),
    (LOOPBACK, "http://127.0.0.1/callback", True),
    ("http://[::1]/cb", "http://[::1]:8080/cb", True),
    (LOOPBACK, "http://127.0.0.1:51234/other", False),
    (LOOPBACK, "http://127.0.0.1:51234/callback?x=1", False),
    (LOOPBACK, "http://localhost:51234/callback", False),
    (LOOPBACK, "https://127.0.0.1:51234/callback", False),
    (LOOPBACK, "http://127.0.0.1:notaport/callback", False),
    (LOOPBACK, "http://user@127.0.0.1:5/callback", False),
    ("https://app.example/cb", "https://app.example:443/cb", False),  # only loopback ports float
    (APP_SCHEME, APP_SCHEME, True),
    (APP_SCHEME, "com.example.records:/other", False),
])
def test_redirect_matching_is_exact_except_the_loopback_port(registered, given, matches):
    assert redirect_matches(registered, given) is matches


@pytest.mark.parametrize("uri", [
    "http://app.example/cb", "http://localhost/cb", "myapp:/cb", "https://app.example/cb#x", "javascript:alert(1)",
    "https://app.example/c b", "",
])
def test_redirect_uris_that_cannot_be_registered(uri):
    with pytest.raises(ClientError):
        check_redirect_uri(uri)


async def test_a_native_app_authorizes_on_any_loopback_port_with_pkce_and_no_secret(bridge):
    app = await bridge.client("Phone", public=True, redirect_uris=(LOOPBACK,), offline=True)
    assert app.secret is None
    b, _, record = await bridge.signed_in()
    code, verifier, uri = await bridge.authorize_code_flow(b, app, redirect_uri="http://127.0.0.1:49152/callback",
                                                           scope="records.*.r offline_access", form={"offline": "on"})
    status, body = await bridge.exchange(app, code, verifier, uri)
    assert status == 200 and body["patient"] == str(record)
    status, rotated = await bridge.token_request(app, {"grant_type": "refresh_token",
                                                       "refresh_token": body["refresh_token"]})
    assert status == 200 and rotated["refresh_token"] != body["refresh_token"]


async def test_a_native_app_uses_its_private_use_scheme(bridge):
    app = await bridge.client("Phone", public=True, redirect_uris=(APP_SCHEME,))
    b, _, _ = await bridge.signed_in()
    code, verifier, uri = await bridge.authorize_code_flow(b, app)
    assert uri == APP_SCHEME
    status, _ = await bridge.exchange(app, code, verifier, uri)
    assert status == 200


async def test_the_consent_page_allows_the_private_scheme_as_form_action(bridge):
    app = await bridge.client("Phone", public=True, redirect_uris=(APP_SCHEME,))
    b, _, _ = await bridge.signed_in()
    _, challenge = pkce_pair()
    q = {"response_type": "code", "client_id": app.client.client_id, "redirect_uri": APP_SCHEME,
         "scope": "records.*.r", "code_challenge": challenge, "code_challenge_method": "S256"}
    async with await b.get("/oauth/authorize?" + urlencode(q)) as r:
        assert "form-action 'self' com.example.records:" in r.headers["Content-Security-Policy"]


async def _register(bridge, body):
    b = await bridge.browser()
    async with b.session.post(bridge.url("/oauth/register"), json=body) as r:
        return r.status, await r.json()


async def test_an_install_registers_its_own_instance_that_inherits_the_app(bridge):
    app = await bridge.client("Phone", public=True, redirect_uris=(LOOPBACK,), offline=True)
    status, body = await _register(bridge, {"software_id": app.client.client_id, "client_name": "Pat's phone"})
    assert status == 201, body
    assert body["client_id"] != app.client.client_id and body["token_endpoint_auth_method"] == "none"
    assert body["redirect_uris"] == [LOOPBACK] and "offline_access" in body["scope"].split()
    instance = await bridge.clients.get(body["client_id"])
    assert instance.master_id == app.client.client_id and instance.public
    from records_bridge.oauth.clients import NewClient

    b, _, _ = await bridge.signed_in()
    code, verifier, uri = await bridge.authorize_code_flow(b, NewClient(instance, None))
    status, _tokens = await bridge.exchange(NewClient(instance, None), code, verifier, uri)
    assert status == 200


@pytest.mark.parametrize(("body", "error"), [
    ({}, "invalid_client_metadata"),
    ({"software_id": "nope"}, "invalid_software_statement"),
    ({"software_id": "MASTER", "token_endpoint_auth_method": "client_secret_basic"}, "invalid_client_metadata"),
    ({"software_id": "MASTER", "redirect_uris": ["https://evil.example/cb"]}, "invalid_redirect_uri"),
    ({"software_id": "CONFIDENTIAL"}, "invalid_client_metadata"),
    ([1, 2], "invalid_client_metadata"),
])
async def test_registration_refusals(bridge, body, error):
    app = await bridge.client("Phone", public=True, redirect_uris=(LOOPBACK,))
    web_app = await bridge.client("Web")
    ids = {"MASTER": app.client.client_id, "CONFIDENTIAL": web_app.client.client_id}
    if isinstance(body, dict) and body.get("software_id") in ids:
        body = {**body, "software_id": ids[body["software_id"]]}
    status, answer = await _register(bridge, body)
    assert (status, answer["error"]) == (400, error)


async def test_registration_is_rate_limited_per_address(bridge):
    app = await bridge.client("Phone", public=True, redirect_uris=(LOOPBACK,))
    limit = bridge.ctx.limits.registration.limit
    for _ in range(limit):
        status, _ = await _register(bridge, {"software_id": app.client.client_id})
        assert status == 201
    status, body = await _register(bridge, {"software_id": app.client.client_id})
    assert (status, body["error"]) == (429, "too_many_requests")
    bridge.clock.advance(3600)
    status, _ = await _register(bridge, {"software_id": app.client.client_id})
    assert status == 201


async def test_an_unused_instance_is_deleted_after_24_hours_and_a_used_one_kept(bridge):
    app = await bridge.client("Phone", public=True, redirect_uris=(LOOPBACK,))
    _, unused = await _register(bridge, {"software_id": app.client.client_id})
    _, used = await _register(bridge, {"software_id": app.client.client_id})
    person, record = await bridge.person()
    from records_bridge.oauth.clients import NewClient

    await bridge.user_token(NewClient(await bridge.clients.get(used["client_id"]), None), person.id, [record])
    bridge.clock.advance(timedelta(hours=24).total_seconds() - 1)
    at = bridge.clock()
    await bridge.ctx.store.run(lambda conn: housekeeping_in(conn, at))
    assert await bridge.clients.get(unused["client_id"]) is not None
    bridge.clock.advance(2)
    at = bridge.clock()
    done = await bridge.ctx.store.run(lambda conn: housekeeping_in(conn, at))
    assert done.instances == 1
    assert await bridge.clients.get(unused["client_id"]) is None
    assert await bridge.clients.get(used["client_id"]) is not None


async def test_an_instance_cannot_get_connect_or_packages_even_if_the_master_changes(bridge):
    with pytest.raises(ClientError):
        await bridge.clients.add(ClientSpec("Phone", (LOOPBACK,), public=True, connect=True), at=bridge.clock())


async def test_the_oauth_metadata_document(bridge):
    b = await bridge.browser()
    async with await b.get("/.well-known/oauth-authorization-server") as r:
        meta = await r.json()
    base = bridge.base_url
    assert meta["issuer"] == base
    assert meta["authorization_endpoint"] == base + "/oauth/authorize"
    assert meta["token_endpoint"] == base + "/oauth/token"
    assert meta["revocation_endpoint"] == base + "/oauth/revoke"
    assert meta["registration_endpoint"] == base + "/oauth/register"
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["response_types_supported"] == ["code"]
    assert set(meta["response_modes_supported"]) == {"query", "form_post"}
    assert set(meta["token_endpoint_auth_methods_supported"]) == {"client_secret_basic", "none"}
    assert {"authorization_code", "refresh_token", "client_credentials"} == set(meta["grant_types_supported"])


async def test_the_smart_configuration_document(bridge):
    b = await bridge.browser()
    async with await b.get("/.well-known/smart-configuration") as r:
        smart = await r.json()
    assert smart["authorization_endpoint"] == bridge.base_url + "/oauth/authorize"
    assert smart["code_challenge_methods_supported"] == ["S256"]
    assert {"launch-standalone", "client-public", "context-standalone-patient", "permission-v2",
            "permission-offline"} <= set(smart["capabilities"])
    assert "patient/DocumentReference.rs" in smart["scopes_supported"]
