"""Items as FHIR R4 resources (spec section 7): pure functions to JSON-ready dicts.

Each document item (file, ccd, ccr, cda, discharge_summary) is one
DocumentReference: ``status`` current; ``type`` a LOINC code (CCD 34133-9,
discharge summary 18842-5, otherwise 51899-3 "Details Document", the generic
code HealthVault's FHIR library used); ``date`` when it entered the record;
``content[0].attachment`` its content blob (contentType, size, the base64
SHA-1 R4 defines for ``Attachment.hash``, title, and the Binary URL
``/fhir/r4/Binary/{item}.{blob}``); ``subject`` the record as a Patient;
``meta.tag`` says ``inbox:unreviewed`` while the patient has not reviewed it.

Errors are OperationOutcomes (R4 section 3.1.0.2 "RESTful API: errors").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ..api.items import Item
from ..types import InboxState, ItemType

FHIR_JSON = "application/fhir+json"
LOINC = "http://loinc.org"
INBOX_TAG_SYSTEM = "urn:directgw:records-bridge:inbox"
INBOX_UNREVIEWED = "inbox:unreviewed"

_TYPE_CODES: dict[ItemType, tuple[str, str]] = {
    ItemType.CCD: ("34133-9", "Summarization of episode note"),
    ItemType.DISCHARGE_SUMMARY: ("18842-5", "Discharge summary"),
}
GENERIC_TYPE = ("51899-3", "Details Document")

FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
"""The R4 ``id`` datatype (section 2.24.0.1)."""


def type_code(kind: ItemType) -> tuple[str, str]:
    return _TYPE_CODES.get(kind, GENERIC_TYPE)


def binary_id(item_uid: str, blob: str = "content") -> str:
    return f"{item_uid}.{blob}"


def instant(at: datetime) -> str:
    """An R4 ``instant``: seconds, with a zone."""
    return at.isoformat(timespec="seconds")


def document_reference(item: Item, sha1_b64: str | None) -> dict[str, Any]:
    """The DocumentReference for a document item (``api.items.DOCUMENT_TYPES``) with content."""
    code, display = type_code(item.type)
    content = item.content
    attachment: dict[str, Any] = {"title": item.title}
    if content is not None:
        attachment.update(contentType=content.content_type, size=content.size,
                          url=f"/fhir/r4/Binary/{binary_id(item.uid, content.name)}")
        if sha1_b64 is not None:
            attachment["hash"] = sha1_b64
    meta: dict[str, Any] = {"versionId": item.version, "lastUpdated": instant(item.created_at)}
    if item.inbox_state is InboxState.UNREVIEWED:
        meta["tag"] = [{"system": INBOX_TAG_SYSTEM, "code": INBOX_UNREVIEWED, "display": "Not yet reviewed by the patient"}]
    return {
        "resourceType": "DocumentReference",
        "id": item.uid,
        "meta": meta,
        "status": "current",
        "type": {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display},
        "subject": {"reference": f"Patient/{item.record_id}"},
        "date": instant(item.created_at),
        "description": item.title,
        "content": [{"attachment": attachment}],
    }


def searchset(entries: Sequence[dict[str, Any]], *, base_url: str, self_url: str, next_url: str | None,
              total: int | None) -> dict[str, Any]:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": [{"relation": "self", "url": self_url}] + ([{"relation": "next", "url": next_url}] if next_url else []),
        "entry": [
            {"fullUrl": f"{base_url}/fhir/r4/{r['resourceType']}/{r['id']}", "resource": r, "search": {"mode": "match"}}
            for r in entries
        ],
    }
    if total is not None:
        bundle["total"] = total
    return bundle


def operation_outcome(code: str, diagnostics: str, *, severity: str = "error") -> dict[str, Any]:
    """``code`` from the R4 IssueType value set: invalid, not-found, forbidden, login, not-supported, too-long..."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}],
    }


def patient(record_id: int, display_name: str) -> dict[str, Any]:
    """The record as the Patient of the SMART launch context: its id and the name it is shown by."""
    return {"resourceType": "Patient", "id": str(record_id), "active": True, "name": [{"text": display_name}]}


def binary(content_type: str, data_b64: str, item_uid: str, blob: str) -> dict[str, Any]:
    return {"resourceType": "Binary", "id": binary_id(item_uid, blob), "contentType": content_type, "data": data_b64}


def capability_statement(*, base_url: str, at: datetime, software_version: str) -> dict[str, Any]:
    """What this facade does: DocumentReference search/read/create, Binary read, under SMART (R4 section 8.3)."""
    smart = {
        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR"}],
        "text": "OAuth 2.0 with SMART App Launch scopes",
    }
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": instant(at),
        "kind": "instance",
        "software": {"name": "directgw records bridge", "version": software_version},
        "implementation": {"description": "Records bridge FHIR R4 facade", "url": f"{base_url}/fhir/r4"},
        "fhirVersion": "4.0.1",
        "format": [FHIR_JSON, "json"],
        "rest": [{
            "mode": "server",
            "security": {
                "service": [smart],
                "extension": [{
                    "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                    "extension": [
                        {"url": "authorize", "valueUri": f"{base_url}/oauth/authorize"},
                        {"url": "token", "valueUri": f"{base_url}/oauth/token"},
                        {"url": "revoke", "valueUri": f"{base_url}/oauth/revoke"},
                    ],
                }],
            },
            "resource": [
                {
                    "type": "DocumentReference",
                    "interaction": [{"code": "read"}, {"code": "search-type"}, {"code": "create"}],
                    "searchParam": [
                        {"name": "patient", "type": "reference"},
                        {"name": "type", "type": "token"},
                        {"name": "date", "type": "date"},
                    ],
                },
                {"type": "Binary", "interaction": [{"code": "read"}]},
                {"type": "Patient", "interaction": [{"code": "read"}]},
            ],
        }],
    }
