"""Drop-Off/Pick-Up over HTTP (records-bridge spec section 4): acceptance items 4 (packages), 7,
8 and 9, each one mechanical test, on SQLite and PostgreSQL; the app API's refusals and the
pickup pages."""

from __future__ import annotations

import asyncio
import base64
import copy
import os
import re
from datetime import timedelta

import pytest
from sqlalchemy import LargeBinary, String, Text, select

from gateway.store import schema as gateway_schema
from records_bridge.client import PackageItem, seal_package
from records_bridge.codes import new_code, parse_code
from records_bridge.connect.edge import PEPPER_PURPOSE
from records_bridge.oauth.clients import ClientError
from records_bridge.packages.schema import packages
from records_bridge.packages.store import DropOff, Packages
from records_bridge.types import InboxState, SourceKind
from tests.bridge_codes_helpers import DAY, App, app, connect_request, patient
from tests.bridge_fixtures import (
    T0,
    Clock,
    bridge_fixture,  # noqa: F401 -- fixture
    start_bridge,
)
from tests.storage_fixtures import store_fixture, store_url_fixture  # noqa: F401 -- fixtures
from tests.test_records_store import CCD

ITEMS = [{"content_type": "text/xml", "filename": "summary.xml", "bytes_b64": base64.b64encode(CCD).decode()}]


async def convenience(clinic: App, answer: str = "Fluffy1", items=None) -> tuple[int, dict]:
    return await clinic.call("POST", "/v1/packages", {
        "external_id": "visit-7", "friendly_name": "Your visit summary", "question": "Your pet's name?",
        "answer": answer, "items": items or ITEMS,
    })


async def sealed(clinic: App, envelope_change=None) -> str:
    status, allocated = await clinic.call("POST", "/v1/packages:allocate")
    assert status == 201
    envelope = seal_package([PackageItem("application/pdf", b"%PDF-1.4 results", "results.pdf")], "Fluffy1",
                            code=allocated["code"], client_id=clinic.client_id)
    if envelope_change:
        envelope = envelope_change(copy.deepcopy(envelope))
    status, body = await clinic.call("POST", "/v1/packages", {
        "code": allocated["code"], "external_id": "visit-8", "friendly_name": "Lab results",
        "question": "Your pet's name?", "envelope": envelope,
    })
    assert status == 201, body
    return allocated["code"]


async def test_item4_packages_expire_after_28_days(bridge):
    clinic = await app(bridge, "packages")
    _, created = await convenience(clinic)
    pat = await patient(bridge)
    bridge.clock.advance(28 * DAY)
    await pat.sign_in_again()
    assert (await pat.call("/v1/pickup/lookup", {"code": created["code"]}))[0] == 200
    bridge.clock.advance(1)
    status, body = await pat.call("/v1/pickup/lookup", {"code": created["code"]})
    assert (status, body["error"]) == (410, "expired")


async def test_item7_neither_answer_nor_code_is_stored_in_clear(bridge):
    clinic = await app(bridge, "packages", "connect")
    codes = [(await connect_request(clinic, answer="Fluffy-Secret"))[1]["code"],
             (await convenience(clinic, answer="Fluffy-Secret"))[1]["code"]]
    allocated = await clinic.call("POST", "/v1/packages:allocate")
    codes.append(allocated[1]["code"])
    needles = {"Fluffy-Secret", "fluffy-secret"}
    for code in codes:
        needles |= {code, parse_code(code).canonical, code.lower(), parse_code(code).canonical.lower()}

    def dump(conn):
        found = []
        for table in gateway_schema.metadata.sorted_tables:
            cols = [c for c in table.columns if isinstance(c.type, (String, Text, LargeBinary))]
            for row in conn.execute(select(*cols)) if cols else ():
                for value in row:
                    text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
                    found += [(table.name, n) for n in needles if n in text]
        return found

    assert await bridge.ctx.store.read(dump) == []
    cols = set(gateway_schema.metadata.tables["packages"].columns.keys())
    assert not {c for c in cols if "answer" in c}, "the package row has no place for the answer"


async def test_item8_redeem_imports_once_into_the_chosen_records_inbox(bridge):
    clinic = await app(bridge, "packages")
    _, created = await convenience(clinic)
    pat = await patient(bridge)
    assert await pat.call("/v1/pickup/lookup", {"code": created["code"]}) == (200, {"question": "Your pet's name?"})
    status, body = await pat.call("/v1/pickup/redeem", {"code": created["code"], "answer": "FLUFFY1",
                                                        "record_id": pat.record_id})
    assert status == 200 and body["friendly_name"] == "Your visit summary" and len(body["imported"]) == 1
    items = await bridge.ctx.records.items(pat.record_id)
    assert [(i.uid, i.type.value, i.inbox_state, i.source_kind) for i in items] == [
        (body["imported"][0], "ccd", InboxState.UNREVIEWED, SourceKind.PACKAGE)]
    assert items[0].data["created"]["by_client"] == clinic.client_id
    again = await pat.call("/v1/pickup/redeem", {"code": created["code"], "answer": "FLUFFY1", "record_id": pat.record_id})
    assert again[0] in (404, 410)
    # the app cannot learn about the pickup: no status endpoint, and deleting answers alike
    for method in ("GET", "HEAD"):
        assert (await clinic.call(method, f"/v1/packages/{created['code']}"))[0] in (404, 405)
    _, pending = await convenience(clinic)
    assert (await clinic.call("DELETE", f"/v1/packages/{created['code']}"))[0] == 204
    assert (await clinic.call("DELETE", f"/v1/packages/{pending['code']}"))[0] == 204


async def test_item9_a_tampered_ciphertext_is_a_wrong_answer_and_imports_nothing(bridge):
    clinic = await app(bridge, "packages")

    def tamper(env):
        ct = bytearray(base64.b64decode(env["ct"]))
        ct[len(ct) // 2] ^= 0x01
        env["ct"] = base64.b64encode(bytes(ct)).decode()
        return env

    code = await sealed(clinic, tamper)
    pat = await patient(bridge)
    status, body = await pat.call("/v1/pickup/redeem", {"code": code, "answer": "Fluffy1", "record_id": pat.record_id})
    assert (status, body["error"], body["attempts_remaining"]) == (401, "wrong_answer", 2)
    assert await bridge.ctx.records.items(pat.record_id) == []


async def test_an_app_sealed_package_is_picked_up(bridge):
    clinic = await app(bridge, "packages")
    code = await sealed(clinic)
    pat = await patient(bridge)
    status, body = await pat.call("/v1/pickup/redeem", {"code": code, "answer": "fluffy1", "record_id": pat.record_id})
    assert status == 200 and body["friendly_name"] == "Lab results"
    assert await bridge.ctx.records.blob((await bridge.ctx.records.items(pat.record_id))[0].id) == b"%PDF-1.4 results"


async def test_allocated_but_empty_is_incomplete_and_no_attempt(bridge):
    clinic = await app(bridge, "packages")
    _, allocated = await clinic.call("POST", "/v1/packages:allocate")
    pat = await patient(bridge)
    for _ in range(4):
        status, body = await pat.call("/v1/pickup/redeem", {"code": allocated["code"], "answer": "x" * 6,
                                                            "record_id": pat.record_id})
        assert (status, body["error"]) == (409, "package_incomplete")


async def test_drop_off_refusals(bridge):
    clinic = await app(bridge, "packages")
    code = await sealed(clinic)
    base = {"external_id": "e", "friendly_name": "n", "question": "q?"}
    fresh = seal_package([PackageItem("text/plain", b"x")], "Fluffy1", code=new_code().display, client_id="x")
    cases = [
        ({**base, "code": code, "envelope": fresh}, 409, "package_exists"),
        ({**base, "code": new_code().display, "envelope": fresh}, 404, "not_found"),
        ({**base, "envelope": fresh}, 400, "invalid_request"),
        ({**base, "code": "nope", "envelope": fresh}, 400, "malformed_code"),
        ({**base, "answer": "Fluff", "items": ITEMS}, 400, "invalid_answer"),
        ({**base, "answer": "Fluffy1", "items": []}, 400, "invalid_items"),
        ({**base, "question": " ", "answer": "Fluffy1", "items": ITEMS}, 400, "invalid_question"),
    ]
    for body, status, error in cases:
        got = await clinic.call("POST", "/v1/packages", body)
        assert (got[0], got[1]["error"]) == (status, error), body
    _, allocated = await clinic.call("POST", "/v1/packages:allocate")
    weak = {**fresh, "n": 2**14}
    got = await clinic.call("POST", "/v1/packages", {**base, "code": allocated["code"], "envelope": weak})
    assert (got[0], got[1]["error"]) == (400, "weak_kdf")


async def test_delete_by_external_id_and_rename(bridge):
    clinic = await app(bridge, "packages")
    _, a = await convenience(clinic)
    _, b = await convenience(clinic)
    assert await clinic.call("PATCH", f"/v1/packages/{b['code']}", {"new_external_id": "visit-9"}) == (
        200, {"external_id": "visit-9"})
    assert (await clinic.call("DELETE", "/v1/packages?external_id=visit-7"))[0] == 204
    assert (await clinic.call("DELETE", "/v1/packages?external_id=visit-7"))[0] == 404
    pat = await patient(bridge)
    assert (await pat.call("/v1/pickup/lookup", {"code": a["code"]}))[0] == 404
    assert (await pat.call("/v1/pickup/lookup", {"code": b["code"]}))[0] == 200


async def test_redeem_needs_write_access_to_the_record(bridge):
    clinic = await app(bridge, "packages")
    _, created = await convenience(clinic)
    pat = await patient(bridge)
    _, other_record = await bridge.person()
    status, body = await pat.call("/v1/pickup/redeem", {"code": created["code"], "answer": "Fluffy1",
                                                        "record_id": other_record})
    assert (status, body["error"]) == (403, "forbidden")
    assert (await pat.call("/v1/pickup/lookup", {"code": created["code"]}))[0] == 200  # no attempt used


@pytest.mark.parametrize("scopes", [("connect",), ("records.*.r",)], ids=["connect-only", "no-client-scope"])
async def test_only_client_tokens_with_the_packages_scope(bridge, scopes):
    clinic = await app(bridge, *scopes) if scopes != ("records.*.r",) else None
    if clinic is None:
        pat = await patient(bridge)
        client = await bridge.client("Person app")
        issued = await bridge.user_token(client, pat.person.id, [pat.record_id])
        clinic = App(bridge, client, (), issued.access_token)
    assert (await clinic.call("POST", "/v1/packages:allocate"))[0] == 403


async def test_the_pickup_pages(bridge):
    clinic = await app(bridge, "packages")
    _, created = await convenience(clinic)
    pat = await patient(bridge)
    b = pat.browser
    async with await b.get("/pickup") as r:
        assert r.status == 200 and '<label for="code">Pickup code</label>' in await r.text()
    async with await b.post("/pickup", {"code": created["code"].replace("-", " "), "csrf_token": pat.csrf}) as r:
        page = await r.text()
        assert r.status == 200 and '<label for="answer">Your pet&#39;s name?</label>' in page
        assert f'id="record-{pat.record_id}"' in page and "<legend>Put the documents into which record?</legend>" in page
    form = {"code": created["code"], "record": str(pat.record_id), "csrf_token": pat.csrf}
    async with await b.post("/pickup/redeem", {**form, "answer": "wrong!"}) as r:
        assert r.status == 401 and "2 more tries" in await r.text()
    async with await b.post("/pickup/redeem", {**form, "answer": "fluffy1"}) as r:
        page = await r.text()
        assert r.status == 200 and "Picked up: Your visit summary" in page
        assert re.search(rf'href="/records/{pat.record_id}/inbox"', page)
    async with await b.post("/pickup/redeem", {**form, "answer": "fluffy1"}) as r:
        assert r.status == 410 and "picked up already" in await r.text()


async def test_the_bridge_sweeps_dead_envelopes_when_it_starts(store):
    clock = Clock(T0 + timedelta(days=28, seconds=1))
    bridge, runner = await start_bridge(store, clock)
    try:
        pkgs = Packages(store, bridge.ctx.settings.secret(PEPPER_PURPOSE))
        await pkgs.drop_off_sealing("app1", None, DropOff("e", "n", "q?"), "Fluffy1", ITEMS, at=T0)
    finally:
        await bridge.close()
        await runner.cleanup()
    bridge, runner = await start_bridge(store, clock)  # a restart sweeps at once
    try:
        for _ in range(100):
            rows = await store.read(lambda conn: conn.execute(select(packages.c.state, packages.c.envelope)).all())
            if rows[0].envelope is None:
                break
            await asyncio.sleep(0.02)
        assert [(r.state, r.envelope) for r in rows] == [("expired", None)]
    finally:
        await bridge.close()
        await runner.cleanup()


@pytest.mark.slow
async def test_a_package_at_the_20_mib_limit_goes_through_and_one_byte_more_does_not(bridge):
    clinic = await app(bridge, "packages")
    big = os.urandom(20 * 1024 * 1024)
    item = {"content_type": "application/octet-stream", "filename": "scan.bin", "bytes_b64": base64.b64encode(big).decode()}
    status, created = await convenience(clinic, items=[item])
    assert status == 201, created
    pat = await patient(bridge)
    status, body = await pat.call("/v1/pickup/redeem", {"code": created["code"], "answer": "Fluffy1",
                                                        "record_id": pat.record_id})
    assert status == 200
    assert await bridge.ctx.records.blob((await bridge.ctx.records.items(pat.record_id))[0].id) == big
    over = {**item, "bytes_b64": base64.b64encode(big + b"x").decode()}
    status, body = await convenience(clinic, items=[over])
    assert (status, body["error"]) == (400, "invalid_items")


async def test_public_clients_get_no_connect_or_packages_token(bridge):
    native = await bridge.client("Phone app", redirect_uris=("http://127.0.0.1/cb",), public=True)
    for scope in ("connect", "packages"):
        status, body = await bridge.token_request(native, {"grant_type": "client_credentials", "scope": scope})
        assert status in (400, 401) and body["error"] in ("unauthorized_client", "invalid_client", "invalid_scope")
    with pytest.raises(ClientError):
        await bridge.client("Phone app 2", redirect_uris=("http://127.0.0.1/cb",), public=True, scopes=("packages",))
