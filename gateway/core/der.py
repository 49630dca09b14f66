"""A minimal BER/DER walker over a buffer, by offsets, without copying.

asn1crypto copies the contents of every element it parses, so a 10 MB
enveloped-data parsed with it holds one copy per nesting level. This walker
finds where an element's contents lie (X.690 section 8.1) and lets the caller
slice only what it needs: small structures go to asn1crypto, the bulk
ciphertext goes to the cipher as memoryview chunks.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

# Indefinite lengths nest (BER constructed strings inside constructed
# strings); real producers use 2-3 levels. This bounds a crafted blob.
MAX_NESTING = 32


class DerError(ValueError):
    pass


class Tlv(NamedTuple):
    # A NamedTuple rather than a frozen dataclass: made tens of times per
    # message, and a tuple is three times cheaper to build.
    tag: int
    """The identifier octet (class, constructed bit and tag number < 31)."""
    start: int
    """Offset of the identifier octet."""
    content_start: int
    content_end: int
    """Offset just past the contents (before the end-of-contents octets if indefinite)."""
    end: int
    """Offset just past the whole element."""

    @property
    def constructed(self) -> bool:
        return bool(self.tag & 0x20)


def read(buf: bytes | bytearray | memoryview, pos: int, limit: int, depth: int = 0) -> Tlv:
    """The element starting at ``pos``, which must end by ``limit``."""
    if depth > MAX_NESTING:
        raise DerError("BER nesting too deep")
    if pos + 2 > limit:
        raise DerError("truncated element")
    tag = buf[pos]
    if tag & 0x1F == 0x1F:
        raise DerError("high tag numbers do not occur in CMS envelopes")
    first = buf[pos + 1]
    at = pos + 2
    if first < 0x80:
        length = first
    elif first == 0x80:
        if not tag & 0x20:
            raise DerError("indefinite length on a primitive element")
        child = at
        while True:
            if child + 2 > limit:
                raise DerError("indefinite-length element lacks its end-of-contents")
            if buf[child] == 0 and buf[child + 1] == 0:
                return Tlv(tag, pos, at, child, child + 2)
            child = read(buf, child, limit, depth + 1).end
    else:
        count = first & 0x7F
        if count > 4 or at + count > limit:
            raise DerError("length field too long")
        length = int.from_bytes(bytes(buf[at : at + count]), "big")
        at += count
    if at + length > limit:
        raise DerError(f"element claims {length} bytes, only {limit - at} remain")
    return Tlv(tag, pos, at, at + length, at + length)


def children(buf: bytes | bytearray | memoryview, parent: Tlv, depth: int = 0) -> Iterator[Tlv]:
    pos = parent.content_start
    while pos < parent.content_end:
        child = read(buf, pos, parent.content_end, depth)
        yield child
        pos = child.end


def octet_chunks(
    buf: bytes | bytearray | memoryview, element: Tlv, depth: int = 0
) -> Iterator[memoryview]:
    """The value of an OCTET STRING, primitive or BER-constructed, as views into ``buf``."""
    view = memoryview(buf)
    if not element.constructed:
        yield view[element.content_start : element.content_end]
        return
    if depth > MAX_NESTING:
        raise DerError("constructed OCTET STRING nested too deep")
    for child in children(buf, element, depth + 1):
        if child.tag & 0xDF != 0x04:
            raise DerError("a constructed OCTET STRING holds something else")
        yield from octet_chunks(buf, child, depth + 1)


def oid(buf: bytes | bytearray | memoryview, element: Tlv) -> str:
    """Dotted form of an OBJECT IDENTIFIER (X.690 section 8.19)."""
    if element.tag != 0x06:
        raise DerError("expected an OBJECT IDENTIFIER")
    data = bytes(buf[element.content_start : element.content_end])
    if not data or len(data) > 64:
        raise DerError("bad OBJECT IDENTIFIER length")
    arcs: list[int] = []
    value = 0
    for byte in data:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    if data[-1] & 0x80:
        raise DerError("truncated OBJECT IDENTIFIER")
    first = min(arcs[0] // 40, 2)
    return ".".join(map(str, [first, arcs[0] - 40 * first, *arcs[1:]]))


def encoded(buf: bytes | bytearray | memoryview, element: Tlv) -> bytes:
    """The element's own encoding, for handing a small structure to asn1crypto."""
    return bytes(buf[element.start : element.end])
