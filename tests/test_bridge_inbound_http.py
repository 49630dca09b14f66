"""Messages into the record over HTTP (records-bridge spec section 6): acceptance item 13 as one
mechanical test on SQLite and PostgreSQL, the unknown recipient, the record address endpoint."""

from __future__ import annotations

import base64

from gateway.domains import LocalDomains
from records_bridge.types import InboxState
from tests.bridge_codes_helpers import app, patient
from tests.bridge_fixtures import bridge_fixture  # noqa: F401 -- fixture
from tests.storage_fixtures import store_fixture, store_url_fixture  # noqa: F401 -- fixtures
from tests.test_records_store import CCD


def message(to: str, subject: str = "Visit summary") -> dict:
    return {
        "to": to, "from": "dr@clinic.example", "subject": subject, "received_at": "2026-12-02T08:59:00Z",
        "body_text": "Your summary is attached.",
        "attachments": [{"filename": "summary.xml", "content_type": "text/xml", "bytes_b64": base64.b64encode(CCD).decode()}],
    }


async def test_item13_known_address_gets_typed_items_and_newuser_holds_a_package(bridge):
    await LocalDomains(bridge.ctx.store).create("records.example", at=bridge.clock())
    gateway = await app(bridge, "inbound.messages")
    pat = await patient(bridge)
    status, body = await pat.call(f"/v1/records/{pat.record_id}/address", {"address": "pat.smith@records.example"})
    assert (status, body["address"]) == (201, "pat.smith@records.example")

    status, body = await gateway.call("POST", "/v1/inbound/messages", message("pat.smith@records.example"))
    assert status == 201 and body["status"] == "delivered" and len(body["items"]) == 3
    status, again = await gateway.call("POST", "/v1/inbound/messages", message("pat.smith@records.example"))
    assert (status, again["status"], again["items"]) == (200, "duplicate", body["items"][:1])  # a retry adds nothing
    items = await bridge.ctx.records.items(pat.record_id)
    assert sorted(i.type.value for i in items) == ["ccd", "file", "message"]
    assert {i.inbox_state for i in items} == {InboxState.UNREVIEWED}

    status, held = await gateway.call("POST", "/v1/inbound/messages",
                                      message("newuser@records.example", "x@y.z;Q;Answer1;Hi"))
    assert status == 202 and held["status"] == "held" and held["contact"] == "x@y.z"
    assert await pat.call("/v1/pickup/lookup", {"code": held["code"]}) == (200, {"question": "Q"})
    status, redeemed = await pat.call("/v1/pickup/redeem", {"code": held["code"], "answer": "answer1",
                                                            "record_id": pat.record_id})
    assert status == 200 and len(redeemed["imported"]) == 3
    subjects = [i.data.get("subject") for i in await bridge.ctx.records.items(pat.record_id) if i.type.value == "message"]
    assert subjects == ["Visit summary", "Hi"]


async def test_unknown_recipient_is_404(bridge):
    gateway = await app(bridge, "inbound.messages")
    status, body = await gateway.call("POST", "/v1/inbound/messages", message("nobody@records.example"))
    assert (status, body["error"]) == (404, "unknown_recipient")


async def test_inbound_needs_the_inbound_scope(bridge):
    other = await app(bridge, "packages")
    assert (await other.call("POST", "/v1/inbound/messages", message("nobody@records.example")))[0] == 403


async def test_malformed_inbound_messages_are_400(bridge):
    gateway = await app(bridge, "inbound.messages")
    status, body = await gateway.call("POST", "/v1/inbound/messages", {**message("a@b.example"), "received_at": "soon"})
    assert (status, body["error"]) == (400, "invalid_request")
    status, body = await gateway.call("POST", "/v1/inbound/messages", message("newuser@b.example", "x@y.z;Q;short"))
    assert (status, body["error"]) == (400, "invalid_answer")


async def test_record_address_rules(bridge):
    await LocalDomains(bridge.ctx.store).create("records.example", at=bridge.clock())
    pat = await patient(bridge)
    other = await patient(bridge)
    path = f"/v1/records/{pat.record_id}/address"
    assert (await other.call(path, {"address": "mine@records.example"}))[0] == 403
    for bad in ("ab@records.example", "newuser@records.example", "pat@elsewhere.example", "p_t@records.example"):
        assert (await pat.call(path, {"address": bad}))[0] == 400, bad
    assert (await pat.call(path, {"address": "pat@records.example"}))[0] == 201
    assert (await other.call(f"/v1/records/{other.record_id}/address", {"address": "pat@records.example"}))[0] == 409
