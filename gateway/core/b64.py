"""Base64 for MIME bodies (RFC 2045 section 6.8), at SIMD speed where the result cannot differ.

The standard library's ``binascii`` decodes about 4 ns a byte: a sealed 10 KB message's
bodies (the S/MIME blob, then its signature and attachments) cost more than 0.1 ms of a
receiving gateway's 2 ms (bench/smtp_inbound.py). ``pybase64`` does the same in a tenth
of that time, and reads malformed input the same way except where a padding character
stands before the end: ``binascii`` stops at the first padded quantum, ``pybase64``
reads on. So a body whose ``=`` are all in its last run (with only line breaks among
them), as every well-formed body's are, is decoded by ``pybase64``; any other by
``binascii``, whose lenient reading the rest of the project was built and tested on.
(Differential fuzzing of the two over junk, truncation and padding in any place:
tests/test_core_b64.py.)
"""

from __future__ import annotations

import binascii

import pybase64

Buffer = bytes | bytearray | memoryview

Error = binascii.Error
"""What a body that cannot be decoded raises (``pybase64`` raises the same)."""

_PADDING_TAIL = b"=\r\n"


def decode(body: Buffer) -> bytes:
    """``binascii.a2b_base64(body)``: the same bytes, or the same ``binascii.Error``."""
    data = body if isinstance(body, bytes) else bytes(body)  # a copy of a view costs a memcpy
    first = data.find(b"=")
    if first < 0 or not data[first:].strip(_PADDING_TAIL):
        return pybase64.b64decode(data)
    return binascii.a2b_base64(data)


def lines(data: bytes) -> bytes:
    """``data`` in base64 lines of 76 characters, each ended by CRLF (an empty body is one CRLF)."""
    if not data:
        return b"\r\n"
    return pybase64.encodebytes(data).replace(b"\n", b"\r\n")
