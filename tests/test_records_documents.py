"""Typing delivered documents and reading XDM packages: pure functions over
hostile bytes, bounded however the zip lies about itself."""

from __future__ import annotations

import io
import zipfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from records_bridge import documents
from records_bridge.documents import XdmError, classify, root_element, unpack_xdm
from records_bridge.types import ItemType
from tests.test_records_store import CCD, CCR, DISCHARGE, PDF, xdm_zip

CDA = CCD.replace(b'<templateId root="2.16.840.1.113883.10.20.22.1.2" extension="2015-08-01"/>', b"")


@pytest.mark.parametrize(
    ("content_type", "filename", "data", "expected"),
    [
        ("text/xml", "a.xml", CCD, ItemType.CCD),
        ("application/xml", None, CDA, ItemType.CDA),
        ("application/hl7-v3+xml", None, DISCHARGE, ItemType.DISCHARGE_SUMMARY),
        ("application/cda+xml", None, CCD, ItemType.CCD),
        ("application/ccr+xml", None, b"<x/>", ItemType.CCR),
        ("text/xml", None, CCR, ItemType.CCR),
        ("application/octet-stream", "summary.xml", CCD, ItemType.CCD),
        ("application/pdf", "a.pdf", PDF, ItemType.FILE),
        ("text/xml", None, b"<ClinicalDocument/>", ItemType.FILE),  # no HL7 v3 namespace
        ("text/xml", None, b"<!-- ClinicalDocument --><note/>", ItemType.FILE),
        ("text/plain", "notes.txt", CCD, ItemType.FILE),  # a text part is not sniffed as XML
    ],
    ids=["ccd", "cda", "discharge", "cda-type-ccd", "ccr-type", "ccr-sniffed", "xml-by-name", "pdf",
         "no-namespace", "comment-only", "plain-text"],
)
def test_documents_are_typed_by_content_type_or_root_element(content_type, filename, data, expected):
    assert classify(content_type, filename, data) is expected


@pytest.mark.parametrize(
    ("head", "root"),
    [
        (b"\xef\xbb\xbf<?xml version='1.0'?><!DOCTYPE x><!-- c --><v3:ClinicalDocument xmlns:v3='x'>", "ClinicalDocument"),
        (b"<a>", "a"),
        (b"<!-- never closed", None),
        (b"", None),
    ],
)
def test_root_element(head, root):
    assert root_element(head) == root


def test_root_element_is_linear_on_hostile_prefixes():
    # Many unclosed constructs: each is skipped with one find, never rescanned.
    head = b"<?" * 50_000
    assert root_element(head) is None


def test_a_zip_bomb_stops_at_the_package_limit(monkeypatch):
    monkeypatch.setattr(documents, "XDM_MAX_TOTAL_BYTES", 1 << 20)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("IHE_XDM/SUBSET01/DOC0001.XML", b"\0" * (8 << 20))  # 8 MiB of zeros, ~8 KB zipped
    with pytest.raises(XdmError, match="inflates beyond"):
        unpack_xdm(out.getvalue())


def test_paths_in_the_zip_are_names_not_places():
    package = xdm_zip({"IHE_XDM/../../etc/passwd": b"x", "IHE_XDM/SUBSET01/../../evil": b"y"})
    names = [d.name for d in unpack_xdm(package).documents]
    assert names == ["DOC0001.XML"]


def test_metadata_with_a_dtd_describes_nothing_and_expands_nothing():
    bomb = b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><l>&b;</l>'
    package = xdm_zip()
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(package)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = bomb if info.filename.endswith("METADATA.XML") else src.read(info)
            dst.writestr(info.filename, data)
    (doc,) = unpack_xdm(out.getvalue()).documents
    assert doc.metadata == {} and doc.hash_matches is None and doc.content_type == "text/xml"


def test_a_document_whose_hash_differs_from_its_metadata_is_flagged():
    package = xdm_zip()
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(package)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info.filename, data + b" " if info.filename.endswith("DOC0001.XML") else data)
    (doc,) = unpack_xdm(out.getvalue()).documents
    assert doc.hash_matches is False


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=4096), st.integers(min_value=0, max_value=4096))
def test_damaged_zips_give_a_package_or_a_typed_error(noise, at):
    package = bytearray(xdm_zip())
    at = at % len(package)
    package[at : at + len(noise)] = noise
    try:
        package_read = unpack_xdm(bytes(package))
    except XdmError as exc:
        assert str(exc)  # a typed error that says what is wrong
    else:
        assert all(isinstance(d.data, bytes) for d in package_read.documents)
