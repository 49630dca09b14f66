"""Byte-level MIME: headers, bodies and multipart boundaries.

Signatures cover exact bytes (RFC 8551 section 3.1.1), so the core never
re-serialises a parsed message: it finds header/body splits and boundaries in
the received bytes and slices them. The standard library's ``email`` package
parses header *values* (Content-Type parameters, addresses, RFC 2047 encoded
words); the structure walk is here, with depth and part limits, because
``email`` with ``policy.default`` costs more than the cryptography
(shared/PERFORMANCE.md) and recurses without bound.
"""

from __future__ import annotations

import binascii
import email.message
import email.utils
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.policy import compat32
from functools import cached_property

from .limits import Limits


class MimeError(ValueError):
    """Structure the core cannot read; ``too_deep``/``too_large`` name a limit."""

    def __init__(self, detail: str, *, too_deep: bool = False, too_large: bool = False):
        super().__init__(detail)
        self.too_deep = too_deep
        self.too_large = too_large


def canonical(raw: bytes) -> bytes:
    """CRLF line ends everywhere (RFC 5322 section 2.1; RFC 8551 section 3.1.1).

    Mail stored in files usually has bare LF; the signature was computed over
    the CRLF form, so bare LFs are converted. Input already canonical is
    returned as is, without a copy.
    """
    lf = raw.count(b"\n")
    if lf == raw.count(b"\r\n"):
        return raw
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


@dataclass(frozen=True)
class Entity:
    """One MIME entity: its parsed header fields and the exact bytes of its body."""

    fields: tuple[tuple[str, str], ...]
    body: bytes

    def get(self, name: str) -> str | None:
        lname = name.lower()
        for key, value in self.fields:
            if key.lower() == lname:
                return value
        return None

    def get_all(self, name: str) -> list[str]:
        lname = name.lower()
        return [v for k, v in self.fields if k.lower() == lname]

    @cached_property
    def _content_type(self) -> email.message.Message:
        msg = email.message.Message(policy=compat32)
        value = self.get("Content-Type")
        if value is not None:
            msg["Content-Type"] = value
        return msg

    @property
    def content_type(self) -> str:
        """Lower-case type/subtype; text/plain when absent (RFC 2045 section 5.2)."""
        return self._content_type.get_content_type()

    def param(self, name: str) -> str | None:
        value = self._content_type.get_param(name)
        if value is None or isinstance(value, str):
            return value
        return email.utils.collapse_rfc2231_value(value)

    @property
    def transfer_encoding(self) -> str:
        return (self.get("Content-Transfer-Encoding") or "7bit").strip().lower()

    def decoded_body(self) -> bytes:
        encoding = self.transfer_encoding
        try:
            if encoding == "base64":
                return binascii.a2b_base64(self.body)
            if encoding == "quoted-printable":
                return binascii.a2b_qp(self.body)
        except (binascii.Error, ValueError) as exc:
            raise MimeError(f"the {encoding} body cannot be decoded: {exc}") from exc
        return self.body

    @property
    def filename(self) -> str | None:
        disposition = self.get("Content-Disposition")
        if disposition:
            msg = email.message.Message(policy=compat32)
            msg["Content-Disposition"] = disposition
            value = msg.get_filename()
            if value:
                return str(value)
        name = self.param("name")
        return decode_words(name) if name else None

    @property
    def is_attachment(self) -> bool:
        disposition = (self.get("Content-Disposition") or "").split(";")[0].strip().lower()
        return disposition == "attachment"


def decode_words(value: str) -> str:
    """RFC 2047 encoded words to text; malformed words are left as they came."""
    try:
        return str(make_header(decode_header(value)))
    except (ValueError, LookupError, UnicodeError):
        return value


def _split_head(raw: bytes) -> tuple[bytes, bytes]:
    if raw.startswith(b"\r\n"):
        return b"", raw[2:]
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        return raw, b""
    return raw[: end + 2], raw[end + 4 :]


def parse_entity(raw: bytes, limits: Limits) -> Entity:
    """Split one entity into header fields (unfolded, RFC 5322 section 2.2.3) and body bytes."""
    head, body = _split_head(raw)
    if len(head) > limits.max_header_bytes:
        raise MimeError(
            f"the header section is {len(head)} bytes, over the limit of {limits.max_header_bytes}",
            too_large=True,
        )
    fields: list[tuple[str, str]] = []
    for line in head.split(b"\r\n"):
        if not line:
            continue
        if line[:1] in (b" ", b"\t"):
            if not fields:
                raise MimeError("the message starts with a continuation line")
            name, value = fields[-1]
            fields[-1] = (name, value + " " + line.strip().decode("utf-8", "replace"))
            continue
        colon = line.find(b":")
        if colon <= 0:
            raise MimeError(f"header line without a field name: {line[:60]!r}")
        name = line[:colon].decode("ascii", "replace").strip()
        fields.append((name, line[colon + 1 :].strip().decode("utf-8", "replace")))
    return Entity(tuple(fields), body)


def split_multipart(body: bytes, boundary: str, limits: Limits) -> list[bytes]:
    """The exact bytes of each body part (RFC 2046 section 5.1.1).

    The CRLF before a delimiter belongs to the delimiter, so a part's bytes end
    just before it; this is what a multipart/signed signature covers.
    """
    if not boundary or len(boundary) > 70:
        raise MimeError("multipart boundary missing or longer than 70 characters (RFC 2046)")
    dash = b"--" + boundary.encode("ascii", "replace")
    marker = b"\r\n" + dash

    def delimiter_at(start: int) -> int:
        pos = body.find(marker, start)
        while pos >= 0:
            after = body[pos + len(marker) : pos + len(marker) + 2]
            if after[:1] in (b"\r", b" ", b"\t") or after == b"--" or not after:
                return pos + 2
            pos = body.find(marker, pos + 1)
        return -1

    pos = 0 if body.startswith(dash) else delimiter_at(0)
    if pos < 0:
        raise MimeError(f"multipart body has no boundary line --{boundary}")
    parts: list[bytes] = []
    while True:
        after = pos + len(dash)
        if body[after : after + 2] == b"--":
            return parts
        eol = body.find(b"\r\n", after)
        if eol < 0:
            raise MimeError("multipart body ends inside a boundary line")
        start = eol + 2
        nxt = delimiter_at(eol)
        if nxt < 0:
            raise MimeError(f"multipart body lacks its closing boundary --{boundary}--")
        parts.append(body[start : max(start, nxt - 2)])
        if len(parts) > limits.max_mime_parts:
            raise MimeError(f"more than {limits.max_mime_parts} body parts", too_large=True)
        pos = nxt


def addresses(values: list[str]) -> tuple[str, ...]:
    """Bare, lower-cased addresses from address header values (RFC 5322 section 3.4)."""
    found = []
    for _name, addr in email.utils.getaddresses([decode_words(v) for v in values]):
        if addr:
            found.append(addr.strip().lower())
    return tuple(found)


def format_headers(fields: list[tuple[str, str]]) -> bytes:
    return b"".join(f"{k}: {v}\r\n".encode() for k, v in fields)


def base64_lines(data: bytes) -> bytes:
    """Base64 in 76-character lines with CRLF (RFC 2045 section 6.8)."""
    encoded = binascii.b2a_base64(data, newline=False)
    return b"\r\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76)) + b"\r\n"
