"""Tokens after the code (spec section 2; acceptance item 11): refresh rotation and
reuse detection, revocation (RFC 7009), access token lifetime, bearer errors,
``/v1/me``, ``/v1/authorized-people``, ``DELETE /v1/records/{rid}/grant`` and
``auth_action=reauth_required`` when a client's required scopes grow."""

from __future__ import annotations

import base64

import pytest

from records_bridge.web.refusals import Refusal
from tests.bridge_fixtures import basic, bridge_fixture  # noqa: F401 -- fixture
from tests.storage_fixtures import store_fixture, store_url_fixture  # noqa: F401 -- fixtures


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + token}


async def _offline_tokens(bridge):
    client = await bridge.client(offline=True)
    b, _person, _record = await bridge.signed_in()
    code, verifier, uri = await bridge.authorize_code_flow(b, client, scope="records.*.r offline_access",
                                                           form={"offline": "on"})
    status, body = await bridge.exchange(client, code, verifier, uri)
    assert status == 200
    return client, b, body


async def _refresh(bridge, client, token):
    return await bridge.token_request(client, {"grant_type": "refresh_token", "refresh_token": token})


async def test_each_refresh_rotates_the_refresh_token(bridge):
    client, b, first = await _offline_tokens(bridge)
    status, second = await _refresh(bridge, client, first["refresh_token"])
    assert status == 200 and second["refresh_token"] != first["refresh_token"]
    assert second["patient"] == first["patient"] and second["records"] == first["records"]
    status, third = await _refresh(bridge, client, second["refresh_token"])
    assert status == 200
    async with await b.get("/v1/me", headers=_auth(third["access_token"])) as r:
        assert r.status == 200


async def test_replaying_an_old_refresh_token_revokes_the_family(bridge):
    """Acceptance item 11."""
    client, b, first = await _offline_tokens(bridge)
    _, second = await _refresh(bridge, client, first["refresh_token"])
    status, body = await _refresh(bridge, client, first["refresh_token"])
    assert (status, body["error"]) == (400, "invalid_grant")
    assert bridge.ctx.refusals.counts[Refusal.REFRESH_REUSE] == 1
    status, body = await _refresh(bridge, client, second["refresh_token"])  # the newest one died with the family
    assert (status, body["error"]) == (400, "invalid_grant")
    async with await b.get("/v1/me", headers=_auth(second["access_token"])) as r:
        assert r.status == 401


async def test_a_refresh_token_works_for_another_client_never(bridge):
    _, _, first = await _offline_tokens(bridge)
    other = await bridge.client("Other", offline=True)
    status, body = await _refresh(bridge, other, first["refresh_token"])
    assert (status, body["error"]) == (400, "invalid_grant")


async def test_a_refresh_cannot_widen_the_scopes(bridge):
    client, _, first = await _offline_tokens(bridge)
    status, body = await bridge.token_request(client, {"grant_type": "refresh_token", "scope": "records.*.cr",
                                                       "refresh_token": first["refresh_token"]})
    assert (status, body["error"]) == (400, "invalid_scope")


async def test_refresh_tokens_have_no_absolute_expiry(bridge):
    client, _, first = await _offline_tokens(bridge)
    bridge.clock.advance(400 * 24 * 3600)  # HealthVault's offline authorization never expired
    status, _ = await _refresh(bridge, client, first["refresh_token"])
    assert status == 200


async def test_an_access_token_lives_600_seconds(bridge):
    _client, b, first = await _offline_tokens(bridge)
    bridge.clock.advance(599)
    async with await b.get("/v1/me", headers=_auth(first["access_token"])) as r:
        assert r.status == 200
    bridge.clock.advance(1)
    async with await b.get("/v1/me", headers=_auth(first["access_token"])) as r:
        assert r.status == 401
        assert (await r.json())["error"] == "invalid_token"
        assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]


@pytest.mark.parametrize("header", [None, "Bearer", "Basic abc", "Bearer rba_not-a-token", "Bearer " + "x" * 500])
async def test_requests_without_a_valid_bearer_token_get_401(bridge, header):
    b = await bridge.browser()
    async with await b.get("/v1/me", headers={"Authorization": header} if header else {}) as r:
        assert r.status == 401
        assert r.headers["WWW-Authenticate"].startswith('Bearer realm="records"')
    assert bridge.ctx.refusals.counts[Refusal.INVALID_TOKEN] == (1 if header and header.startswith("Bearer rba") else 0)


async def test_revoking_a_refresh_token_ends_the_family(bridge):
    """RFC 7009 2.1: revoking the refresh token revokes the access tokens of the same grant."""
    client, b, first = await _offline_tokens(bridge)
    async with await b.post("/oauth/revoke", {"token": first["refresh_token"], "token_type_hint": "refresh_token"},
                            headers=basic(client.client.client_id, client.secret)) as r:
        assert r.status == 200
    status, body = await _refresh(bridge, client, first["refresh_token"])
    assert (status, body["error"]) == (400, "invalid_grant")
    async with await b.get("/v1/me", headers=_auth(first["access_token"])) as r:
        assert r.status == 401


async def test_revoking_an_access_token_leaves_the_refresh_token(bridge):
    client, b, first = await _offline_tokens(bridge)
    async with await b.post("/oauth/revoke", {"token": first["access_token"]},
                            headers=basic(client.client.client_id, client.secret)) as r:
        assert r.status == 200
    async with await b.get("/v1/me", headers=_auth(first["access_token"])) as r:
        assert r.status == 401
    status, _ = await _refresh(bridge, client, first["refresh_token"])
    assert status == 200


async def test_revoke_answers_200_for_unknown_or_foreign_tokens_and_changes_nothing(bridge):
    _client, b, first = await _offline_tokens(bridge)
    other = await bridge.client("Other")
    for token in ("rba_unknown", first["access_token"]):
        async with await b.post("/oauth/revoke", {"token": token},
                                headers=basic(other.client.client_id, other.secret)) as r:
            assert r.status == 200
    async with await b.get("/v1/me", headers=_auth(first["access_token"])) as r:
        assert r.status == 200


async def test_revoke_needs_client_authentication(bridge):
    client, b, first = await _offline_tokens(bridge)
    async with await b.post("/oauth/revoke", {"token": first["access_token"]},
                            headers=basic(client.client.client_id, "wrong")) as r:
        assert r.status == 401


async def test_me_says_who_and_which_records(bridge):
    client = await bridge.client()
    _, person, record = await bridge.signed_in()
    issued = await bridge.user_token(client, person.id, [record])
    b = await bridge.browser()
    async with await b.get("/v1/me", headers=_auth(issued.access_token)) as r:
        body = await r.json()
    assert body["person"]["id"] == str(person.id) and body["person"]["name"] == "Pat Patient"
    assert [(x["id"], x["auth_action"]) for x in body["records"]] == [(str(record), "none")]


async def test_deleting_the_grant_ends_the_apps_access_to_the_record(bridge):
    client = await bridge.client(offline=True)
    _, person, record = await bridge.signed_in()
    issued = await bridge.user_token(client, person.id, [record], offline=True)
    b = await bridge.browser()
    async with b.session.delete(bridge.url(f"/v1/records/{record + 1000}/grant"), headers=_auth(issued.access_token)) as r:
        assert r.status == 404
    async with b.session.delete(bridge.url(f"/v1/records/{record}/grant"), headers=_auth(issued.access_token)) as r:
        assert r.status == 204
    async with await b.get("/v1/me", headers=_auth(issued.access_token)) as r:
        assert r.status == 401
    status, body = await _refresh(bridge, client, issued.refresh_token)
    assert (status, body["error"]) == (400, "invalid_grant")


async def test_client_credentials_give_a_client_token_without_refresh(bridge):
    client = await bridge.client(scopes=("records.*.r", "packages"), connect=True)
    status, body = await bridge.token_request(client, {"grant_type": "client_credentials"})
    assert status == 200 and set(body["scope"].split()) == {"connect", "packages"}
    assert "refresh_token" not in body and "person" not in body
    status, body = await bridge.token_request(client, {"grant_type": "client_credentials",
                                                       "scope": "inbound.messages"})
    assert (status, body["error"]) == (400, "invalid_scope")


async def test_a_client_token_is_not_a_persons_and_the_reverse(bridge):
    client = await bridge.client(scopes=("records.*.r", "packages"))
    token = await bridge.client_token(client, ["packages"])
    b = await bridge.browser()
    async with await b.get("/v1/me", headers=_auth(token)) as r:
        assert r.status == 403
    _, person, record = await bridge.signed_in()
    issued = await bridge.user_token(client, person.id, [record])
    async with await b.get("/v1/authorized-people", headers=_auth(issued.access_token)) as r:
        assert r.status == 403


async def test_authorized_people_pages_with_a_cursor(bridge):
    client = await bridge.client(scopes=("records.*.r", "packages"))
    other = await bridge.client("Other")
    people = []
    for _ in range(5):
        person, record = await bridge.person()
        await bridge.user_token(client, person.id, [record])
        people.append(str(person.id))
    stranger, record = await bridge.person()
    await bridge.user_token(other, stranger.id, [record])
    token = await bridge.client_token(client, ["packages"])
    b = await bridge.browser()
    seen, cursor = [], None
    while True:
        q = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        async with await b.get("/v1/authorized-people" + q, headers=_auth(token)) as r:
            body = await r.json()
        seen += [p["person_id"] for p in body["people"]]
        if not body["more_results"]:
            break
        cursor = body["next_cursor"]
    assert seen == people


@pytest.mark.parametrize(("query", "error"), [
    ("limit=0", "invalid_request"), ("limit=501", "invalid_request"), ("limit=x", "invalid_request"),
    ("cursor=!!", "invalid_request"), ("cursor=" + base64.urlsafe_b64encode(b"abc").decode(), "invalid_request"),
    ("since=yesterday", "invalid_datetime"), ("since=2026-01-01T00:00:00", "invalid_datetime"),
])
async def test_authorized_people_refuses_bad_parameters(bridge, query, error):
    client = await bridge.client(scopes=("records.*.r", "packages"))
    token = await bridge.client_token(client, ["packages"])
    b = await bridge.browser()
    async with await b.get("/v1/authorized-people?" + query, headers=_auth(token)) as r:
        assert (r.status, (await r.json())["error"]) == (400, error)


async def test_authorized_people_since_filters_by_authorization_time(bridge):
    client = await bridge.client(scopes=("records.*.r", "packages"))
    early, r1 = await bridge.person()
    await bridge.user_token(client, early.id, [r1])
    bridge.clock.advance(3600)
    late, r2 = await bridge.person()
    await bridge.user_token(client, late.id, [r2])
    token = await bridge.client_token(client, ["packages"])
    since = bridge.clock().isoformat()
    b = await bridge.browser()
    async with await b.get("/v1/authorized-people", params={"since": since}, headers=_auth(token)) as r:
        assert [p["person_id"] for p in (await r.json())["people"]] == [str(late.id)]


async def test_growing_required_scopes_asks_for_reauthorization_and_refresh_keeps_the_old_scopes(bridge):
    client = await bridge.client(scopes=("records.*.r", "records.file.cr"), required_scopes=("records.*.r",),
                                 offline=True)
    b, _person, record = await bridge.signed_in()
    code, verifier, uri = await bridge.authorize_code_flow(b, client, scope="records.*.r offline_access",
                                                           form={"offline": "on"})
    _, first = await bridge.exchange(client, code, verifier, uri)
    await bridge.clients.set_scopes(client.client.client_id, required=("records.*.r", "records.file.cr"),
                                    at=bridge.clock())
    status, second = await _refresh(bridge, client, first["refresh_token"])
    assert status == 200
    assert second["records"] == [{"id": str(record), "auth_action": "reauth_required"}]
    assert set(second["scope"].split()) == {"records.*.r", "offline_access"}
    async with await b.get("/v1/me", headers=_auth(second["access_token"])) as r:
        assert (await r.json())["records"][0]["auth_action"] == "reauth_required"
    code, verifier, uri = await bridge.authorize_code_flow(b, client, scope="records.*.r records.file.cr")
    _, third = await bridge.exchange(client, code, verifier, uri)
    assert third["records"] == [{"id": str(record), "auth_action": "none"}]


async def test_shrinking_required_scopes_asks_nothing(bridge):
    client = await bridge.client(scopes=("records.*.r", "records.file.cr"), required_scopes=("records.*.r", "records.file.cr"))
    _, person, record = await bridge.signed_in()
    issued = await bridge.user_token(client, person.id, [record], ("records.*.r", "records.file.cr"))
    await bridge.clients.set_scopes(client.client.client_id, required=("records.*.r",), at=bridge.clock())
    b = await bridge.browser()
    async with await b.get("/v1/me", headers=_auth(issued.access_token)) as r:
        assert (await r.json())["records"][0]["auth_action"] == "none"


async def test_a_viewer_cannot_give_new_write_scopes_so_reauthorization_is_not_possible(bridge):
    from records_bridge.access import Role, give

    client = await bridge.client(scopes=("records.*.r", "records.file.cr"), required_scopes=("records.*.r",))
    viewer, _ = await bridge.person()
    _owner, record = await bridge.person()
    await give(bridge.ctx.store, viewer.id, record, Role.VIEWER, at=bridge.clock())
    issued = await bridge.user_token(client, viewer.id, [record])
    await bridge.clients.set_scopes(client.client.client_id, required=("records.*.r", "records.file.cr"),
                                    at=bridge.clock())
    b = await bridge.browser()
    async with await b.get("/v1/me", headers=_auth(issued.access_token)) as r:
        assert (await r.json())["records"][0]["auth_action"] == "reauth_not_possible"


async def test_housekeeping_forgets_expired_access_tokens_and_long_revoked_families(bridge):
    from sqlalchemy import func, select

    from records_bridge.oauth import schema as s
    from records_bridge.web.server import housekeeping_in

    client, _, first = await _offline_tokens(bridge)
    _, second = await _refresh(bridge, client, first["refresh_token"])
    await _refresh(bridge, client, first["refresh_token"])  # replay: the family is revoked now

    async def sweep(after: float):
        bridge.clock.advance(after)
        at = bridge.clock()
        done = await bridge.ctx.store.run(lambda conn: housekeeping_in(conn, at))
        left = await bridge.ctx.store.read(lambda conn: conn.execute(select(func.count()).select_from(
            s.oauth_tokens)).scalar_one())
        return done, left

    done, left = await sweep(600 + 24 * 3600)
    assert done.tokens == 2 and left == 2 and done.families == 0  # the two refresh tokens remain
    done, left = await sweep(30 * 24 * 3600)
    assert done.families == 1 and left == 0
    status, body = await _refresh(bridge, client, second["refresh_token"])
    assert (status, body["error"]) == (400, "invalid_grant")
