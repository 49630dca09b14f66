"""A C-CDA document as a person reads it: title, patient, author, date, and
each section's title and narrative text (HL7 CDA R2, C-CDA R2.1).

The document is hostile input (it came over Direct from anyone a trust
anchor vouches for, or from an app), so it is parsed with expat directly,
the way defusedxml does it, without adding a dependency for it:
a DOCTYPE is refused outright (so no entity can be declared: no billion
laughs, no external entity, no network, no file read), parameter entities are
never parsed, and size, element count and depth are bounded before anything
is built. The result is a small view model of plain strings; the page that
shows it escapes every one of them, and never shows the XML itself.

The narrative block of a section (CDA R2 section 4.3.5) is kept as what a
reader needs: paragraphs, lists and tables, with inline markup (content,
emphasis, links, sub/sup) flattened to its text and ``br`` to a line break.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import ClassVar, NoReturn
from xml.parsers import expat

HL7 = "urn:hl7-org:v3"

MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
"""A C-CDA with years of history is a few MB; 16 MiB is well above what EHRs
send as one document and bounds the parse to well under a second."""

MAX_ELEMENTS = 400_000
"""Elements built into the tree: a 16 MiB document of the smallest real
entries holds about this many; a document of millions of empty tags is refused."""

MAX_DEPTH = 128
"""CDA's deepest honest nesting (section in section, entries with
entryRelationships, narrative tables) stays under 40 levels."""

MAX_SECTIONS = 500
"""Sections shown (nested ones included); a C-CDA has a few dozen."""


class Unreadable(enum.Enum):
    """Why a document cannot be shown as a readable C-CDA."""

    TOO_LARGE = "too-large"
    DTD_REFUSED = "dtd-refused"
    """A DOCTYPE, entity declaration or external reference: never processed."""
    MALFORMED = "malformed"
    TOO_COMPLEX = "too-complex"
    """Over the element, depth or section bounds."""
    NOT_CDA = "not-cda"
    """Well-formed XML whose root is not an HL7 v3 ClinicalDocument."""


@dataclass(frozen=True, slots=True)
class NotReadable:
    reason: Unreadable


@dataclass(frozen=True, slots=True)
class Paragraph:
    lines: tuple[str, ...]
    kind: ClassVar[str] = "paragraph"
    """What a template switches on (it has no isinstance)."""


@dataclass(frozen=True, slots=True)
class ListBlock:
    ordered: bool
    items: tuple[str, ...]
    kind: ClassVar[str] = "list"


@dataclass(frozen=True, slots=True)
class Table:
    caption: str | None
    head: tuple[tuple[str, ...], ...]
    body: tuple[tuple[str, ...], ...]
    kind: ClassVar[str] = "table"


Block = Paragraph | ListBlock | Table


@dataclass(frozen=True, slots=True)
class Section:
    title: str
    code: str | None
    """The LOINC section code (e.g. 10160-0 medications), when given."""
    blocks: tuple[Block, ...]
    sections: tuple[Section, ...] = ()


@dataclass(frozen=True, slots=True)
class CdaView:
    title: str
    patient: str | None
    birth_date: str | None
    author: str | None
    date: str | None
    """The document's effectiveTime, as a reader writes it (2026-12-01 14:30 +0100)."""
    sections: tuple[Section, ...]
    unstructured: str | None = None
    """For a nonXMLBody document, its media type (the content is offered as a download)."""
    notes: tuple[str, ...] = field(default=())


# --------------------------------------------------------------------------- parsing


@dataclass(slots=True)
class _Node:
    tag: str
    """``namespace-uri localname`` (expat's namespace mode), or the bare name without one."""
    attrs: dict[str, str]
    children: list[_Node | str]


class _Refused(Exception):
    def __init__(self, reason: Unreadable) -> None:
        self.reason = reason


def _parse(data: bytes) -> _Node:
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    stack: list[_Node] = []
    root: list[_Node] = []
    count = [0]

    def refuse_dtd(*_: object) -> NoReturn:
        raise _Refused(Unreadable.DTD_REFUSED)

    def start(tag: str, attrs: dict[str, str]) -> None:
        count[0] += 1
        if count[0] > MAX_ELEMENTS or len(stack) >= MAX_DEPTH:
            raise _Refused(Unreadable.TOO_COMPLEX)
        node = _Node(tag, attrs, [])
        if stack:
            stack[-1].children.append(node)
        else:
            root.append(node)
        stack.append(node)

    def end(_tag: str) -> None:
        stack.pop()

    def text(chars: str) -> None:
        if stack:
            stack[-1].children.append(chars)

    parser.StartDoctypeDeclHandler = refuse_dtd
    parser.EntityDeclHandler = refuse_dtd
    parser.UnparsedEntityDeclHandler = refuse_dtd
    parser.ExternalEntityRefHandler = refuse_dtd
    parser.NotationDeclHandler = refuse_dtd
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise _Refused(Unreadable.MALFORMED) from exc
    if not root:
        raise _Refused(Unreadable.MALFORMED)
    return root[0]


def read_cda(data: bytes) -> CdaView | NotReadable:
    """The readable view of a C-CDA document, or why there is none. Pure and
    CPU-bound: callers on an event loop run it in a thread."""
    if len(data) > MAX_DOCUMENT_BYTES:
        return NotReadable(Unreadable.TOO_LARGE)
    try:
        root = _parse(data)
        if root.tag != f"{HL7} ClinicalDocument":
            return NotReadable(Unreadable.NOT_CDA)
        return _view(root)
    except _Refused as refused:
        return NotReadable(refused.reason)


# --------------------------------------------------------------------------- the view


def _h(name: str) -> str:
    return f"{HL7} {name}"


def _child(node: _Node | None, *path: str) -> _Node | None:
    for name in path:
        if node is None:
            return None
        node = next((c for c in node.children if isinstance(c, _Node) and c.tag == _h(name)), None)
    return node


def _children(node: _Node | None, name: str) -> list[_Node]:
    if node is None:
        return []
    return [c for c in node.children if isinstance(c, _Node) and c.tag == _h(name)]


_SPACE = re.compile(r"\s+")


def _squash(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def _text(node: _Node | None) -> str:
    """All the text under ``node``, whitespace collapsed. Character data is joined
    as it came (expat splits it at entity references)."""
    if node is None:
        return ""
    out: list[str] = []
    pending: list[_Node | str] = [node]
    while pending:
        current = pending.pop()
        if isinstance(current, str):
            out.append(current)
        else:
            pending.extend(reversed(current.children))
    return _squash("".join(out))


def _name(node: _Node | None) -> str | None:
    """A person's name (HL7 PN): prefix, given names, family, suffix; or its plain text."""
    if node is None:
        return None
    parts = [_text(c) for kind in ("prefix", "given", "family", "suffix") for c in _children(node, kind)]
    joined = " ".join(p for p in parts if p)
    return joined or _text(node) or None


_TS = re.compile(r"(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.\d+)?([+-]\d{4})?")


def _timestamp(value: str | None) -> str | None:
    """An HL7 TS (YYYYMMDDHHMMSS.UUUU+ZZZZ, any precision) as a reader writes it."""
    if not value:
        return None
    m = _TS.fullmatch(value.strip())
    if m is None:
        return value.strip()[:64] or None
    year, month, day, hour, minute, _second, zone = m.groups()
    out = year + (f"-{month}" if month else "") + (f"-{day}" if day else "")
    if hour:
        out += f" {hour}:{minute or '00'}"
        if zone:
            out += f" {zone}"
    return out


def _view(root: _Node) -> CdaView:
    title = _text(_child(root, "title")) or _text(_child(root, "code")) or "Clinical document"
    code = _child(root, "code")
    if title == "Clinical document" and code is not None and code.attrs.get("displayName"):
        title = code.attrs["displayName"]
    patient = _child(root, "recordTarget", "patientRole", "patient")
    birth = _child(patient, "birthTime")
    sections: list[Section] = []
    budget = [MAX_SECTIONS]
    body = _child(root, "component", "structuredBody")
    for component in _children(body, "component"):
        section = _child(component, "section")
        if section is not None:
            sections.append(_section(section, budget))
    unstructured = None
    non_xml = _child(root, "component", "nonXMLBody", "text")
    if non_xml is not None:
        unstructured = non_xml.attrs.get("mediaType") or "application/octet-stream"
    return CdaView(
        title=title,
        patient=_name(_child(patient, "name")),
        birth_date=_timestamp(birth.attrs.get("value")) if birth is not None else None,
        author=_author(root),
        date=_timestamp((_child(root, "effectiveTime") or _Node("", {}, [])).attrs.get("value")),
        sections=tuple(sections),
        unstructured=unstructured,
    )


def _author(root: _Node) -> str | None:
    """The first author: a person (or device) and the organization it acted for."""
    assigned = _child(root, "author", "assignedAuthor")
    if assigned is None:
        return None
    who = _name(_child(assigned, "assignedPerson", "name"))
    if who is None:
        device = _child(assigned, "assignedAuthoringDevice")
        who = _text(_child(device, "softwareName")) or _text(_child(device, "manufacturerModelName")) or None
    org = _text(_child(assigned, "representedOrganization", "name")) or None
    if who and org:
        return f"{who}, {org}"
    return who or org


def _section(node: _Node, budget: list[int]) -> Section:
    budget[0] -= 1
    if budget[0] < 0:
        raise _Refused(Unreadable.TOO_COMPLEX)
    code = _child(node, "code")
    title = _text(_child(node, "title")) or (code.attrs.get("displayName", "") if code is not None else "") or "Section"
    nested = [
        _section(inner, budget)
        for component in _children(node, "component")
        if (inner := _child(component, "section")) is not None
    ]
    return Section(
        title=title,
        code=code.attrs.get("code") if code is not None else None,
        blocks=_narrative(_child(node, "text")),
        sections=tuple(nested),
    )


# The narrative block's structure (CDA R2 section 4.3.5): these make blocks;
# everything else is inline and contributes its text.
_BLOCKS = {"paragraph", "list", "table"}
_SKIPPED = {"renderMultiMedia", "footnoteRef", "caption"}


def _local(node: _Node) -> str:
    return node.tag.rpartition(" ")[2]


def _inline_lines(node: _Node) -> list[str]:
    """Inline content as lines, split at ``br``."""
    lines: list[list[str]] = [[]]
    pending: list[_Node | str] = list(reversed(node.children))
    while pending:
        current = pending.pop()
        if isinstance(current, str):
            lines[-1].append(current)
        elif _local(current) == "br":
            lines.append([])
        elif _local(current) not in _SKIPPED:
            pending.extend(reversed(current.children))
    return [s for s in (_squash("".join(parts)) for parts in lines) if s]


def _narrative(text: _Node | None) -> tuple[Block, ...]:
    if text is None:
        return ()
    blocks: list[Block] = []
    loose = _Node("", {}, [])

    def flush_loose() -> None:
        lines = _inline_lines(loose)
        if lines:
            blocks.append(Paragraph(tuple(lines)))
        loose.children = []

    pending: list[_Node | str] = list(reversed(text.children))
    while pending:
        child = pending.pop()
        if isinstance(child, _Node) and _local(child) in _BLOCKS:
            flush_loose()
            kind = _local(child)
            if kind == "paragraph":
                lines = _inline_lines(child)
                if lines:
                    blocks.append(Paragraph(tuple(lines)))
            elif kind == "list":
                items = tuple(" / ".join(_inline_lines(i)) for i in _children(child, "item"))
                blocks.append(ListBlock(child.attrs.get("listType") == "ordered", items))
            else:
                blocks.append(_table(child))
        elif isinstance(child, _Node) and _local(child) == "content" and any(
            isinstance(c, _Node) and _local(c) in _BLOCKS for c in child.children
        ):
            pending.extend(reversed(child.children))  # a styling wrapper around blocks
        else:
            loose.children.append(child)
    flush_loose()
    return tuple(blocks)


def _row(tr: _Node) -> tuple[str, ...]:
    return tuple(
        " / ".join(_inline_lines(cell)) for cell in tr.children if isinstance(cell, _Node) and _local(cell) in ("th", "td")
    )


def _table(node: _Node) -> Table:
    caption = _text(_child(node, "caption")) or None
    head: list[tuple[str, ...]] = [_row(tr) for tr in _children(_child(node, "thead"), "tr")]
    body: list[tuple[str, ...]] = []
    for tbody in _children(node, "tbody"):
        body.extend(_row(tr) for tr in _children(tbody, "tr"))
    body.extend(_row(tr) for tr in _children(node, "tr"))
    if not head and body and all(
        isinstance(c, _Node) and _local(c) == "th" for c in _first_row_cells(node)
    ):
        head, body = [body[0]], body[1:]
    return Table(caption, tuple(head), tuple(body))


def _first_row_cells(node: _Node) -> list[_Node]:
    tbody = _child(node, "tbody")
    rows = _children(tbody, "tr") or _children(node, "tr")
    return [c for c in rows[0].children if isinstance(c, _Node)] if rows else []
