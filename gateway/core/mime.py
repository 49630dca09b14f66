"""Byte-level MIME: headers, bodies and multipart boundaries.

Signatures cover exact bytes (RFC 8551 section 3.1.1), so the core never
re-serialises a parsed message: it finds header/body splits and boundaries in
the received bytes and slices them. The structure walk is here, with depth
and part limits, because ``email`` with ``policy.default`` costs more than the
cryptography (shared/PERFORMANCE.md) and recurses without bound; header
values are read by ``address`` (From, To, Cc) and ``headervalues``
(parameters, encoded words), in linear time, where the standard library's
readers are not.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, overload

from . import b64
from .address import MAX_LISTED, parse_address_list
from .headervalues import decode_words, parse_parameters

__all__ = [
    "Buffer", "Entity", "MimeError", "addresses", "base64_lines", "canonical", "decode_words",
    "format_headers", "own_lines", "parse_content_type", "parse_entity", "split_multipart",
]
from .limits import Limits

T = TypeVar("T")


class _memo(Generic[T]):
    """``functools.cached_property`` without its lock: Python 3.11 takes an RLock at each
    first access (3.12 dropped it), and an entity's few fields are each read first once per
    message. Two threads reading one entity at once would compute the same value twice."""

    def __init__(self, fn: Callable[[Any], T]) -> None:
        self.fn = fn
        self.name = fn.__name__

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> _memo[T]: ...
    @overload
    def __get__(self, instance: object, owner: type | None = None) -> T: ...
    def __get__(self, instance: object | None, owner: type | None = None) -> T | _memo[T]:
        if instance is None:
            return self
        value = instance.__dict__[self.name] = self.fn(instance)
        return value


class MimeError(ValueError):
    """Structure the core cannot read; ``too_deep``/``too_large`` name a limit."""

    def __init__(self, detail: str, *, too_deep: bool = False, too_large: bool = False):
        super().__init__(detail)
        self.too_deep = too_deep
        self.too_large = too_large


Buffer = bytes | bytearray


def canonical(raw: Buffer) -> Buffer:
    """CRLF line ends everywhere (RFC 5322 section 2.1; RFC 8551 section 3.1.1).

    Mail stored in files usually has bare LF; the signature was computed over
    the CRLF form, so bare LFs are converted. Input already canonical is
    returned as is, without a copy.
    """
    if raw.count(b"\n") == raw.count(b"\r\n"):
        return raw
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


@dataclass(frozen=True, init=False)
class Entity:
    """One MIME entity: its parsed header fields, and where its body lies in ``buf``.

    Bodies are windows over the received (or decrypted) buffer, not copies,
    so a 10 MB message is held once however deep its structure.
    """

    fields: tuple[tuple[str, str], ...]
    buf: Buffer = field(repr=False)
    start: int
    """Where the body starts."""
    end: int
    header_start: int = 0
    """Where the entity itself (its first header line) starts."""

    def __init__(self, fields: tuple[tuple[str, str], ...], buf: Buffer, start: int, end: int, header_start: int = 0):
        # One dict update instead of a frozen dataclass's five object.__setattr__ calls: an
        # entity is made for every header section a message holds.
        self.__dict__.update(fields=fields, buf=buf, start=start, end=end, header_start=header_start)

    @property
    def body(self) -> bytes:
        return bytes(self.buf[self.start : self.end])

    @property
    def view(self) -> memoryview:
        return memoryview(self.buf)[self.start : self.end]

    @_memo
    def _index(self) -> dict[str, list[str]]:
        index: dict[str, list[str]] = {}
        for key, value in self.fields:
            index.setdefault(key.lower(), []).append(value)
        return index

    def get(self, name: str) -> str | None:
        values = self._index.get(name.lower())
        return values[0] if values else None

    def get_all(self, name: str) -> list[str]:
        return list(self._index.get(name.lower(), ()))

    @_memo
    def _content_type(self) -> tuple[str, dict[str, str]]:
        return parse_content_type(self.get("Content-Type"))

    @property
    def content_type(self) -> str:
        """Lower-case type/subtype; text/plain when absent or unreadable (RFC 2045 section 5.2)."""
        return self._content_type[0]

    def param(self, name: str) -> str | None:
        return self._content_type[1].get(name.lower())

    @_memo
    def transfer_encoding(self) -> str:
        return (self.get("Content-Transfer-Encoding") or "7bit").strip().lower()

    def parts(self, limits: Limits) -> tuple[Entity, ...]:
        """The body parts of this multipart entity, parsed (RFC 2046 section 5.1).

        Kept for the next caller with the same limits: the sender check and the list
        of parts walk the same entities, and read each one once. The parts are parsed
        last to first, so that of two unreadable parts the last is the one reported,
        whoever asks first."""
        cached = self.__dict__.get("_parts")
        if cached is not None and cached[0] is limits:
            return cached[1]  # type: ignore[no-any-return]
        boundary = self.param("boundary")
        if boundary is None:
            raise MimeError(f"{self.content_type} without a boundary parameter")
        windows = split_multipart(self, boundary, limits)
        parts = tuple(reversed([parse_entity(self.buf, limits, start, end) for start, end in reversed(windows)]))
        self.__dict__["_parts"] = (limits, parts)
        return parts

    def decoded_body(self) -> Buffer:
        encoding = self.transfer_encoding
        try:
            if encoding == "base64":
                return b64.decode(self.buf, self.start, self.end)
            if encoding == "quoted-printable":
                return binascii.a2b_qp(self.view)
        except (binascii.Error, ValueError) as exc:
            raise MimeError(f"the {encoding} body cannot be decoded: {exc}") from exc
        if self.start == 0 and self.end == len(self.buf):
            return self.buf
        return self.body

    @_memo
    def _disposition(self) -> tuple[str, dict[str, str]]:
        value = self.get("Content-Disposition")
        if not value:
            return "", {}
        kind, params = parse_content_type(value, default="")
        return kind, params

    @property
    def filename(self) -> str | None:
        name = self._disposition[1].get("filename") or self.param("name")
        return decode_words(name) if name else None

    @property
    def is_attachment(self) -> bool:
        return self._disposition[0] == "attachment"


def parse_content_type(value: str | None, default: str = "text/plain") -> tuple[str, dict[str, str]]:
    """(type/subtype, parameters) per RFC 2045 section 5.1 and RFC 2231 (headervalues.py)."""
    return parse_parameters(value, default)


# RFC 5322 section 3.6.8: a field name is printable US-ASCII but the colon, and
# the colon follows at once. The obsolete white space before the colon
# (section 4.5.8) is refused: the standard library's parser does not read such
# a line as a field, and two readings of one header section are what hides a From.
_FIELD = re.compile(rb"([\x21-\x39\x3b-\x7e]++):([^\r\n]*+(?:\r\n[ \t][^\r\n]*+)*+)(?:\r\n|\Z)")
# The same grammar over the decoded section, for reading a whole section in two matches (one to
# check that it is nothing but fields, one to list them) instead of one match per field; the
# repeated pattern captures nothing (Python 3.11's re fails on a group captured inside a
# repeated possessive group). Decoding first changes nothing: UTF-8 never turns a byte
# above 0x7f into CR, LF or an ASCII name character, and a malformed sequence ends at the
# next ASCII byte whether the field is decoded alone or with its section.
_FIELD_TEXT = re.compile(_FIELD.pattern.decode("ascii"))
_FIELDS_TEXT = re.compile(r"(?:[\x21-\x39\x3b-\x7e]++:[^\r\n]*+(?:\r\n[ \t][^\r\n]*+)*+(?:\r\n|\Z))*+")
_WSP = " \t\n\r\x0b\x0c"
"""What ``bytes.strip()`` strips (ASCII white space), for stripping the decoded value alike."""


def parse_entity(buf: Buffer, limits: Limits, start: int = 0, end: int | None = None) -> Entity:
    """Split the entity in ``buf[start:end]`` into header fields (unfolded, RFC 5322
    section 2.2.3) and a body window.

    A header section holding a bare CR or a bare LF is refused (RFC 5322
    section 2.2: CR and LF occur only together): other readers end lines or
    the section there, and would see fields this reading does not.
    """
    end = len(buf) if end is None else end
    if buf[start : start + 2] == b"\r\n":
        head_end, body_start = start, start + 2
    else:
        blank = buf.find(b"\r\n\r\n", start, min(end, start + limits.max_header_bytes + 4))
        if blank < 0:
            if end - start > limits.max_header_bytes and buf.find(b"\r\n\r\n", start, end) >= 0:
                raise MimeError(f"the header section is over the limit of {limits.max_header_bytes} bytes", too_large=True)
            head_end, body_start = end, end
        else:
            head_end, body_start = blank + 2, blank + 4
    if head_end - start > limits.max_header_bytes:
        raise MimeError(f"the header section is over the limit of {limits.max_header_bytes} bytes", too_large=True)
    head = bytes(buf[start:head_end])
    crlf = head.count(b"\r\n")
    if head.count(b"\r") != crlf:
        raise MimeError("a header section holds a bare CR (RFC 5322 section 2.2)")
    if head.count(b"\n") != crlf:
        raise MimeError("a header section mixes bare LF with CRLF line ends (RFC 5322 section 2.2)")
    text = head.decode("utf-8", "replace")
    if _FIELDS_TEXT.fullmatch(text):
        if "\r\n " in text or "\r\n\t" in text:
            found = tuple((name, _unfold(value)) for name, value in _FIELD_TEXT.findall(text))
        else:
            found = tuple((name, value.strip(_WSP)) for name, value in _FIELD_TEXT.findall(text))
        return Entity(found, buf, body_start, max(body_start, end), start)
    fields: list[tuple[str, str]] = []  # a section that is not all fields: find the first that is not, and say why
    at, n = 0, len(head)
    while at < n:
        m = _FIELD.match(head, at)
        if m is None:
            if head[at : at + 1] in (b" ", b"\t"):
                raise MimeError("the header section starts with a continuation line")
            raise MimeError(f"header line without a field name (RFC 5322 section 3.6.8): {head[at : at + 60]!r}")
        value = m.group(2)
        if b"\r\n" in value:  # folded (section 2.2.3)
            value = b" ".join(piece.strip() for piece in value.split(b"\r\n"))
        fields.append((m.group(1).decode("ascii"), value.strip().decode("utf-8", "replace")))
        at = m.end()
    return Entity(tuple(fields), buf, body_start, max(body_start, end), start)


def _unfold(value: str) -> str:
    """A folded value (RFC 5322 section 2.2.3) as one line, each line's white space trimmed."""
    if "\r\n" not in value:
        return value.strip(_WSP)
    return " ".join(piece.strip(_WSP) for piece in value.split("\r\n")).strip(_WSP)


def own_lines(content: Buffer) -> Buffer:
    """Decrypted or encapsulated signed content, judged on its own bytes.

    Unlike ``canonical`` (for a message as received, which files legitimately
    hold with bare LF), nothing is rewritten here but content without any CR
    (a sender that wrote bare LF throughout), which cannot be read two ways.
    Content mixing the two is kept as it is, so ``parse_entity`` refuses any
    header section where they mix.
    """
    if b"\r" not in content and b"\n" in content:
        return content.replace(b"\n", b"\r\n")
    return content


def split_multipart(
    entity: Entity, boundary: str, limits: Limits, *, lenient: bool = False
) -> list[tuple[int, int]]:
    """(start, end) in ``entity.buf`` of each body part (RFC 2046 section 5.1.1).

    The CRLF before a delimiter belongs to the delimiter, so a part ends just
    before it; this is exactly what a multipart/signed signature covers.
    ``lenient`` accepts a body without its closing delimiter (some reports
    omit it), ending the last part at the end of the body.
    """
    if not boundary or len(boundary) > 70:
        raise MimeError("multipart boundary missing or longer than 70 characters (RFC 2046)")
    buf, lo, hi = entity.buf, entity.start, entity.end
    dash = b"--" + boundary.encode("ascii", "replace")
    marker = b"\r\n" + dash

    def delimiter_at(start: int) -> int:
        pos = buf.find(marker, start, hi)
        while pos >= 0:
            after = bytes(buf[pos + len(marker) : min(hi, pos + len(marker) + 2)])
            if after[:1] in (b"\r", b" ", b"\t") or after == b"--" or not after:
                return pos + 2
            pos = buf.find(marker, pos + 1, hi)
        return -1

    pos = lo if buf[lo : lo + len(dash)] == dash else delimiter_at(lo)
    if pos < 0:
        raise MimeError(f"multipart body has no boundary line --{boundary}")
    parts: list[tuple[int, int]] = []
    while True:
        after = pos + len(dash)
        if buf[after : after + 2] == b"--":
            return parts
        eol = buf.find(b"\r\n", after, hi)
        if eol < 0:
            raise MimeError("multipart body ends inside a boundary line")
        start = eol + 2
        nxt = delimiter_at(eol)
        if nxt < 0 and lenient:
            end = hi - 2 if buf[hi - 2 : hi] == b"\r\n" else hi
            parts.append((start, max(start, end)))
            return parts
        if nxt < 0:
            raise MimeError(f"multipart body lacks its closing boundary --{boundary}--")
        parts.append((start, max(start, nxt - 2)))
        if len(parts) > limits.max_mime_parts:
            raise MimeError(f"more than {limits.max_mime_parts} body parts", too_large=True)
        pos = nxt


def addresses(values: list[str]) -> tuple[str, ...]:
    """Bare, lower-cased addresses from address fields (To, Cc; RFC 5322 section 3.4),
    read by the strict parser and skipping what it cannot read. Encoded words
    are never decoded first: they are display names, not addresses."""
    found: list[str] = []
    for value in values:
        found += (m.address for m in parse_address_list(value, MAX_LISTED - len(found)))
    return tuple(found)


def format_headers(fields: list[tuple[str, str]]) -> bytes:
    return b"".join(f"{k}: {v}\r\n".encode() for k, v in fields)


def base64_lines(data: bytes) -> bytes:
    """Base64 in 76-character lines with CRLF (RFC 2045 section 6.8)."""
    return b64.lines(data)
