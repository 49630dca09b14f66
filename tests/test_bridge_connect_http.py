"""Patient Connect over HTTP (records-bridge spec section 3), acceptance items 1-6, each one
mechanical test, on SQLite and PostgreSQL; plus the pages a person uses without JavaScript."""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from records_bridge.codes import new_code
from records_bridge.oauth import schema as oauth_schema
from records_bridge.oauth.scopes import describe
from tests.bridge_codes_helpers import DAY, app, connect_request, patient
from tests.bridge_fixtures import bridge_fixture  # noqa: F401 -- fixture
from tests.storage_fixtures import store_fixture, store_url_fixture  # noqa: F401 -- fixtures

CODE = re.compile(r"^[BCDFGHJKMNPQRSTVWXYZ]{4}(-[BCDFGHJKMNPQRSTVWXYZ]{4}){4}$")


async def test_item1_code_format_and_forgiving_input(bridge):
    clinic = await app(bridge, "connect")
    status, created = await connect_request(clinic)
    assert status == 201 and CODE.match(created["code"])
    assert created["pickup_url"] == f"{bridge.base_url}/connect?code={created['code']}"
    pat = await patient(bridge)
    typed = created["code"].lower().replace("-", " ", 2).replace("-", "")
    assert await pat.call("/v1/connect/lookup", {"code": typed}) == (200, {"question": "Your first pet's name?"})


async def test_item2_answers_are_case_insensitive_and_whitespace_sensitive(bridge):
    clinic = await app(bridge, "connect")
    _, created = await connect_request(clinic, answer="Fluffy")
    pat = await patient(bridge)
    for typed in ("fluffy", "FLUFFY"):
        status, body = await pat.call("/v1/connect/verify", {"code": created["code"], "answer": typed})
        assert status == 200 and body["friendly_name"] == "Dr Smith's clinic", typed
    for typed, remaining in ((" fluffy", 2), ("fluffy ", 1)):
        status, body = await pat.call("/v1/connect/verify", {"code": created["code"], "answer": typed})
        assert (status, body["error"], body["attempts_remaining"]) == (401, "wrong_answer", remaining), typed
    status, body = await connect_request(clinic, external_id="other", answer="Fluff")
    assert (status, body["error"]) == (400, "invalid_answer")


async def test_item3_three_wrong_answers_lock_and_malformed_codes_do_not_count(bridge):
    clinic = await app(bridge, "connect")
    _, created = await connect_request(clinic)
    pat = await patient(bridge)
    verify = "/v1/connect/verify"
    assert (await pat.call(verify, {"code": created["code"], "answer": "wrong1"}))[1]["attempts_remaining"] == 2
    assert (await pat.call(verify, {"code": created["code"], "answer": "wrong2"}))[1]["attempts_remaining"] == 1
    for malformed in (created["code"][:-1], created["code"] + "B", created["code"].replace("-", "_")):
        status, body = await pat.call(verify, {"code": malformed, "answer": "Fluffy"})
        assert (status, body["error"]) == (400, "malformed_code")
    assert (await pat.call(verify, {"code": created["code"], "answer": "wrong3"}))[1]["attempts_remaining"] == 0
    status, body = await pat.call(verify, {"code": created["code"], "answer": "Fluffy"})
    assert (status, body["error"]) == (423, "locked")
    assert (await pat.call("/v1/connect/lookup", {"code": created["code"]}))[0] == 423


async def test_item4_lookup_after_28_days_and_a_second_is_gone(bridge):
    clinic = await app(bridge, "connect")
    _, created = await connect_request(clinic)
    pat = await patient(bridge)
    bridge.clock.advance(28 * DAY)
    await pat.sign_in_again()
    assert (await pat.call("/v1/connect/lookup", {"code": created["code"]}))[0] == 200
    bridge.clock.advance(1)
    status, body = await pat.call("/v1/connect/lookup", {"code": created["code"]})
    assert (status, body["error"]) == (410, "expired")


async def test_item5_one_request_per_external_id_until_deleted(bridge):
    clinic = await app(bridge, "connect")
    status, first = await connect_request(clinic)
    assert status == 201
    status, body = await connect_request(clinic)
    assert (status, body["error"]) == (409, "duplicate_external_id")
    assert (await clinic.call("DELETE", "/v1/connect-requests/patient-42"))[0] == 204
    assert (await clinic.call("DELETE", "/v1/connect-requests/patient-42"))[0] == 404
    status, second = await connect_request(clinic)
    assert status == 201 and second["code"] != first["code"]
    pat = await patient(bridge)
    assert (await pat.call("/v1/connect/lookup", {"code": first["code"]}))[0] == 404  # deletion destroyed it


async def test_item6_authorized_list_the_90_day_window_and_the_lasting_grant(bridge):
    clinic = await app(bridge, "connect")
    _, created = await connect_request(clinic)
    pat = await patient(bridge)

    async def authorize() -> int:
        status, verified = await pat.call("/v1/connect/verify", {"code": created["code"], "answer": "fluffy"})
        assert status == 200
        status, body = await pat.call("/v1/connect/authorize", {"ticket": verified["ticket"], "record_id": pat.record_id})
        assert status in (200, 201), body
        return status

    assert await authorize() == 201
    since = "2026-12-01T00:00:00Z"
    status, listed = await clinic.call("GET", f"/v1/connect-requests/authorized?since={since}")
    assert status == 200
    assert [(r["external_id"], r["person_id"], r["record_id"]) for r in listed] == [
        ("patient-42", str(pat.person.id), str(pat.record_id))]

    bridge.clock.advance(90 * DAY + 1)
    await clinic.renew()
    await pat.sign_in_again()
    assert await clinic.call("GET", f"/v1/connect-requests/authorized?since={since}") == (200, [])
    status, people = await clinic.call("GET", "/v1/authorized-people")  # the grant itself lives on
    assert status == 200 and [p["person_id"] for p in people["people"]] == [str(pat.person.id)]
    assert [r["id"] for r in people["people"][0]["records"]] == [str(pat.record_id)]

    assert await authorize() == 200  # the same record and app again: idempotent
    status, listed = await clinic.call("GET", f"/v1/connect-requests/authorized?since={since}")
    assert [r["external_id"] for r in listed] == ["patient-42"]


@pytest.mark.parametrize("since", ["yesterday", "2026-12-01T00:00:00"], ids=["not-a-date", "no-zone"])
async def test_authorized_list_refuses_a_bad_since(bridge, since):
    clinic = await app(bridge, "connect")
    status, body = await clinic.call("GET", f"/v1/connect-requests/authorized?since={since}")
    assert (status, body["error"]) == (400, "invalid_datetime")


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [("question", "   ", "invalid_question"), ("question", "q" * 256, "invalid_question"),
     ("answer", " Fluffy", "invalid_answer"), ("external_id", "", "invalid_request"),
     ("friendly_name", None, "invalid_request")],
    ids=["blank-question", "long-question", "padded-answer", "empty-external-id", "no-friendly-name"],
)
async def test_create_refusals(bridge, field, value, error):
    clinic = await app(bridge, "connect")
    body = {"external_id": "e", "friendly_name": "n", "question": "q?", "answer": "Fluffy", field: value}
    status, got = await clinic.call("POST", "/v1/connect-requests", body)
    assert (status, got["error"]) == (400, error)


async def test_rename_and_its_collision(bridge):
    clinic = await app(bridge, "connect")
    await connect_request(clinic, external_id="a")
    await connect_request(clinic, external_id="b")
    status, body = await clinic.call("PATCH", "/v1/connect-requests/a", {"new_external_id": "b"})
    assert (status, body["error"]) == (409, "duplicate_external_id")
    assert await clinic.call("PATCH", "/v1/connect-requests/a", {"new_external_id": "c"}) == (200, {"external_id": "c"})
    assert (await clinic.call("PATCH", "/v1/connect-requests/a", {"new_external_id": "d"}))[0] == 404


async def test_only_client_tokens_with_the_connect_scope(bridge):
    other = await app(bridge, "packages")
    status, body = await connect_request(other)
    assert (status, body["error"]) == (403, "insufficient_scope")
    pat = await patient(bridge)
    client = await bridge.client("Person app")
    issued = await bridge.user_token(client, pat.person.id, [pat.record_id])
    other.token = issued.access_token
    assert (await connect_request(other))[0] == 403


async def test_patient_api_needs_a_session_and_the_csrf_header(bridge):
    clinic = await app(bridge, "connect")
    _, created = await connect_request(clinic)
    pat = await patient(bridge)
    async with await pat.browser.post("/v1/connect/lookup", json={"code": created["code"]}) as r:
        assert r.status == 403 and (await r.json())["error"] == "csrf"
    anonymous = await bridge.browser()
    async with await anonymous.post("/v1/connect/lookup", json={"code": created["code"]}) as r:
        assert r.status == 401


async def test_code_entry_is_rate_limited_per_session_and_ip(bridge):
    pat = await patient(bridge)
    statuses = [(await pat.call("/v1/connect/lookup", {"code": new_code().display}))[0] for _ in range(11)]
    assert statuses == [404] * 10 + [429]
    bridge.clock.advance(60)
    assert (await pat.call("/v1/connect/lookup", {"code": new_code().display}))[0] == 404


async def test_the_pages_walk_code_answer_record_and_consent(bridge):
    clinic = await app(bridge, "connect")
    _, created = await connect_request(clinic)
    pat = await patient(bridge)
    b = pat.browser
    async with await b.get("/connect?code=" + created["code"]) as r:
        page = await r.text()
        assert r.status == 200 and '<label for="code">Connect code</label>' in page and created["code"] in page
        assert "<h1>" in page and "<script" not in page
    async with await b.post("/connect", {"code": created["code"].lower(), "csrf_token": pat.csrf}) as r:
        page = await r.text()
        assert r.status == 200 and "<label for=\"answer\">Your first pet&#39;s name?</label>" in page
        assert "Dr Smith" not in page  # the friendly name is not revealed before the answer
    async with await b.post("/connect/answer", {"code": created["code"], "answer": "nope!!", "csrf_token": pat.csrf}) as r:
        assert r.status == 401 and "2 more tries" in await r.text()
    async with await b.post("/connect/answer", {"code": created["code"], "answer": "FLUFFY", "csrf_token": pat.csrf}) as r:
        page = await r.text()
        assert r.status == 200 and "Connect Dr Smith&#39;s clinic to your record?" in page
        assert f"<li>{html.escape(describe('records.*.r'))}</li>" in page  # scopes in words
        assert "Keep access when you are not using the app" in page
    ticket = re.search(r'name="ticket" value="([^"]+)"', page).group(1)
    async with await b.post("/connect/authorize", {"ticket": ticket, "app_name": "Dr Smith's clinic",
                                                    "record": str(pat.record_id), "decision": "allow",
                                                    "csrf_token": pat.csrf}) as r:
        assert r.status == 200 and "is connected" in await r.text()
    assert (await clinic.call("GET", "/v1/connect-requests/authorized"))[1][0]["record_id"] == str(pat.record_id)


async def test_pages_refuse_forms_without_csrf(bridge):
    pat = await patient(bridge)
    async with await pat.browser.post("/connect", {"code": new_code().display}) as r:
        assert r.status == 403


async def test_oversized_and_non_object_bodies(bridge):
    pat = await patient(bridge)
    status, body = await pat.call("/v1/connect/lookup", {"code": "x" * 70_000})
    assert (status, body["error"]) == (413, "too_large")
    async with await pat.browser.post("/v1/connect/lookup", data=b"[1]", headers={
            "X-CSRF-Token": pat.csrf, "Content-Type": "application/json"}) as r:
        assert r.status == 400 and (await r.json())["error"] == "invalid_request"


async def test_authorize_grants_required_and_chosen_optional_scopes_only(bridge):
    clinic = await app(bridge, "connect", required_scopes=("records.*.r",), optional_scopes=("records.file.c",))
    _, created = await connect_request(clinic)
    pat = await patient(bridge)
    _, verified = await pat.call("/v1/connect/verify", {"code": created["code"], "answer": "Fluffy"})
    status, body = await pat.call("/v1/connect/authorize", {"ticket": verified["ticket"], "record_id": pat.record_id,
                                                            "optional_scopes": ["records.*.d"]})
    assert (status, body["error"]) == (400, "invalid_scope")
    status, body = await pat.call("/v1/connect/authorize", {"ticket": verified["ticket"], "record_id": pat.record_id,
                                                            "optional_scopes": ["records.file.c"]})
    assert status == 201
    g = oauth_schema.grants
    row = await bridge.ctx.store.read(lambda conn: conn.execute(select(g.c.scopes, g.c.offline)).one())
    assert (set(row.scopes.split()), row.offline) == ({"records.*.r", "records.file.c"}, True)
    status, body = await pat.call("/v1/connect/authorize", {"ticket": verified["ticket"], "record_id": pat.record_id})
    assert (status, body["error"]) == (400, "invalid_ticket")  # single use
    _, other_record = await bridge.person()
    _, verified = await pat.call("/v1/connect/verify", {"code": created["code"], "answer": "Fluffy"})
    status, body = await pat.call("/v1/connect/authorize", {"ticket": verified["ticket"], "record_id": other_record})
    assert (status, body["error"]) == (403, "forbidden")


async def test_the_pickup_url_leads_through_sign_in_back_to_the_prefilled_code(bridge):
    clinic = await app(bridge, "connect")
    _, created = await connect_request(clinic)
    anonymous = await bridge.browser()
    async with await anonymous.get(created["pickup_url"]) as r:
        location = urlsplit(r.headers["Location"])
    assert (r.status, location.path) == (302, "/signin")
    assert parse_qs(location.query)["next"] == [f"/connect?code={created['code']}"]
