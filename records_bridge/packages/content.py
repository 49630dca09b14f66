"""What a package holds: its items, as the plaintext of an envelope (spec section 4).

The plaintext is UTF-8 JSON ``{"items": [item, ...]}`` with 1..100 items,
each ``{"content_type", "bytes_b64", "filename"?, "title"?}`` (the shape of
an inbound message's attachments, section 6), 20 MiB of content at most.
The bridge types each item itself when it is picked up (``documents``): the
sender says what the bytes are, never what item type they become.

The parser is strict and bounded: sizes are checked from the base64 length
before anything is decoded, unknown keys are refused, and every failure is
one ``ContentError``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

MAX_ITEMS = 100
MAX_TOTAL_BYTES = 20 * 1024 * 1024
"""At most 100 items and 20 MiB of content per package (spec section 4, limits)."""
MAX_NAME = 255
"""A filename, title or content type: one header's worth, as in the items' columns."""
_KEYS = frozenset({"content_type", "bytes_b64", "filename", "title"})


class ContentError(ValueError):
    """Items that are not a valid package content."""


@dataclass(frozen=True, slots=True)
class PackageItem:
    content_type: str
    data: bytes = field(repr=False)
    filename: str | None = None
    title: str | None = None

    def __post_init__(self) -> None:
        if not self.content_type or len(self.content_type) > MAX_NAME or "/" not in self.content_type:
            raise ContentError("content_type must be a media type")
        for name in (self.filename, self.title):
            if name is not None and (not name or len(name) > MAX_NAME):
                raise ContentError(f"filename and title are 1..{MAX_NAME} characters")

    def to_json(self) -> dict[str, str]:
        out = {"content_type": self.content_type, "bytes_b64": base64.b64encode(self.data).decode("ascii")}
        if self.filename is not None:
            out["filename"] = self.filename
        if self.title is not None:
            out["title"] = self.title
        return out


def item_from_json(raw: object) -> PackageItem:
    if not isinstance(raw, Mapping) or not set(raw) <= _KEYS:
        raise ContentError("an item is an object with content_type, bytes_b64, filename?, title?")
    ctype, b64 = raw.get("content_type"), raw.get("bytes_b64")
    filename, title = raw.get("filename"), raw.get("title")
    if not isinstance(ctype, str) or not isinstance(b64, str):
        raise ContentError("content_type and bytes_b64 are strings")
    if not all(v is None or isinstance(v, str) for v in (filename, title)):
        raise ContentError("filename and title are strings")
    if len(b64) > (MAX_TOTAL_BYTES + 2) // 3 * 4:
        raise ContentError("the package is too large")
    try:
        data = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ContentError("bytes_b64 is not base64") from exc
    return PackageItem(ctype, data, filename, title)


def items_from_json(raw: object) -> tuple[PackageItem, ...]:
    """Items from decoded JSON (a list), checked against the limits."""
    if not isinstance(raw, list) or not raw:
        raise ContentError("a package holds at least one item")
    if len(raw) > MAX_ITEMS:
        raise ContentError(f"a package holds at most {MAX_ITEMS} items")
    items = tuple(item_from_json(x) for x in raw)
    check_size(items)
    return items


def check_size(items: Sequence[PackageItem]) -> None:
    if not items or len(items) > MAX_ITEMS:
        raise ContentError(f"a package holds 1..{MAX_ITEMS} items")
    if sum(len(i.data) for i in items) > MAX_TOTAL_BYTES:
        raise ContentError(f"a package holds at most {MAX_TOTAL_BYTES} bytes")


def encode_plaintext(items: Sequence[PackageItem]) -> bytes:
    check_size(items)
    return json.dumps({"items": [i.to_json() for i in items]}, separators=(",", ":")).encode("utf-8")


def decode_plaintext(plaintext: bytes) -> tuple[PackageItem, ...]:
    try:
        doc: Any = json.loads(plaintext.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ContentError("the plaintext is not UTF-8 JSON") from exc
    if not isinstance(doc, dict) or set(doc) != {"items"}:
        raise ContentError('the plaintext is {"items": [...]}')
    return items_from_json(doc["items"])
