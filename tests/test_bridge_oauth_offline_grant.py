"""Client credentials naming a record (issue 10): an app acting on the offline grant a patient gave it.

Patient Connect leaves an offline grant for (app, person, record) and tells the
app of it through ``GET /v1/connect-requests/authorized``. The app then asks
``POST /oauth/token`` with ``grant_type=client_credentials`` and ``record_id``
(HealthVault's offline person and record ids, with the app's own credentials)
and gets an access token that is exactly a user token on that grant: the
grant's person and record, at most the grant's scopes, no refresh token, and
dead as soon as the grant is. On SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from fhir.resources.R4B.bundle import Bundle

from records_bridge.access import Role, give
from records_bridge.oauth.tokens import revoke_grant_in
from records_bridge.schema import record_access
from records_bridge.web.refusals import Refusal
from tests.bridge_codes_helpers import App, Patient, connect_request, patient
from tests.bridge_fixtures import Bridge, bridge_fixture  # noqa: F401 -- fixture
from tests.test_bridge_items_api import deliver_ccd
from tests.test_bridge_items_cda import SAMPLE_CCD

from .storage_fixtures import store_fixture, store_url_fixture  # noqa: F401

READS = ("records.*.r", "patient/DocumentReference.rs")
SINCE = "2026-01-01T00:00:00Z"


async def clinic(bridge: Bridge, *, optional: tuple[str, ...] = ()) -> App:
    """A provider's app: reads records (those scopes required) and makes connect requests."""
    client = await bridge.client("Springfield Clinic", scopes=READS, optional_scopes=optional, connect=True)
    return App(bridge, client, ("connect",), await bridge.client_token(client, ["connect"]))


async def connected(bridge: Bridge, app: App, pat: Patient | None = None, *, external_id: str = "MRN-1",
                    optional: tuple[str, ...] = ()) -> tuple[Patient, dict[str, Any]]:
    """The patient enters the app's code, answers and connects their record; the app polls and sees it."""
    pat = pat or await patient(bridge)
    status, created = await connect_request(app, external_id=external_id)
    assert status == 201, created
    status, verified = await pat.call("/v1/connect/verify", {"code": created["code"], "answer": "fluffy"})
    assert status == 200, verified
    status, body = await pat.call("/v1/connect/authorize", {"ticket": verified["ticket"], "record_id": pat.record_id,
                                                            "optional_scopes": list(optional)})
    assert status in (200, 201), body
    status, listed = await app.call("GET", f"/v1/connect-requests/authorized?since={SINCE}")
    assert status == 200
    (authorized,) = [a for a in listed if a["external_id"] == external_id]
    return pat, authorized


async def record_token(bridge: Bridge, app: App, record_id: object, **extra: str) -> tuple[int, dict[str, Any]]:
    return await bridge.token_request(app.client, {"grant_type": "client_credentials", "record_id": str(record_id),
                                                   **extra})


async def get(bridge: Bridge, token: str, path: str, accept: str = "application/json") -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(
        bridge.url(path), headers={"Authorization": f"Bearer {token}", "Accept": accept},
    ) as r:
        return r.status, (await r.json(content_type=None) if "json" in r.content_type else await r.read())


async def test_connect_then_a_token_for_the_record_reads_its_items_and_fhir_documents(bridge):
    app = await clinic(bridge)
    pat, authorized = await connected(bridge, app)
    await deliver_ccd(bridge, pat.record_id)

    status, token = await record_token(bridge, app, authorized["record_id"])
    assert status == 200, token
    assert (token["person"], token["patient"]) == (authorized["person_id"], authorized["record_id"])
    assert token["records"] == [{"id": authorized["record_id"], "auth_action": "none"}]
    assert set(token["scope"].split()) == set(READS) and token["expires_in"] == 600
    assert "refresh_token" not in token  # the app presents its credentials again instead
    access = token["access_token"]

    status, items = await get(bridge, access, f"/v1/records/{pat.record_id}/items")
    assert status == 200
    (ccd,) = [i for i in items["items"] if i["type"] == "ccd"]
    status, content = await get(bridge, access, f"/v1/records/{pat.record_id}/items/{ccd['id']}/blobs/content", "*/*")
    assert (status, content) == (200, SAMPLE_CCD)
    status, bundle = await get(bridge, access, f"/fhir/r4/DocumentReference?patient={pat.record_id}",
                               "application/fhir+json")
    assert status == 200 and Bundle.model_validate(bundle).total == 1
    status, content = await get(bridge, access, bundle["entry"][0]["resource"]["content"][0]["attachment"]["url"],
                                "*/*")
    assert (status, content) == (200, SAMPLE_CCD)

    status, me = await get(bridge, access, "/v1/me")  # it acts for the person who connected, as theirs would
    assert status == 200 and me["person"]["id"] == authorized["person_id"]
    status, _ = await app.call("GET", "/v1/authorized-people")
    assert status == 200  # the client's own token is unchanged by all this
    status, _ = await get(bridge, access, "/v1/authorized-people")
    assert status == 403  # ... and the record token is not a client token


async def test_the_token_covers_that_record_only_and_other_records_are_refused_and_counted(bridge):
    app = await clinic(bridge)
    pat, _ = await connected(bridge, app)
    _, someone_elses = await bridge.person()
    before = bridge.ctx.refusals.value(Refusal.FOREIGN_GRANT)

    status, body = await record_token(bridge, app, someone_elses)
    assert (status, body["error"]) == (400, "invalid_grant")
    assert bridge.ctx.refusals.value(Refusal.FOREIGN_GRANT) == before + 1

    status, token = await record_token(bridge, app, pat.record_id)
    assert status == 200
    status, _ = await get(bridge, token["access_token"], f"/v1/records/{someone_elses}/items")
    assert status == 403
    status, _ = await get(bridge, token["access_token"], f"/fhir/r4/DocumentReference?patient={someone_elses}",
                          "application/fhir+json")
    assert status == 403


async def test_another_apps_grant_gives_this_app_nothing(bridge):
    theirs, mine = await clinic(bridge), await clinic(bridge)
    pat, _ = await connected(bridge, theirs)
    status, body = await record_token(bridge, mine, pat.record_id)
    assert (status, body["error"]) == (400, "invalid_grant")


@pytest.mark.parametrize("how", ["the app's DELETE grant", "the grant revoked"])
async def test_after_the_grant_ends_tokens_stop_and_no_new_one_is_issued(bridge, how):
    app = await clinic(bridge)
    pat, _ = await connected(bridge, app)
    status, token = await record_token(bridge, app, pat.record_id)
    assert status == 200
    access = token["access_token"]
    if how == "the app's DELETE grant":
        async with aiohttp.ClientSession() as http, http.delete(
                bridge.url(f"/v1/records/{pat.record_id}/grant"), headers={"Authorization": f"Bearer {access}"}) as r:
            assert r.status == 204
    else:
        pk, at = app.client.client.pk, bridge.clock()
        assert await bridge.ctx.store.run(lambda conn: revoke_grant_in(conn, pk, pat.person.id, pat.record_id, at=at))

    assert (await get(bridge, access, f"/v1/records/{pat.record_id}/items"))[0] == 401
    status, body = await record_token(bridge, app, pat.record_id)
    assert (status, body["error"]) == (400, "invalid_grant")
    assert "revoked" in body["error_description"]


async def test_connecting_again_after_a_revocation_gives_the_app_the_record_again(bridge):
    app = await clinic(bridge)
    pat, _ = await connected(bridge, app)
    pk, at = app.client.client.pk, bridge.clock()
    await bridge.ctx.store.run(lambda conn: revoke_grant_in(conn, pk, pat.person.id, pat.record_id, at=at))
    await connected(bridge, app, pat, external_id="MRN-2")
    assert (await record_token(bridge, app, pat.record_id))[0] == 200


async def test_signing_in_to_the_app_again_without_offline_access_keeps_the_connect_grant(bridge):
    """Grants end only by revocation: a later online authorization renews the scopes and leaves
    the offline access Patient Connect gave in place; after a revocation it starts over."""
    app = await clinic(bridge)
    pat, _ = await connected(bridge, app)
    await bridge.user_token(app.client, pat.person.id, [pat.record_id], READS, offline=False)
    assert (await record_token(bridge, app, pat.record_id))[0] == 200
    pk, at = app.client.client.pk, bridge.clock()
    await bridge.ctx.store.run(lambda conn: revoke_grant_in(conn, pk, pat.person.id, pat.record_id, at=at))
    await bridge.user_token(app.client, pat.person.id, [pat.record_id], READS, offline=False)
    status, body = await record_token(bridge, app, pat.record_id)
    assert (status, body["error"]) == (400, "invalid_grant")


async def test_a_public_client_never_gets_one(bridge):
    native = await bridge.client("Phone app", public=True, offline=True, redirect_uris=("http://127.0.0.1/cb",))
    person, record_id = await bridge.person()
    await bridge.user_token(native, person.id, [record_id], offline=True)  # an offline grant it does hold
    status, body = await bridge.token_request(native, {"grant_type": "client_credentials",
                                                       "record_id": str(record_id)})
    assert (status, body["error"]) == (400, "unauthorized_client")


async def test_an_online_grant_needs_the_person_present(bridge):
    """An authorization without offline_access lets the app act only while the person is there."""
    client = await bridge.client("Web app", scopes=READS)
    person, record_id = await bridge.person()
    await bridge.user_token(client, person.id, [record_id], READS, offline=False)
    status, body = await bridge.token_request(client, {"grant_type": "client_credentials", "record_id": str(record_id)})
    assert (status, body["error"]) == (400, "invalid_grant")
    assert "not offline" in body["error_description"]


async def test_an_authorization_with_offline_access_is_an_offline_grant_too(bridge):
    client = await bridge.client("Sync app", scopes=READS, offline=True)
    person, record_id = await bridge.person()
    await bridge.user_token(client, person.id, [record_id], (*READS, "offline_access"), offline=True)
    status, token = await bridge.token_request(client, {"grant_type": "client_credentials",
                                                        "record_id": str(record_id)})
    assert status == 200 and set(token["scope"].split()) == set(READS)  # offline_access is the grant's, not the token's


@pytest.mark.parametrize("change", ["reauth_required", "reauth_not_possible"])
async def test_grown_required_scopes_keep_the_previously_granted_scopes_and_say_so(bridge, change):
    """Spec section 2, rule changes, as for refresh: the grant keeps what was given and
    ``auth_action`` tells the app to send the person through authorization again."""
    app = await clinic(bridge)
    pat, _ = await connected(bridge, app)
    if change == "reauth_not_possible":
        # a viewer now: they cannot give the app the right to add files it will require
        await give(bridge.ctx.store, pat.person.id, pat.record_id, Role.VIEWER, at=bridge.clock())
    grown = ("records.*.r", "patient/DocumentReference.rs", "records.file.cr")
    await bridge.clients.set_scopes(app.client_id, required=grown, at=bridge.clock())

    status, token = await record_token(bridge, app, pat.record_id, person_id=str(pat.person.id))
    assert status == 200, token
    assert token["records"] == [{"id": str(pat.record_id), "auth_action": change}]
    assert set(token["scope"].split()) == set(READS)
    status, body = await record_token(bridge, app, pat.record_id, person_id=str(pat.person.id),
                                      scope="records.file.cr")
    assert (status, body["error"]) == (400, "invalid_scope")


async def custodian_of(bridge: Bridge, record_id: int) -> Patient:
    """A second person, given the record as its custodian, signed in."""
    person, _ = await bridge.person()
    await give(bridge.ctx.store, person.id, record_id, Role.CUSTODIAN, at=bridge.clock())
    browser = await bridge.browser()
    async with await browser.sign_in(person.email or "") as r:
        assert r.status == 303
    return Patient(bridge, browser, person, record_id, await browser.csrf("/connect"))


async def test_several_people_granting_one_record_need_person_id(bridge):
    app = await clinic(bridge)
    first, _ = await connected(bridge, app)
    second = await custodian_of(bridge, first.record_id)
    await connected(bridge, app, second, external_id="MRN-2")

    status, body = await record_token(bridge, app, first.record_id)
    assert (status, body["error"]) == (400, "invalid_request")
    for who in (first, second):
        status, token = await record_token(bridge, app, who.record_id, person_id=str(who.person.id))
        assert status == 200 and token["person"] == str(who.person.id)
    status, body = await record_token(bridge, app, first.record_id, person_id="999999")
    assert (status, body["error"]) == (400, "invalid_grant")


async def test_a_person_who_lost_the_record_gives_the_app_nothing_more(bridge):
    app = await clinic(bridge)
    owner, _ = await connected(bridge, app)
    custodian = await custodian_of(bridge, owner.record_id)
    await connected(bridge, app, custodian, external_id="MRN-2")
    status, token = await record_token(bridge, app, owner.record_id, person_id=str(custodian.person.id))
    assert status == 200
    a = record_access
    await bridge.ctx.store.run(lambda conn: conn.execute(
        a.delete().where(a.c.person_id == custodian.person.id, a.c.record_id == owner.record_id)))

    assert (await get(bridge, token["access_token"], f"/v1/records/{owner.record_id}/items"))[0] == 403
    status, body = await record_token(bridge, app, owner.record_id, person_id=str(custodian.person.id))
    assert (status, body["error"]) == (400, "invalid_grant")


@pytest.mark.parametrize(("extra", "error"), [
    ({"scope": "patient/DocumentReference.rs"}, None),  # narrowing is fine
    ({"scope": "records.*.cr"}, "invalid_scope"),  # wider than the grant
    ({"scope": "connect"}, "invalid_scope"),  # a client scope is not the person's to give
    ({"scope": "records.*.r offline_access"}, "invalid_scope"),  # no refresh token, so no offline_access
    ({"record_id": "12abc"}, "invalid_request"),
    ({"record_id": ""}, "invalid_request"),
    ({"person_id": "me"}, "invalid_request"),
])
async def test_parameters(bridge, extra, error):
    app = await clinic(bridge)
    pat, _ = await connected(bridge, app)
    status, body = await bridge.token_request(app.client, {
        "grant_type": "client_credentials", "record_id": str(pat.record_id), **extra})
    if error is None:
        assert status == 200 and body["scope"] == extra["scope"]
    else:
        assert (status, body["error"]) == (400, error)


async def test_the_record_token_is_not_a_connect_token(bridge):
    app = await clinic(bridge)
    pat, _ = await connected(bridge, app)
    _, token = await record_token(bridge, app, pat.record_id)
    status, _ = await get(bridge, token["access_token"], f"/v1/connect-requests/authorized?since={SINCE}")
    assert status == 403
