"""Base64 for MIME bodies (RFC 2045 section 6.8), at SIMD speed where the result cannot differ.

The standard library's ``binascii`` decodes about 4 ns a byte: a sealed 10 KB message's
bodies (the S/MIME blob, then its signature and attachments) cost more than 0.1 ms of a
receiving gateway's 2 ms (bench/smtp_inbound.py). ``pybase64`` does the same in a tenth
of that time, and reads malformed input the same way except where a padding character
stands before the end: ``binascii`` stops at the first padded quantum, ``pybase64``
reads on. So a body whose ``=`` are all in its last few bytes (with only line breaks
among them), as every well-formed body's are, is decoded by ``pybase64``; any other by
``binascii``, whose lenient reading the rest of the project was built and tested on.
(Differential fuzzing of the two over junk, truncation and padding in any place:
tests/test_core_b64.py.)
"""

from __future__ import annotations

import binascii
import re

import pybase64

from .der import Buffer

_PADDING_TAIL = b"=\r\n"
_TAIL_AT_MOST = 16
"""A well-formed body's last run holds two padding characters and line breaks: a longer run
starting at the first ``=`` is left to ``binascii`` (and never copied)."""
_EQUALS = re.compile(rb"=")


def decode(data: Buffer, start: int = 0, end: int | None = None) -> bytes:
    """``binascii.a2b_base64(data[start:end])``: the same bytes, or the same ``binascii.Error``.
    Nothing of the body is copied (a 25 MB attachment is decoded from where it lies)."""
    end = len(data) if end is None else end
    body = memoryview(data)[start:end]
    first = _first_equals(data, start, end)
    if first < 0 or (end - first <= _TAIL_AT_MOST and not bytes(data[first:end]).strip(_PADDING_TAIL)):
        return pybase64.b64decode(body)
    return binascii.a2b_base64(body)


def _first_equals(data: Buffer, start: int, end: int) -> int:
    if isinstance(data, bytes | bytearray):
        return data.find(b"=", start, end)
    found = _EQUALS.search(data, start, end)  # a memoryview has no find; re reads it in place
    return found.start() if found else -1


def lines(data: bytes) -> bytes:
    """``data`` in base64 lines of 76 characters, each ended by CRLF (an empty body is one CRLF)."""
    if not data:
        return b"\r\n"
    return pybase64.encodebytes(data).replace(b"\n", b"\r\n")
