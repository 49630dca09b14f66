"""MIME base64 through pybase64 gives what binascii gives: the same bytes for every body,
or the same ``binascii.Error``, however the body is broken (gateway/core/b64.py)."""

from __future__ import annotations

import base64
import binascii
import os
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core import b64, mime

FUZZ = settings(deadline=None, max_examples=3000)


def _outcome(decode, body):
    try:
        return ("ok", decode(body))
    except binascii.Error as error:
        return ("error", type(error).__name__)


def _mime_lines(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


RANDOM = os.urandom(3000)

VECTORS = [
    pytest.param(b"", id="empty"),
    pytest.param(_mime_lines(RANDOM), id="well-formed-lines"),
    pytest.param(base64.b64encode(RANDOM[:1000]), id="one-line"),
    pytest.param(_mime_lines(RANDOM[:1001]), id="one-padding-character"),
    pytest.param(_mime_lines(RANDOM[:1002]), id="two-padding-characters"),
    pytest.param(b"QUJD\r\nREVG\r\n=\r\n=\r\n", id="padding-alone-on-lines"),
    pytest.param(b"QUJDRA", id="padding-missing"),
    pytest.param(b"QUJDRA=", id="padding-short"),
    pytest.param(b"QUJDRA===", id="padding-excess"),
    pytest.param(b"QUJDRA==QUJD", id="data-after-padding"),
    pytest.param(b"QU=JDREVG", id="padding-inside"),
    pytest.param(b"=QUJD", id="padding-first"),
    pytest.param(b"QUJD REVG\tR0hJ", id="spaces-and-tabs"),
    pytest.param(b"QUJD!REVG*R0hJ\x00\xff", id="junk-characters"),
    pytest.param(b"QUJDR", id="one-character-left-over"),
    pytest.param(b"QUJDRA==\r\n \r\n", id="white-space-after-padding"),
    pytest.param(b"QUJDRA==\r\n-- \r\n", id="text-after-padding"),
]


@pytest.mark.parametrize("body", VECTORS)
@pytest.mark.parametrize("held", [bytes, bytearray, memoryview])
def test_decode_answers_as_binascii(body, held):
    assert _outcome(b64.decode, held(body)) == _outcome(binascii.a2b_base64, body)


@pytest.mark.parametrize("body", VECTORS)
@pytest.mark.parametrize("held", [bytes, bytearray, memoryview])
def test_decode_of_a_window_answers_as_binascii_of_the_window(body, held):
    before, after = b"=QU=\r\n", b"\r\n==AB"  # padding and data on both sides, outside the window
    around = before + body + after
    window = (len(before), len(before) + len(body))
    assert _outcome(lambda b: b64.decode(b, *window), held(around)) == _outcome(binascii.a2b_base64, body)


def test_decode_copies_nothing_of_the_body():
    body = b"--" + _mime_lines(os.urandom(1_000_000)) + b"--"
    tracemalloc.start()
    try:
        decoded = b64.decode(body, 2, len(body) - 2)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(decoded) == 1_000_000
    assert peak < 1_000_000 + 64 * 1024  # the decoded bytes, and no copy of the 1.35 MB of base64


_JUNK = st.sampled_from([b"\r", b"\n", b"\r\n", b" ", b"\t", b"=", b"==", b"!", b"-", b"\x00", b"\xff", b"."])


@st.composite
def _damaged(draw) -> bytes:
    raw = draw(st.binary(max_size=400))
    body = bytearray(_mime_lines(raw) if draw(st.booleans()) else base64.b64encode(raw))
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(body)))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        if action == "insert":
            body[at:at] = draw(_JUNK)
        elif body:
            at = min(at, len(body) - 1)
            if action == "delete":
                del body[at]
            else:
                body[at] = draw(st.integers(0, 255))
    return bytes(body)


@FUZZ
@given(_damaged())
def test_damaged_bodies_decode_as_binascii(body):
    assert _outcome(b64.decode, body) == _outcome(binascii.a2b_base64, body)
    assert _outcome(b64.decode, memoryview(body)) == _outcome(binascii.a2b_base64, body)


@FUZZ
@given(st.binary(max_size=80) | st.text(alphabet="ABCDEFabcdef0123456789+/=\r\n \t!", max_size=80).map(str.encode))
def test_arbitrary_bytes_decode_as_binascii(body):
    assert _outcome(b64.decode, body) == _outcome(binascii.a2b_base64, body)


@pytest.mark.parametrize("size", [0, 1, 2, 3, 56, 57, 58, 114, 1000, 10_000])
def test_lines_are_rfc2045_lines(size):
    data = os.urandom(size)
    encoded = b64.lines(data)
    assert encoded == mime.base64_lines(data)
    assert encoded.endswith(b"\r\n")
    assert all(len(line) <= 76 for line in encoded.split(b"\r\n"))
    assert binascii.a2b_base64(encoded) == data
    if size:  # the lines the standard library writes, with CRLF
        assert encoded == _mime_lines(data)
