"""What a delivered attachment is, and what an IHE XDM package holds.

Pure functions over bytes (no I/O): the delivery code asks ``classify`` for
an item type, and ``unpack_xdm`` for the documents of a zip package.

Typing (shared/specs/records-bridge.md section 6): a content type names
some documents outright (``application/cda+xml``, ``application/ccr+xml``);
generic XML is typed by its root element, read from the start of the bytes
without an XML parser (a C-CDA's root is ``ClinicalDocument`` in the
``urn:hl7-org:v3`` namespace; its templateIds say CCD or discharge summary;
a CCR's root is ``ContinuityOfCareRecord``).

XDM (IHE ITI TF-1 section 16, TF-3 section 4.2.2.3 on metadata): a zip with
``IHE_XDM/<SUBSET>/METADATA.XML`` (an ebRIM SubmitObjectsRequest) beside the
documents it describes. The zip is hostile input: entry count, each entry's
size and the total are bounded while reading (the sizes the zip declares
are not trusted: a zip bomb declares small ones), names are never used as
paths, and the metadata is parsed only when it has no DTD (no entity
expansion of any kind).
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import zipfile
import zlib
from dataclasses import dataclass, field
from xml.etree import ElementTree

from .types import ItemType

SNIFF_BYTES = 64 * 1024
"""A CDA's root element and its templateIds sit in the first few KB; 64 KiB
leaves room for long comments or stylesheet instructions before them."""

XDM_MAX_ENTRIES = 1000
"""Far more documents than any clinical package carries (one subset holds a handful)."""

XDM_MAX_TOTAL_BYTES = 256 * 1024 * 1024
"""Uncompressed size of a whole package: 4x the largest message we accept
(64 MiB, gateway/core/limits.py), so honest compression fits and a bomb does not."""

XDM_MAX_METADATA_BYTES = 4 * 1024 * 1024
"""METADATA.XML describes documents, it does not hold them."""

_CONTENT_TYPES: dict[str, ItemType] = {
    "application/cda+xml": ItemType.CDA,
    "application/ccd-xml": ItemType.CCD,
    "application/ccd+xml": ItemType.CCD,
    "application/ccr+xml": ItemType.CCR,
    "application/x-ccr+xml": ItemType.CCR,
}
_XML_TYPES = ("text/xml", "application/xml", "application/hl7-v3+xml", "application/octet-stream")

# C-CDA R2.1 document templates (HL7 C-CDA IG, Volume 2) and the HITSP C32 CCD.
_CCD_TEMPLATES = ("2.16.840.1.113883.10.20.22.1.2", "2.16.840.1.113883.10.20.1")
_DISCHARGE_TEMPLATES = ("2.16.840.1.113883.10.20.22.1.8",)


def classify(content_type: str, filename: str | None, data: bytes) -> ItemType:
    ctype = content_type.lower()
    named = _CONTENT_TYPES.get(ctype)
    if named is ItemType.CDA:
        return _cda_type(data[:SNIFF_BYTES])
    if named is not None:
        return named
    name = (filename or "").lower()
    if ctype in _XML_TYPES or ctype.endswith("+xml") or name.endswith(".xml"):
        head = data[:SNIFF_BYTES]
        root = root_element(head)
        if root == "ClinicalDocument" and b"urn:hl7-org:v3" in head:
            return _cda_type(head)
        if root == "ContinuityOfCareRecord":
            return ItemType.CCR
    return ItemType.FILE


def _cda_type(head: bytes) -> ItemType:
    if _has_template(head, _DISCHARGE_TEMPLATES):
        return ItemType.DISCHARGE_SUMMARY
    if _has_template(head, _CCD_TEMPLATES):
        return ItemType.CCD
    return ItemType.CDA


def _has_template(head: bytes, oids: tuple[str, ...]) -> bool:
    for oid in oids:
        for quote in (b'"', b"'"):
            if b"root=" + quote + oid.encode() + quote in head:
                return True
    return False


def root_element(head: bytes) -> str | None:
    """The local name of the first element, skipping the XML declaration,
    processing instructions, comments, a DOCTYPE and a byte-order mark. Linear:
    each construct is skipped with one ``find``."""
    pos = 3 if head.startswith(b"\xef\xbb\xbf") else 0
    n = len(head)
    while pos < n:
        lt = head.find(b"<", pos)
        if lt < 0:
            return None
        if head.startswith(b"<?", lt):
            end = head.find(b"?>", lt + 2)
            pos = end + 2 if end >= 0 else n
        elif head.startswith(b"<!--", lt):
            end = head.find(b"-->", lt + 4)
            pos = end + 3 if end >= 0 else n
        elif head.startswith(b"<!", lt):
            end = head.find(b">", lt + 2)
            pos = end + 1 if end >= 0 else n
        else:
            stop = lt + 1
            while stop < n and head[stop] not in b" \t\r\n/>":
                stop += 1
            qname = head[lt + 1 : stop].decode("utf-8", "replace")
            return qname.rpartition(":")[2] or None
    return None


def is_pdf(content_type: str, data: bytes) -> bool:
    return content_type.lower() == "application/pdf" or data[:5] == b"%PDF-"


# --------------------------------------------------------------------------- planning


@dataclass(frozen=True, slots=True)
class PlannedBlob:
    name: str
    content_type: str
    filename: str | None
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class PlannedItem:
    """One item an attachment becomes: its type, its data, its blobs."""

    kind: ItemType
    data: dict[str, object]
    blobs: tuple[PlannedBlob, ...]


def plan_attachment(content_type: str, filename: str | None, data: bytes) -> tuple[PlannedItem, ...]:
    """The items one attachment becomes: a typed item; or, for an XDM package, the
    package itself (with each subset's METADATA.XML) and one typed item per
    document; or, for a package that cannot be read, the file with the reason
    (never dropped). Pure and CPU-bound (inflating a package): callers compute it
    once per message, outside any database transaction."""
    if not looks_like_xdm(content_type, filename, data):
        return (PlannedItem(classify(content_type, filename, data), {}, (PlannedBlob("content", content_type, filename, data),)),)
    try:
        package = unpack_xdm(data)
    except XdmError as exc:
        return (PlannedItem(ItemType.FILE, {"xdm_error": str(exc)}, (PlannedBlob("content", content_type, filename, data),)),)
    summary: dict[str, object] = {"xdm": {"subsets": sorted(package.metadata_xml), "documents": len(package.documents)}}
    blobs = [PlannedBlob("content", content_type, filename, data)] + [
        PlannedBlob(_metadata_blob_name(subset), "text/xml", "METADATA.XML", xml)
        for subset, xml in sorted(package.metadata_xml.items())
    ]
    items = [PlannedItem(ItemType.FILE, summary, tuple(blobs))]
    for doc in package.documents:
        meta: dict[str, object] = {
            "xdm": {"subset": doc.subset, "name": doc.name, **doc.metadata, "hash_matches": doc.hash_matches}
        }
        items.append(PlannedItem(classify(doc.content_type, doc.name, doc.data), meta,
                                 (PlannedBlob("content", doc.content_type, doc.name, doc.data),)))
    return tuple(items)


BLOB_NAME_MAX = 64
"""``blobs.name`` holds this many characters."""


def _metadata_blob_name(subset: str) -> str:
    """``metadata:<subset>``; a subset name too long for that keeps its head and a digest of the
    whole, so two long names that share their first characters stay two blobs."""
    name = f"metadata:{subset}"
    if len(name) <= BLOB_NAME_MAX:
        return name
    digest = hashlib.sha256(subset.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{name[:BLOB_NAME_MAX - len(digest) - 1]}~{digest}"


# --------------------------------------------------------------------------- XDM


class XdmError(ValueError):
    """A zip that says it is an XDM package but cannot be read within bounds."""


@dataclass(frozen=True, slots=True)
class XdmDocument:
    subset: str
    name: str
    """The file name inside the subset (never used as a path)."""
    content_type: str
    data: bytes = field(repr=False)
    metadata: dict[str, str] = field(default_factory=dict)
    """What METADATA.XML says of this document: title, mimeType, hash, size,
    creationTime, typeCode, classCode, formatCode, uniqueId, patientId."""
    hash_matches: bool | None = None
    """The document's SHA-1 against the metadata's ``hash`` slot (XDS uses SHA-1); None when absent."""


@dataclass(frozen=True, slots=True)
class XdmPackage:
    documents: tuple[XdmDocument, ...]
    metadata_xml: dict[str, bytes] = field(repr=False)
    """Each subset's METADATA.XML, kept as it came."""


def looks_like_xdm(content_type: str, filename: str | None, data: bytes) -> bool:
    """A zip whose central directory names an IHE_XDM/ folder."""
    ctype = content_type.lower()
    zipped = ctype in ("application/zip", "application/x-zip-compressed") or (filename or "").lower().endswith(".zip")
    return (zipped or data[:4] == b"PK\x03\x04") and b"IHE_XDM/" in data[-min(len(data), 1 << 22) :]


def unpack_xdm(data: bytes) -> XdmPackage:
    """The documents of every subset, with their metadata. Raises ``XdmError``."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return _unpack(archive)
    except XdmError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, ValueError,
            NotImplementedError, RuntimeError, KeyError, UnicodeDecodeError) as exc:
        raise XdmError(f"the zip cannot be read: {type(exc).__name__}: {exc}") from exc


def _unpack(archive: zipfile.ZipFile) -> XdmPackage:
    infos = archive.infolist()
    if len(infos) > XDM_MAX_ENTRIES:
        raise XdmError(f"{len(infos)} entries, over the limit of {XDM_MAX_ENTRIES}")
    budget = [XDM_MAX_TOTAL_BYTES]
    subsets: dict[str, dict[str, zipfile.ZipInfo]] = {}
    for info in infos:
        if info.is_dir():
            continue
        parts = posixpath.normpath(info.filename.replace("\\", "/")).split("/")
        if len(parts) != 3 or parts[0].upper() != "IHE_XDM" or ".." in parts:
            continue  # INDEX.HTM, README.TXT, stylesheets: not documents
        subsets.setdefault(parts[1], {})[parts[2]] = info
    if not subsets:
        raise XdmError("no IHE_XDM/<subset>/ folder in the zip")
    documents: list[XdmDocument] = []
    metadata_xml: dict[str, bytes] = {}
    for subset, files in sorted(subsets.items()):
        meta_info = next((i for n, i in files.items() if n.upper() == "METADATA.XML"), None)
        described: dict[str, dict[str, str]] = {}
        if meta_info is not None:
            raw = _read(archive, meta_info, min(XDM_MAX_METADATA_BYTES, budget[0]), budget)
            metadata_xml[subset] = raw
            described = _describe(raw)
        for name, info in sorted(files.items()):
            if info is meta_info:
                continue
            content = _read(archive, info, budget[0], budget)
            meta = described.get(name.upper(), {})
            expected = meta.get("hash", "").lower()
            documents.append(
                XdmDocument(
                    subset=subset,
                    name=name,
                    content_type=meta.get("mimeType") or _guess_type(name),
                    data=content,
                    metadata=meta,
                    hash_matches=(hashlib.sha1(content).hexdigest() == expected) if expected else None,
                )
            )
    return XdmPackage(tuple(documents), metadata_xml)


def _read(archive: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int, budget: list[int]) -> bytes:
    """At most ``cap`` bytes of an entry, counting what is actually inflated, not what it declares."""
    out = bytearray()
    with archive.open(info) as stream:
        while True:
            chunk = stream.read(min(1 << 20, cap - len(out) + 1))
            if not chunk:
                break
            out += chunk
            if len(out) > cap:
                raise XdmError(f"{info.filename} inflates beyond the package limit of {XDM_MAX_TOTAL_BYTES} bytes")
    budget[0] -= len(out)
    return bytes(out)


def _guess_type(name: str) -> str:
    lower = name.lower()
    if lower.endswith(".xml"):
        return "text/xml"
    if lower.endswith(".pdf"):
        return "application/pdf"
    if lower.endswith(".txt"):
        return "text/plain"
    return "application/octet-stream"


# ebRIM classification schemes of XDSDocumentEntry (IHE ITI TF-3 table 4.2.5-1)
_SCHEMES = {
    "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983": "typeCode",
    "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a": "classCode",
    "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d": "formatCode",
}
_IDENTIFIERS = {
    "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab": "uniqueId",
    "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427": "patientId",
}
_SLOTS = ("URI", "hash", "size", "creationTime", "languageCode", "serviceStartTime")


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _describe(raw: bytes) -> dict[str, dict[str, str]]:
    """Per document URI (upper-cased), what the SubmitObjectsRequest says of it.
    Metadata with a DTD, or that does not parse, describes nothing: the
    documents are still delivered."""
    if b"<!DOCTYPE" in raw or b"<!ENTITY" in raw:
        return {}
    try:
        root = ElementTree.fromstring(raw)
    except (ElementTree.ParseError, ValueError):
        return {}
    out: dict[str, dict[str, str]] = {}
    for element in root.iter():
        if _local(element.tag) != "ExtrinsicObject":
            continue
        meta: dict[str, str] = {}
        mime = element.get("mimeType")
        if mime:
            meta["mimeType"] = mime
        for child in element:
            kind = _local(child.tag)
            if kind == "Slot" and child.get("name") in _SLOTS:
                values = [v.text or "" for v in child.iter() if _local(v.tag) == "Value"]
                meta[child.get("name", "")] = "".join(values).strip()
            elif kind == "Name":
                title = next((s.get("value") for s in child.iter() if _local(s.tag) == "LocalizedString"), None)
                if title:
                    meta["title"] = title
            elif kind == "Classification" and child.get("classificationScheme") in _SCHEMES:
                label = _SCHEMES[child.get("classificationScheme", "")]
                display = next((s.get("value") for s in child.iter() if _local(s.tag) == "LocalizedString"), None)
                meta[label] = display or child.get("nodeRepresentation") or ""
            elif kind == "ExternalIdentifier" and child.get("identificationScheme") in _IDENTIFIERS:
                meta[_IDENTIFIERS[child.get("identificationScheme", "")]] = child.get("value", "")
        uri = meta.pop("URI", "")
        if uri:
            out[posixpath.basename(uri).upper()] = meta
    return out
