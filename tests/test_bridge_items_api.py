"""The app API over a record's items: only the granted record, scopes per type
and operation, added items in the inbox with the app as their source, and
inbox reconciling (accept, dismiss) like HealthVault's RECONCILE."""

from __future__ import annotations

import base64
from typing import Any

import aiohttp
import pytest

from records_bridge.access import Role, give
from records_bridge.types import Attachment
from records_bridge.web.refusals import Refusal
from tests.bridge_fixtures import T0, Bridge, bridge_fixture  # noqa: F401 -- fixture
from tests.test_bridge_items_cda import SAMPLE_CCD
from tests.test_records_store import PDF, delivery

from .storage_fixtures import store_fixture, store_url_fixture  # noqa: F401


async def call(bridge: Bridge, method: str, path: str, token: str | None, **kw: Any) -> tuple[int, Any, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http, http.request(method, bridge.url(path), headers=headers, **kw) as r:
        body = await r.json() if r.content_type == "application/json" else await r.read()
        return r.status, body, r.headers


async def patient_with_app(bridge: Bridge, scopes: tuple[str, ...] = ("records.*.r",)):
    person, record_id = await bridge.person()
    client = await bridge.client(scopes=scopes)
    token = await bridge.user_token(client, person.id, [record_id], scopes)
    return person, record_id, client, token.access_token


async def deliver_ccd(bridge: Bridge, record_id: int) -> None:
    await bridge.ctx.records.deliver(record_id, delivery(attachments=(Attachment("text/xml", "ccd.xml", SAMPLE_CCD),)))


def new_item_body(content: bytes = PDF, content_type: str = "application/pdf", **extra: Any) -> dict[str, Any]:
    return {"data": {"title": "Blood results"}, **extra,
            "blobs": [{"content_type": content_type, "filename": "results.pdf", "data": base64.b64encode(content).decode()}]}


async def test_an_app_lists_and_reads_the_granted_records_items_and_their_bytes(bridge):
    _, record_id, _client, token = await patient_with_app(bridge)
    await deliver_ccd(bridge, record_id)
    status, body, _ = await call(bridge, "GET", f"/v1/records/{record_id}/items", token)
    assert status == 200
    assert [(i["type"], i["inbox_state"], i["source"]["kind"]) for i in body["items"]] == [
        ("message", "unreviewed", "direct"), ("ccd", "unreviewed", "direct")]
    ccd = body["items"][1]
    status, one, _ = await call(bridge, "GET", f"/v1/records/{record_id}/items/{ccd['id']}", token)
    assert status == 200 and one == ccd
    status, data, headers = await call(bridge, "GET", f"/v1/records/{record_id}/items/{ccd['id']}/blobs/content", token)
    assert status == 200 and data == SAMPLE_CCD
    assert headers["Content-Disposition"].startswith('attachment; filename="ccd.xml"')
    assert headers["X-Content-Type-Options"] == "nosniff"


async def test_another_record_and_an_unknown_record_answer_alike(bridge):
    _, mine, _, token = await patient_with_app(bridge)
    _, theirs = await bridge.person()
    await deliver_ccd(bridge, theirs)
    answers = []
    for rid in (theirs, 999999, "abc"):
        status, body, _ = await call(bridge, "GET", f"/v1/records/{rid}/items", token)
        answers.append((status, body))
    assert answers[0] == answers[1] == answers[2]
    assert answers[0][0] == 403 and answers[0][1]["error"] == "forbidden"
    assert bridge.ctx.refusals.counts[Refusal.FOREIGN_GRANT] == 3  # one client reading another's record: counted
    their_item = (await bridge.ctx.records.items(theirs))[1].uid
    status, _, _ = await call(bridge, "GET", f"/v1/records/{mine}/items/{their_item}", token)
    assert status == 404


async def test_a_person_who_lost_access_stops_their_apps_at_once(bridge):
    _person, record_id, _, token = await patient_with_app(bridge)
    from records_bridge import schema

    await bridge.ctx.store.run(lambda conn: conn.execute(schema.record_access.delete()))
    status, body, _ = await call(bridge, "GET", f"/v1/records/{record_id}/items", token)
    assert status == 403 and body["error"] == "forbidden"


async def test_an_added_item_lands_in_the_inbox_with_the_app_as_source(bridge):
    person, record_id, client, token = await patient_with_app(bridge, ("records.*.r", "records.file.c"))
    status, added, headers = await call(bridge, "POST", f"/v1/records/{record_id}/items", token, json=new_item_body())
    assert status == 201, added
    assert headers["Location"] == added["href"]
    assert (added["type"], added["inbox_state"], added["source"], added["title"]) == (
        "file", "unreviewed", {"kind": "app", "ref": client.client.client_id}, "Blood results")
    assert added["created"] == {"at": T0.isoformat(), "by_person": str(person.id), "by_client": client.client.client_id}
    assert added["data"] == {"title": "Blood results"}
    status, data, _ = await call(bridge, "GET", f"/v1/records/{record_id}/items/{added['id']}/blobs/content", token)
    assert data == PDF


@pytest.mark.parametrize(
    ("scopes", "body", "status", "error"),
    [
        (("records.*.r",), new_item_body(), 403, "insufficient_scope"),
        (("records.file.c",), new_item_body(SAMPLE_CCD, "text/xml"), 403, "insufficient_scope"),  # typed ccd
        (("records.*.c",), new_item_body(type="message"), 400, "invalid_request"),
        (("records.*.c",), new_item_body(data={"created": {"by_client": "forged"}}), 400, "invalid_request"),
        (("records.*.c",), {"blobs": [{"content_type": "text/plain", "data": "not base64!"}]}, 400, "invalid_request"),
        (("records.*.c",), [], 400, "invalid_request"),
    ],
    ids=["read-only-token", "file-scope-for-a-ccd", "message-type", "forged-provenance", "bad-base64", "not-an-object"],
)
async def test_adds_outside_the_scopes_or_the_shape_are_refused(bridge, scopes, body, status, error):
    _, record_id, _, token = await patient_with_app(bridge, scopes)
    got, answer, _ = await call(bridge, "POST", f"/v1/records/{record_id}/items", token, json=body)
    assert (got, answer["error"]) == (status, error)
    assert await bridge.ctx.records.count_items(record_id) == 0


async def test_a_viewer_cannot_add_or_reconcile(bridge):
    _owner, record_id = await bridge.person()
    viewer, _ = await bridge.person()
    await give(bridge.ctx.store, viewer.id, record_id, Role.VIEWER, at=T0)
    client = await bridge.client(scopes=("records.*.cru",))
    token = (await bridge.user_token(client, viewer.id, [record_id], ("records.*.cru",))).access_token
    await deliver_ccd(bridge, record_id)
    status, body, _ = await call(bridge, "GET", f"/v1/records/{record_id}/items", token)
    assert status == 200 and len(body["items"]) == 2
    status, body, _ = await call(bridge, "POST", f"/v1/records/{record_id}/items", token, json=new_item_body())
    assert (status, body["error"]) == (403, "forbidden")
    uid = (await bridge.ctx.records.items(record_id))[0].uid
    status, body, _ = await call(bridge, "POST", f"/v1/records/{record_id}/inbox/{uid}:accept", token)
    assert (status, body["error"]) == (403, "forbidden")


async def test_inbox_items_are_accepted_or_dismissed_once(bridge):
    _, record_id, _, token = await patient_with_app(bridge, ("records.*.ru",))
    await deliver_ccd(bridge, record_id)
    message, ccd = (i.uid for i in await bridge.ctx.records.items(record_id))
    status, body, _ = await call(bridge, "POST", f"/v1/records/{record_id}/inbox/{ccd}:accept", token)
    assert (status, body["inbox_state"]) == (200, "accepted")
    status, body, _ = await call(bridge, "POST", f"/v1/records/{record_id}/inbox/{ccd}:accept", token)
    assert (status, body["inbox_state"]) == (200, "accepted")
    status, body, _ = await call(bridge, "POST", f"/v1/records/{record_id}/inbox/{ccd}:dismiss", token)
    assert (status, body["error"]) == (409, "not_in_inbox")
    status, body, _ = await call(bridge, "POST", f"/v1/records/{record_id}/inbox/{message}:dismiss", token)
    assert (status, body["inbox_state"]) == (200, "dismissed")
    status, body, _ = await call(bridge, "GET", f"/v1/records/{record_id}/items?inbox=unreviewed", token)
    assert body["items"] == []


async def test_reconciling_needs_the_update_scope(bridge):
    _, record_id, _, token = await patient_with_app(bridge, ("records.*.r",))
    await deliver_ccd(bridge, record_id)
    uid = (await bridge.ctx.records.items(record_id))[1].uid
    status, body, _ = await call(bridge, "POST", f"/v1/records/{record_id}/inbox/{uid}:accept", token)
    assert (status, body["error"]) == (403, "insufficient_scope")


async def test_a_smart_token_sees_documents_but_not_messages(bridge):
    _, record_id, _, token = await patient_with_app(bridge, ("patient/DocumentReference.rs",))
    await deliver_ccd(bridge, record_id)
    status, body, _ = await call(bridge, "GET", f"/v1/records/{record_id}/items", token)
    assert status == 200 and [i["type"] for i in body["items"]] == ["ccd"]
    message = (await bridge.ctx.records.items(record_id))[0].uid
    status, body, _ = await call(bridge, "GET", f"/v1/records/{record_id}/items/{message}", token)
    assert (status, body["error"]) == (403, "insufficient_scope")


async def test_pages_are_cursor_linked(bridge):
    _, record_id, _, token = await patient_with_app(bridge)
    for n in range(3):
        await bridge.ctx.records.deliver(record_id, delivery(message_id=f"<m{n}@a.test>"))
    seen, cursor = [], None
    while True:
        path = f"/v1/records/{record_id}/items?limit=2" + (f"&cursor={cursor}" if cursor else "")
        status, body, _ = await call(bridge, "GET", path, token)
        assert status == 200
        seen += [i["id"] for i in body["items"]]
        if not body["more_results"]:
            break
        cursor = body["next_cursor"]
    assert seen == [i.uid for i in await bridge.ctx.records.items(record_id)]
    status, body, _ = await call(bridge, "GET", f"/v1/records/{record_id}/items?cursor=%%%", token)
    assert (status, body["error"]) == (400, "invalid_request")


async def test_no_token_a_bad_token_and_a_client_token_are_refused(bridge):
    _, record_id, _, _ = await patient_with_app(bridge)
    status, body, headers = await call(bridge, "GET", f"/v1/records/{record_id}/items", None)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    status, body, _ = await call(bridge, "GET", f"/v1/records/{record_id}/items", "rba_not-a-token")
    assert (status, body["error"]) == (401, "invalid_token")
    provider = await bridge.client("Provider", scopes=("records.*.r", "connect"))
    client_token = await bridge.client_token(provider, ["connect"])
    status, body, _ = await call(bridge, "GET", f"/v1/records/{record_id}/items", client_token)
    assert (status, body["error"]) == (403, "forbidden")


@pytest.mark.parametrize(
    "blob",
    [{"content_type": "text/plain\r\nX: y", "data": ""}, {"content_type": "nonsense", "data": ""},
     {"content_type": "text/plain", "filename": "a\nb", "data": ""}],
    ids=["crlf-type", "not-a-type", "control-in-name"],
)
async def test_added_blobs_need_a_media_type_and_a_printable_name(bridge, blob):
    _, record_id, _, token = await patient_with_app(bridge, ("records.*.c",))
    status, body, _ = await call(bridge, "POST", f"/v1/records/{record_id}/items", token, json={"blobs": [blob]})
    assert (status, body["error"]) == (400, "invalid_request")
