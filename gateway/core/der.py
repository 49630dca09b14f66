"""A BER/DER walker over one buffer, by offsets, without copying, in linear time.

asn1crypto copies the contents of every element it parses, so a 10 MB
enveloped-data parsed with it holds one copy per nesting level. This walker
finds where an element's contents lie (X.690 section 8.1) and lets the caller
slice only what it needs: small structures go to asn1crypto, the bulk
ciphertext goes to the cipher as memoryview chunks.

How the walk stays linear and bounded, whatever the bytes:

- A definite-length element's end is read from its header, in constant time.
  An indefinite-length one (X.690 8.1.3.6, BER as ``openssl cms -stream`` and
  gpgsm write it) ends only at its end-of-contents octets, so finding its end
  means reading every child. A ``Walk`` remembers each indefinite element's
  end the first time it is found, so a later look at the same element (a
  caller listing the children, a nested constructed OCTET STRING) costs one
  header, not another walk of everything below: every header is read a
  bounded number of times, however deep the nesting.
- Every header read is a step, and a walk has a budget of steps proportional
  to its buffer (``limits.DER_STEPS_FLOOR`` plus one step per
  ``limits.DER_BYTES_PER_STEP`` bytes): a blob of millions of two-byte
  elements is refused after a bounded amount of work, not after walking them.
- Nesting below an indefinite element is bounded by ``MAX_NESTING``, the
  number of remembered ends by ``limits.MAX_BER_INDEFINITE``.
- Children are never listed before they are counted: ``fields`` takes a
  fixed shape (refusing a missing or an extra child), ``take`` iterates with a
  bound and refuses the first child beyond it.

Every failure is a ``DerError`` carrying the ``RejectReason`` it becomes.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import NamedTuple

from .limits import DER_BYTES_PER_STEP, DER_STEPS_FLOOR, MAX_BER_INDEFINITE
from .outcomes import RejectReason

# Indefinite lengths nest (BER constructed strings inside constructed
# strings); real producers use 2-3 levels below a ContentInfo, which itself is
# at most 6 levels deep in an enveloped-data. This bounds a crafted blob.
MAX_NESTING = 32

Buffer = bytes | bytearray | memoryview


class DerError(ValueError):
    """Bytes that are not the BER/DER expected, or that cost more to walk than allowed."""

    def __init__(self, detail: str, reason: RejectReason = RejectReason.MALFORMED):
        super().__init__(detail)
        self.detail = detail
        self.reason = reason


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


_new_tuple = tuple.__new__
"""Builds a Tlv without the Python-level ``__new__`` a NamedTuple call goes through (one per header read)."""


class Walk:
    """One walk over one buffer: remembers indefinite ends and counts steps against a budget."""

    __slots__ = ("_budget", "_ends", "buf", "steps")

    def __init__(self, buf: Buffer, *, budget: int | None = None):
        self.buf = buf
        self._ends: dict[int, int] = {}
        """Start offset of an indefinite-length element -> offset just past its end-of-contents."""
        self._budget = DER_STEPS_FLOOR + len(buf) // DER_BYTES_PER_STEP if budget is None else budget
        self.steps = 0
        """Headers read so far (for the tests that prove the walk linear)."""

    # ------------------------------------------------------------------ elements

    def read(self, pos: int, limit: int, depth: int = 0) -> Tlv:
        """The element starting at ``pos``, which must end by ``limit``."""
        steps = self.steps = self.steps + 1
        if steps > self._budget:
            raise DerError("the BER/DER takes more steps to walk than its size allows", RejectReason.TOO_LARGE)
        if depth > MAX_NESTING:
            raise DerError(f"BER nesting deeper than {MAX_NESTING} levels", RejectReason.TOO_DEEP)
        buf = self.buf
        if pos + 2 > limit:
            raise DerError("truncated element")
        tag = buf[pos]
        if tag & 0x1F == 0x1F:
            raise DerError("high tag numbers do not occur in CMS")
        first = buf[pos + 1]
        at = pos + 2
        if first < 0x80:  # the short form, most elements: return at once
            stop = at + first
            if stop > limit:
                raise DerError(f"element claims {first} bytes, only {limit - at} remain")
            return _new_tuple(Tlv, (tag, pos, at, stop, stop))
        if first == 0x80:
            if not tag & 0x20:
                raise DerError("indefinite length on a primitive element")
            end = self._ends.get(pos)
            if end is None:
                end = self._find_end(at, limit, depth)
                if len(self._ends) >= MAX_BER_INDEFINITE:
                    raise DerError(
                        f"more than {MAX_BER_INDEFINITE} indefinite-length elements", RejectReason.TOO_LARGE
                    )
                self._ends[pos] = end
            elif end > limit:
                raise DerError("indefinite-length element runs past its parent")
            return _new_tuple(Tlv, (tag, pos, at, end - 2, end))
        count = first & 0x7F
        if count > 4 or at + count > limit:
            raise DerError("length field too long")
        length = int.from_bytes(buf[at : at + count], "big")
        at += count
        if at + length > limit:
            raise DerError(f"element claims {length} bytes, only {limit - at} remain")
        return _new_tuple(Tlv, (tag, pos, at, at + length, at + length))

    def _find_end(self, child: int, limit: int, depth: int) -> int:
        """Where the indefinite element whose contents start at ``child`` ends (X.690 8.1.5)."""
        buf = self.buf
        inline = depth + 1 <= MAX_NESTING
        while True:
            if child + 2 > limit:
                raise DerError("indefinite-length element lacks its end-of-contents")
            tag, first = buf[child], buf[child + 1]
            if tag == 0 and first == 0:
                return child + 2
            if inline and first < 0x80 and tag & 0x1F != 0x1F:
                # A short definite child (a ciphertext piece, a NULL): what read() would do, without
                # building its Tlv, as this loop is where a crafted flat blob spends its steps.
                self.steps += 1
                if self.steps > self._budget:
                    raise DerError("the BER/DER takes more steps to walk than its size allows", RejectReason.TOO_LARGE)
                child += 2 + first
                if child > limit:
                    raise DerError(f"element claims {first} bytes, fewer remain")
            else:
                child = self.read(child, limit, depth + 1).end

    def peek(self, pos: int, limit: int) -> tuple[int, int]:
        """(tag, offset of the contents) of the element at ``pos``, without finding where it
        ends: for a look at the first field of a streamed structure that costs one header."""
        self.steps += 1
        if pos + 2 > limit:
            raise DerError("truncated element")
        tag, first = self.buf[pos], self.buf[pos + 1]
        if tag & 0x1F == 0x1F:
            raise DerError("high tag numbers do not occur in CMS")
        if first <= 0x80:
            return tag, pos + 2
        return tag, pos + 2 + (first & 0x7F)

    def top(self) -> Tlv:
        """The element at offset 0."""
        return self.read(0, len(self.buf))

    def children(self, parent: Tlv) -> Iterator[Tlv]:
        pos = parent.content_start
        while pos < parent.content_end:
            child = self.read(pos, parent.content_end)
            yield child
            pos = child.end

    def take(self, parent: Tlv, at_most: int, what: str) -> Iterator[Tlv]:
        """The children, refusing (TOO_LARGE) the first one beyond ``at_most`` before yielding it."""
        pos, end, n = parent.content_start, parent.content_end, 0
        while pos < end:  # children(), inline: one generator instead of two
            child = self.read(pos, end)
            n += 1
            if n > at_most:
                raise DerError(f"more than {at_most} {what}", RejectReason.TOO_LARGE)
            yield child
            pos = child.end

    def fields(self, parent: Tlv, least: int, most: int, what: str) -> tuple[Tlv, ...]:
        """The children of a SEQUENCE of fixed shape: between ``least`` and ``most`` of them, else MALFORMED."""
        if not parent.tag & 0x20:
            raise DerError(f"{what} is not a constructed element")
        found: list[Tlv] = []
        buf, pos, end = self.buf, parent.content_start, parent.content_end
        while pos < end:  # children(), without a generator: this is the walk's most frequent loop
            if pos + 2 <= end and buf[pos + 1] < 0x80 and buf[pos] & 0x1F != 0x1F:
                # A short-form child, read as read() reads it (step, budget, length), without the call.
                self.steps += 1
                if self.steps > self._budget:
                    raise DerError("the BER/DER takes more steps to walk than its size allows", RejectReason.TOO_LARGE)
                stop = pos + 2 + buf[pos + 1]
                if stop > end:
                    raise DerError(f"element claims {buf[pos + 1]} bytes, only {end - pos - 2} remain")
                child = _new_tuple(Tlv, (buf[pos], pos, pos + 2, stop, stop))
            else:
                child = self.read(pos, end)
            if len(found) == most:
                raise DerError(f"{what} has more than {most} fields")
            found.append(child)
            pos = child.end
        if len(found) < least:
            raise DerError(f"{what} has {len(found)} fields, at least {least} expected")
        return tuple(found)

    def only(self, parent: Tlv, what: str) -> Tlv:
        """The one child of an EXPLICIT tag or a single-valued SET."""
        return self.fields(parent, 1, 1, what)[0]

    def octet_chunks(self, element: Tlv, at_most: int, *, implicit: bool = False) -> Iterator[memoryview]:
        """The value of an OCTET STRING, primitive or BER-constructed (X.690 8.7.3), as views.

        At most ``at_most`` primitive pieces, counted as they are met. ``implicit``: the
        element itself travels under a context tag (``[0] IMPLICIT OCTET STRING``); its
        pieces, if constructed, are still universal OCTET STRINGs (X.690 8.7.3.2)."""
        if not implicit and element.tag & 0xDF != 0x04:
            raise DerError("expected an OCTET STRING")
        return self._chunks(element, [at_most], 0)

    def _chunks(self, element: Tlv, left: list[int], depth: int) -> Iterator[memoryview]:
        view = memoryview(self.buf)
        if not element.constructed:
            left[0] -= 1
            if left[0] < 0:
                raise DerError("an OCTET STRING cut in more pieces than allowed", RejectReason.TOO_LARGE)
            yield view[element.content_start : element.content_end]
            return
        if depth >= MAX_NESTING:
            raise DerError("constructed OCTET STRING nested too deep", RejectReason.TOO_DEEP)
        buf, pos, end = self.buf, element.content_start, element.content_end
        while pos < end:
            if pos + 2 <= end and buf[pos] == 0x04 and buf[pos + 1] < 0x80:
                # A short primitive piece, read inline (no Tlv, no generator): the unit a crafted
                # message multiplies. Counted as a step and as a piece like any other.
                self.steps += 1
                if self.steps > self._budget:
                    raise DerError("the BER/DER takes more steps to walk than its size allows", RejectReason.TOO_LARGE)
                start, pos = pos + 2, pos + 2 + buf[pos + 1]
                if pos > end:
                    raise DerError("an OCTET STRING piece runs past its parent")
                left[0] -= 1
                if left[0] < 0:
                    raise DerError("an OCTET STRING cut in more pieces than allowed", RejectReason.TOO_LARGE)
                yield view[start:pos]
                continue
            child = self.read(pos, end)
            pos = child.end
            if child.tag == 0x04:
                left[0] -= 1
                if left[0] < 0:
                    raise DerError("an OCTET STRING cut in more pieces than allowed", RejectReason.TOO_LARGE)
                yield view[child.content_start : child.content_end]
            elif child.tag == 0x24:
                yield from self._chunks(child, left, depth + 1)
            else:
                raise DerError("a constructed OCTET STRING holds something else")

    def octets(self, element: Tlv, at_most: int = 64) -> bytes:
        """A small OCTET STRING's value (keys, tags, digests), in at most ``at_most`` pieces."""
        return b"".join(self.octet_chunks(element, at_most))

    # ------------------------------------------------------------------ values

    def oid(self, element: Tlv) -> str:
        return oid(self.buf, element)

    @property
    def indefinite(self) -> int:
        """How many indefinite-length ends the walk has found (and remembers)."""
        return len(self._ends)

    def charge(self, steps: int) -> None:
        """Count ``steps`` header reads against the budget without doing them: for a result
        kept from walking the same bytes before, which cost that many (``cms._carried``)."""
        self.steps += steps
        if self.steps > self._budget:
            raise DerError("the BER/DER takes more steps to walk than its size allows", RejectReason.TOO_LARGE)

    def integer(self, element: Tlv) -> int:
        """An INTEGER (X.690 8.3: at least one content octet)."""
        if element.tag != 0x02 or element.content_end == element.content_start:
            raise DerError("expected an INTEGER")
        if element.content_end - element.content_start > 64:
            raise DerError("an INTEGER longer than any serial number or version")
        return int.from_bytes(self.buf[element.content_start : element.content_end], "big", signed=True)

    def encoded(self, element: Tlv) -> bytes:
        """The element's own encoding, for handing a small structure to asn1crypto."""
        return bytes(self.buf[element.start : element.end])

    def content(self, element: Tlv) -> bytes:
        return bytes(self.buf[element.content_start : element.content_end])


def oid(buf: Buffer, element: Tlv) -> str:
    """Dotted form of an OBJECT IDENTIFIER (X.690 section 8.19)."""
    if element.tag != 0x06:
        raise DerError("expected an OBJECT IDENTIFIER")
    data = bytes(buf[element.content_start : element.content_end])
    if not data or len(data) > 64:
        raise DerError("bad OBJECT IDENTIFIER length")
    return _dotted(data)


@lru_cache(maxsize=512)
def _dotted(data: bytes) -> str:
    """The dotted form of an OID's contents: the same few OIDs come in every message (a
    failure raises and is not kept)."""
    if data[-1] & 0x80:
        raise DerError("truncated OBJECT IDENTIFIER")
    arcs: list[int] = []
    value = 0
    for byte in data:
        if byte == 0x80 and value == 0:
            # X.690 8.19.2: a subidentifier never starts with 0x80, so each OID has one encoding.
            raise DerError("an OBJECT IDENTIFIER arc with a leading zero septet")
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(map(str, [first, arcs[0] - 40 * first, *arcs[1:]]))


def read_one(buf: Buffer) -> tuple[Walk, Tlv]:
    """A walk over a small encoding that must be exactly one element."""
    walk = Walk(buf)
    top = walk.top()
    if top.end != len(buf):
        raise DerError("bytes after the element")
    return walk, top
