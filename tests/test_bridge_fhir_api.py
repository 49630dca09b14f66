"""The FHIR R4 facade over HTTP (spec section 7): DocumentReference search and
read, Binary read, create, CapabilityStatement; every answer is checked with
the R4 models of ``fhir.resources``. Acceptance item 14: a search covers only
the record the token's grant covers; another record is 403."""

from __future__ import annotations

import base64
import hashlib
import io
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from fhir.resources.R4B.binary import Binary
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.documentreference import DocumentReference
from fhir.resources.R4B.operationoutcome import OperationOutcome

from records_bridge.types import Attachment
from records_bridge.web.refusals import Refusal
from tests.bridge_fixtures import Bridge, bridge_fixture  # noqa: F401 -- fixture
from tests.test_bridge_items_api import deliver_ccd, patient_with_app
from tests.test_bridge_items_cda import SAMPLE_CCD
from tests.test_records_store import PDF, delivery

from .storage_fixtures import store_fixture, store_url_fixture  # noqa: F401

READ = ("patient/DocumentReference.rs",)


async def fhir(bridge: Bridge, method: str, path: str, token: str | None, *, accept: str = "application/fhir+json",
               **kw: Any) -> tuple[int, Any, Any]:
    headers = {"Accept": accept, **({"Authorization": f"Bearer {token}"} if token else {})}
    async with aiohttp.ClientSession() as http, http.request(method, bridge.url(path), headers=headers, **kw) as r:
        body = await r.json(content_type=None) if "json" in r.content_type else await r.read()
        return r.status, body, r.headers


async def test_a_search_returns_the_granted_records_documents_as_a_valid_bundle(bridge):
    _, record_id, _, token = await patient_with_app(bridge, READ)
    await deliver_ccd(bridge, record_id)
    status, body, headers = await fhir(bridge, "GET", f"/fhir/r4/DocumentReference?patient={record_id}", token)
    assert status == 200 and headers["Content-Type"].startswith("application/fhir+json")
    bundle = Bundle.model_validate(body)
    assert bundle.type == "searchset" and bundle.total == 1
    (entry,) = body["entry"]
    ref = entry["resource"]
    DocumentReference.model_validate(ref)
    assert ref["subject"] == {"reference": f"Patient/{record_id}"}
    assert ref["type"]["coding"][0]["code"] == "34133-9"
    assert {"code": "inbox:unreviewed"}.items() <= ref["meta"]["tag"][0].items()
    attachment = ref["content"][0]["attachment"]
    assert attachment["hash"] == base64.b64encode(hashlib.sha1(SAMPLE_CCD).digest()).decode()
    assert attachment["size"] == len(SAMPLE_CCD) and attachment["contentType"] == "text/xml"
    status, raw, headers = await fhir(bridge, "GET", attachment["url"], token, accept="*/*")
    assert status == 200 and raw == SAMPLE_CCD and headers["X-Content-Type-Options"] == "nosniff"
    status, read, _ = await fhir(bridge, "GET", f"/fhir/r4/DocumentReference/{ref['id']}", token)
    assert status == 200 and read == ref


async def test_acceptance_14_another_record_is_forbidden_and_its_documents_unreachable(bridge):
    _, mine, _, token = await patient_with_app(bridge, READ)
    _, theirs = await bridge.person()
    await deliver_ccd(bridge, theirs)
    status, body, _ = await fhir(bridge, "GET", f"/fhir/r4/DocumentReference?patient={theirs}", token)
    assert status == 403
    assert OperationOutcome.model_validate(body).issue[0].code == "forbidden"
    assert bridge.ctx.refusals.counts[Refusal.FOREIGN_GRANT] == 1
    status, body, _ = await fhir(bridge, "GET", f"/fhir/r4/DocumentReference?patient={mine}", token)
    assert status == 200 and body["total"] == 0 and body.get("entry", []) == []
    ccd = (await bridge.ctx.records.items(theirs))[1].uid
    for path in (f"/fhir/r4/DocumentReference/{ccd}", f"/fhir/r4/Binary/{ccd}.content"):
        status, body, _ = await fhir(bridge, "GET", path, token)
        assert status == 404 and OperationOutcome.model_validate(body).issue[0].code == "not-found"


async def test_binary_as_fhir_json_when_asked(bridge):
    _, record_id, _, token = await patient_with_app(bridge, READ)
    await deliver_ccd(bridge, record_id)
    ccd = (await bridge.ctx.records.items(record_id))[1].uid
    status, body, _ = await fhir(bridge, "GET", f"/fhir/r4/Binary/{ccd}.content", token)
    assert status == 200
    binary = Binary.model_validate(body)
    assert binary.contentType == "text/xml" and base64.b64decode(body["data"]) == SAMPLE_CCD


@pytest.mark.parametrize(
    ("query", "expected"),
    [("", ["ccd", "pdf"]), ("&type=http://loinc.org|34133-9", ["ccd"]), ("&type=51899-3", ["pdf"]),
     ("&date=ge2026-12-03", ["pdf"]), ("&date=lt2026-12-03", ["ccd"])],
    ids=["all", "ccd-type", "generic-type", "date-ge", "date-lt"],
)
async def test_search_filters_by_type_and_date(bridge, query, expected):
    _, record_id, _, token = await patient_with_app(bridge, READ)
    await deliver_ccd(bridge, record_id)
    later = delivery(message_id="<pdf@a.test>", attachments=(Attachment("application/pdf", "lab.pdf", PDF),))
    later = type(later)(**{**{f: getattr(later, f) for f in later.__dataclass_fields__},
                           "received_at": later.received_at + timedelta(days=2)})
    await bridge.ctx.records.deliver(record_id, later)
    status, body, _ = await fhir(bridge, "GET", f"/fhir/r4/DocumentReference?patient={record_id}{query}", token)
    assert status == 200, body
    Bundle.model_validate(body)
    titles = [e["resource"]["content"][0]["attachment"]["contentType"] for e in body.get("entry", [])]
    assert titles == [{"ccd": "text/xml", "pdf": "application/pdf"}[k] for k in expected]


async def test_search_pages_follow_the_next_link(bridge):
    _, record_id, _, token = await patient_with_app(bridge, READ)
    for n in range(3):
        await bridge.ctx.records.deliver(
            record_id, delivery(message_id=f"<{n}@a.test>", attachments=(Attachment("application/pdf", f"{n}.pdf", PDF),)))
    url, seen = f"/fhir/r4/DocumentReference?patient={record_id}&_count=2", []
    while url:
        status, body, _ = await fhir(bridge, "GET", url.removeprefix(bridge.base_url), token)
        assert status == 200 and body["total"] == 3
        seen += [e["resource"]["id"] for e in body.get("entry", [])]
        url = next((link["url"] for link in body["link"] if link["relation"] == "next"), None)
    assert len(seen) == len(set(seen)) == 3


async def test_dismissed_documents_are_not_shown(bridge):
    _, record_id, _, token = await patient_with_app(bridge, READ)
    await deliver_ccd(bridge, record_id)
    from records_bridge.api.items import Items, Reconcile

    ccd = (await bridge.ctx.records.items(record_id))[1].uid
    await Items(bridge.ctx.store).reconcile(record_id, ccd, Reconcile.DISMISS)
    status, body, _ = await fhir(bridge, "GET", f"/fhir/r4/DocumentReference?patient={record_id}", token)
    assert body["total"] == 0
    status, body, _ = await fhir(bridge, "GET", f"/fhir/r4/DocumentReference/{ccd}", token)
    assert status == 404


def posted(data: bytes, content_type: str, record_id: int | None, title: str = "Home readings") -> dict[str, Any]:
    ref: dict[str, Any] = {
        "resourceType": "DocumentReference", "status": "current",
        "content": [{"attachment": {"contentType": content_type, "title": title,
                                    "data": base64.b64encode(data).decode()}}],
    }
    if record_id is not None:
        ref["subject"] = {"reference": f"Patient/{record_id}"}
    return ref


async def test_a_created_document_lands_in_the_inbox_typed_by_its_content(bridge):
    _, record_id, _client, token = await patient_with_app(bridge, (*READ, "patient/DocumentReference.c"))
    status, body, headers = await fhir(bridge, "POST", "/fhir/r4/DocumentReference", token,
                                       json=posted(SAMPLE_CCD, "application/cda+xml", None))
    assert status == 201, body
    DocumentReference.model_validate(body)
    assert headers["Location"].endswith(f"/fhir/r4/DocumentReference/{body['id']}")
    assert body["type"]["coding"][0]["code"] == "34133-9"
    assert body["meta"]["tag"][0]["code"] == "inbox:unreviewed"
    (item,) = await bridge.ctx.records.items(record_id)
    assert (item.type.value, item.source_kind.value, item.inbox_state.value) == ("ccd", "app", "unreviewed")


@pytest.mark.parametrize(
    ("scopes", "body_for", "status"),
    [
        (READ, lambda rid, other: posted(PDF, "application/pdf", rid), 403),
        (("patient/DocumentReference.c",), lambda rid, other: posted(PDF, "application/pdf", other), 403),
        (("patient/DocumentReference.c",), lambda rid, other: {"resourceType": "Patient"}, 400),
        (("patient/DocumentReference.c",), lambda rid, other: {**posted(PDF, "application/pdf", rid),
                                                               "content": [{"attachment": {"url": "http://x/y"}}]}, 400),
    ],
    ids=["no-create-scope", "another-record", "not-a-document-reference", "no-data"],
)
async def test_creates_refused(bridge, scopes, body_for, status):
    _, record_id, _, token = await patient_with_app(bridge, scopes)
    _, other = await bridge.person()
    got, body, _ = await fhir(bridge, "POST", "/fhir/r4/DocumentReference", token, json=body_for(record_id, other))
    assert got == status
    OperationOutcome.model_validate(body)
    assert await bridge.ctx.records.count_items(record_id) == await bridge.ctx.records.count_items(other) == 0


async def test_errors_are_operation_outcomes(bridge):
    _, record_id, _, token = await patient_with_app(bridge, ("records.message.r",))
    cases = [
        (None, f"/fhir/r4/DocumentReference?patient={record_id}", 401),
        (token, f"/fhir/r4/DocumentReference?patient={record_id}", 403),  # reads no documents
        (token, "/fhir/r4/DocumentReference", 400),  # no patient
    ]
    for given, path, expected in cases:
        status, body, headers = await fhir(bridge, "GET", path, given)
        assert status == expected, path
        OperationOutcome.model_validate(body)
        if expected == 401:
            assert headers["WWW-Authenticate"].startswith("Bearer")


async def test_the_capability_statement_needs_no_token(bridge):
    status, body, _ = await fhir(bridge, "GET", "/fhir/r4/metadata", None)
    assert status == 200
    cap = CapabilityStatement.model_validate(body)
    assert cap.fhirVersion == "4.0.1"
    assert body["rest"][0]["security"]["extension"][0]["extension"][0]["valueUri"] == bridge.url("/oauth/authorize")


async def test_a_body_over_the_request_limit_is_an_operation_outcome(bridge):
    from records_bridge.web.app import MAX_REQUEST_BYTES

    _, record_id, _, token = await patient_with_app(bridge, ("patient/DocumentReference.c",))
    status, body, _ = await fhir(bridge, "POST", "/fhir/r4/DocumentReference", token,
                                 data=io.BytesIO(b"{" + b" " * MAX_REQUEST_BYTES))
    assert status == 413 and OperationOutcome.model_validate(body).issue[0].code == "too-long"
    assert await bridge.ctx.records.count_items(record_id) == 0


async def test_the_granted_record_reads_as_the_patient_and_no_other(bridge):
    from fhir.resources.R4B.patient import Patient

    _, record_id, _, token = await patient_with_app(bridge, ("patient/Patient.r", *READ))
    _, theirs = await bridge.person()
    status, body, _ = await fhir(bridge, "GET", f"/fhir/r4/Patient/{record_id}", token)
    assert status == 200
    assert Patient.model_validate(body).name[0].text == "Pat Patient" and body["id"] == str(record_id)
    status, body, _ = await fhir(bridge, "GET", f"/fhir/r4/Patient/{theirs}", token)
    assert status == 404 and OperationOutcome.model_validate(body).issue[0].code == "not-found"
    _, _, _, documents_only = await patient_with_app(bridge, READ)
    status, body, _ = await fhir(bridge, "GET", f"/fhir/r4/Patient/{record_id}", documents_only)
    assert status == 403
