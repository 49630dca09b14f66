"""Items as FHIR R4 JSON (spec section 7), each resource checked against the R4
models of ``fhir.resources`` (its R4B package: DocumentReference, Bundle,
Binary, OperationOutcome and CapabilityStatement are the same in R4 and R4B),
and the search parameters the facade understands."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime

import pytest
from fhir.resources.R4B.binary import Binary
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.documentreference import DocumentReference
from fhir.resources.R4B.operationoutcome import OperationOutcome
from hypothesis import given, settings
from hypothesis import strategies as st

from records_bridge.api.items import BlobInfo, Item
from records_bridge.fhir import resources, search
from records_bridge.fhir.search import Search, SearchError
from records_bridge.types import InboxState, ItemType, SourceKind

AT = datetime(2026, 12, 1, 14, 30, tzinfo=UTC)
DATA = b"<ClinicalDocument/>"


def item(kind: ItemType, inbox: InboxState = InboxState.UNREVIEWED, data: dict | None = None) -> Item:
    return Item(
        row_id=1, uid="0b6c3f0e-6f7e-4b59-9f63-8f3c0a8e2d11", record_id=42, type=kind, version="v1",
        inbox_state=inbox, created_at=AT, created_by_person=None, created_by_client="app",
        source_kind=SourceKind.APP, source_ref="app", sender=None, message_id=None, data=data or {},
        blobs=(BlobInfo("content", "text/xml", "summary.xml", len(DATA), hashlib.sha256(DATA).hexdigest()),),
    )


SHA1 = base64.b64encode(hashlib.sha1(DATA).digest()).decode()


@pytest.mark.parametrize(
    ("kind", "code"),
    [(ItemType.CCD, "34133-9"), (ItemType.DISCHARGE_SUMMARY, "18842-5"), (ItemType.FILE, "51899-3"),
     (ItemType.CDA, "51899-3"), (ItemType.CCR, "51899-3")],
    ids=lambda v: getattr(v, "value", v),
)
def test_a_document_item_is_a_valid_document_reference(kind, code):
    ref = resources.document_reference(item(kind), SHA1)
    DocumentReference.model_validate(ref)
    assert ref["status"] == "current" and ref["id"] == "0b6c3f0e-6f7e-4b59-9f63-8f3c0a8e2d11"
    assert ref["type"]["coding"][0] == {"system": "http://loinc.org", "code": code, "display": resources.type_code(kind)[1]}
    assert ref["subject"] == {"reference": "Patient/42"}
    assert ref["date"] == "2026-12-01T14:30:00+00:00"
    assert ref["content"][0]["attachment"] == {
        "contentType": "text/xml", "size": len(DATA), "hash": SHA1, "title": "summary.xml",
        "url": "/fhir/r4/Binary/0b6c3f0e-6f7e-4b59-9f63-8f3c0a8e2d11.content",
    }


@pytest.mark.parametrize(
    ("inbox", "tagged"),
    [(InboxState.UNREVIEWED, True), (InboxState.ACCEPTED, False), (InboxState.NONE, False)],
    ids=lambda v: getattr(v, "value", v),
)
def test_the_inbox_tag_is_there_only_while_unreviewed(inbox, tagged):
    ref = resources.document_reference(item(ItemType.CCD, inbox), SHA1)
    codes = [t["code"] for t in ref["meta"].get("tag", [])]
    assert (resources.INBOX_UNREVIEWED in codes) is tagged


def test_the_title_is_the_items_own_before_the_file_name():
    ref = resources.document_reference(item(ItemType.FILE, data={"title": "Lab results"}), None)
    assert ref["description"] == ref["content"][0]["attachment"]["title"] == "Lab results"
    assert "hash" not in ref["content"][0]["attachment"]
    DocumentReference.model_validate(ref)


def test_a_searchset_bundle_validates_with_links_and_total():
    refs = [resources.document_reference(item(ItemType.CCD), SHA1)]
    bundle = resources.searchset(refs, base_url="https://records.test", self_url="https://records.test/fhir/r4/DocumentReference?patient=42",
                                 next_url="https://records.test/fhir/r4/DocumentReference?patient=42&_cursor=1", total=3)
    parsed = Bundle.model_validate(bundle)
    assert parsed.type == "searchset" and parsed.total == 3
    assert bundle["entry"][0]["fullUrl"] == "https://records.test/fhir/r4/DocumentReference/0b6c3f0e-6f7e-4b59-9f63-8f3c0a8e2d11"
    assert [link["relation"] for link in bundle["link"]] == ["self", "next"]


def test_errors_binary_and_capability_statement_validate():
    OperationOutcome.model_validate(resources.operation_outcome("forbidden", "not your record"))
    Binary.model_validate(resources.binary("text/xml", base64.b64encode(DATA).decode(), "abc", "content"))
    cap = resources.capability_statement(base_url="https://records.test", at=AT, software_version="0.1.0")
    CapabilityStatement.model_validate(cap)
    (rest,) = cap["rest"]
    assert {r["type"] for r in rest["resource"]} == {"DocumentReference", "Binary", "Patient"}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ([("patient", "42")], {"patient": "42", "types": None, "since": None, "before": None, "count": 50}),
        ([("patient", "Patient/42"), ("_count", "500")], {"patient": "42", "count": 200}),
        ([("patient", "42"), ("type", "http://loinc.org|34133-9")], {"types": frozenset({ItemType.CCD})}),
        ([("patient", "42"), ("type", "51899-3")],
         {"types": frozenset({ItemType.FILE, ItemType.CDA, ItemType.CCR})}),
        ([("patient", "42"), ("type", "http://snomed.info/sct|34133-9")], {"types": frozenset()}),
        ([("patient", "42"), ("type", "34133-9,18842-5")],
         {"types": frozenset({ItemType.CCD, ItemType.DISCHARGE_SUMMARY})}),
        ([("patient", "42"), ("date", "ge2026-12-01")], {"since": datetime(2026, 12, 1, tzinfo=UTC), "before": None}),
        ([("patient", "42"), ("date", "gt2026-12")], {"since": datetime(2027, 1, 1, tzinfo=UTC)}),
        ([("patient", "42"), ("date", "lt2026")], {"before": datetime(2026, 1, 1, tzinfo=UTC)}),
        ([("patient", "42"), ("date", "le2026-12-01")], {"before": datetime(2026, 12, 2, tzinfo=UTC)}),
        ([("patient", "42"), ("date", "2026-12-01")],
         {"since": datetime(2026, 12, 1, tzinfo=UTC), "before": datetime(2026, 12, 2, tzinfo=UTC)}),
        ([("patient", "42"), ("date", "ge2026-12-01T10:00:00+02:00"), ("date", "lt2026-12-03")],
         {"since": datetime(2026, 12, 1, 8, tzinfo=UTC), "before": datetime(2026, 12, 3, tzinfo=UTC)}),
        ([("patient", "42"), ("_cursor", "17"), ("unknown", "x")], {"cursor": 17}),
    ],
    ids=["patient", "patient-ref-count-capped", "type-system-code", "type-generic", "type-foreign-system",
         "type-or", "date-ge", "date-gt-month", "date-lt-year", "date-le-day", "date-eq", "date-range", "cursor"],
)
def test_search_parameters(query, expected):
    parsed = search.parse(query)
    assert isinstance(parsed, Search)
    for name, value in expected.items():
        assert getattr(parsed, name) == value, name


@pytest.mark.parametrize(
    "query",
    [[], [("type", "34133-9")], [("patient", "42"), ("patient", "43")], [("patient", "42"), ("date", "ge2026-13-01")],
     [("patient", "42"), ("date", "yesterday")], [("patient", "42"), ("_count", "-1")],
     [("patient", "42"), ("_cursor", "abc")]],
    ids=["nothing", "no-patient", "two-patients", "bad-month", "not-a-date", "negative-count", "bad-cursor"],
)
def test_search_errors(query):
    assert isinstance(search.parse(query), SearchError)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["patient", "subject", "type", "date", "_count", "_cursor", "x"]),
                          st.text(max_size=40)), max_size=6))
def test_any_parameters_give_a_search_or_a_reason(query):
    parsed = search.parse(query)
    assert isinstance(parsed, Search | SearchError)
    if isinstance(parsed, Search):
        assert 0 <= parsed.count <= search.MAX_COUNT
        assert parsed.since is None or parsed.since.tzinfo is not None
