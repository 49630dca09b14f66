"""gateway.core.der as a specification: a BER/DER walk that is linear, bounded and never raises
anything but a typed DerError, whatever the bytes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core import RejectReason
from gateway.core.der import MAX_NESTING, DerError, Tlv, Walk
from gateway.core.limits import DER_BYTES_PER_STEP, DER_STEPS_FLOOR, MAX_BER_INDEFINITE

NULL = b"\x05\x00"


def indefinite(content: bytes, tag: int = 0x30) -> bytes:
    return bytes([tag, 0x80]) + content + b"\x00\x00"


def nested(depth: int, leaves: int) -> bytes:
    """``depth`` indefinite SEQUENCEs around ``leaves`` NULLs: the shape that made the old walk
    re-read every leaf once per level."""
    blob = NULL * leaves
    for _ in range(depth):
        blob = indefinite(blob)
    return blob


def walk_everything(walk: Walk, element: Tlv) -> int:
    """Visit every element as a caller listing children level by level would; the element count."""
    count = 1
    if element.constructed:
        for child in walk.children(element):
            count += walk_everything(walk, child)
    return count


# ------------------------------------------------------------------ linear time


@pytest.mark.parametrize("depth", [1, 8, 30], ids=lambda d: f"depth-{d}")
def test_each_header_is_read_a_bounded_number_of_times_however_deep(depth):
    walk = Walk(nested(depth, 1000), budget=10**9)
    elements = walk_everything(walk, walk.top())
    assert elements == depth + 1000
    # Each header once to find the indefinite ends, once more when listed.
    assert walk.steps <= 2 * elements + 1


def test_steps_grow_linearly_with_the_input():
    def steps(leaves: int) -> int:
        walk = Walk(nested(30, leaves), budget=10**9)
        walk_everything(walk, walk.top())
        return walk.steps

    small, large = steps(2_000), steps(8_000)
    assert 3.8 < large / small < 4.2


def test_an_indefinite_end_is_found_once_and_remembered():
    walk = Walk(nested(10, 100), budget=10**9)
    walk.top()
    first = walk.steps
    walk.top()
    assert walk.steps == first + 1


def test_constructed_octet_strings_nested_deep_are_read_once():
    piece = b"\x04\x10" + b"x" * 16
    blob = piece * 500
    for _ in range(20):
        blob = indefinite(blob, 0x24)
    walk = Walk(blob, budget=10**9)
    chunks = list(walk.octet_chunks(walk.top(), at_most=500))
    assert b"".join(chunks) == b"x" * 8000
    assert walk.steps <= 2 * (500 + 20) + 1


# ------------------------------------------------------------------ bounded


def test_a_walk_is_refused_once_it_costs_more_steps_than_its_size_allows():
    blob = indefinite(NULL * 100_000)  # 200 KB of two-byte elements
    walk = Walk(blob)
    budget = DER_STEPS_FLOOR + len(blob) // DER_BYTES_PER_STEP
    with pytest.raises(DerError) as caught:
        walk.top()
    assert caught.value.reason is RejectReason.TOO_LARGE
    assert walk.steps == budget + 1


def test_nesting_below_an_indefinite_element_is_bounded():
    with pytest.raises(DerError) as caught:
        Walk(nested(MAX_NESTING + 5, 1)).top()
    assert caught.value.reason is RejectReason.TOO_DEEP
    Walk(nested(MAX_NESTING, 1)).top()


def test_remembered_ends_are_bounded():
    blob = indefinite(indefinite(b"") * (MAX_BER_INDEFINITE + 1))
    with pytest.raises(DerError) as caught:
        Walk(blob).top()
    assert caught.value.reason is RejectReason.TOO_LARGE


def test_take_refuses_the_first_child_beyond_the_bound_before_yielding_it():
    walk = Walk(b"\x30\x06" + NULL * 3)
    seen = []
    with pytest.raises(DerError) as caught:
        for child in walk.take(walk.top(), 2, "things"):
            seen.append(child)
    assert len(seen) == 2
    assert caught.value.reason is RejectReason.TOO_LARGE
    assert "more than 2 things" in caught.value.detail


def test_octet_string_pieces_are_counted_as_they_are_met():
    blob = indefinite(b"\x04\x01x" * 10, 0x24)
    walk = Walk(blob)
    assert len(list(walk.octet_chunks(walk.top(), 10))) == 10
    with pytest.raises(DerError) as caught:
        list(walk.octet_chunks(walk.top(), 9))
    assert caught.value.reason is RejectReason.TOO_LARGE


# ------------------------------------------------------------------ shapes


@pytest.mark.parametrize(
    ("blob", "least", "most"),
    [
        (b"\x30\x00", 1, 2),
        (b"\x30\x02" + NULL, 2, 2),
        (b"\x30\x06" + NULL * 3, 1, 2),
        (b"\x05\x00", 0, 1),
    ],
    ids=["empty", "missing", "extra", "primitive"],
)
def test_fixed_shapes_refuse_missing_extra_and_primitive(blob, least, most):
    walk = Walk(blob)
    with pytest.raises(DerError) as caught:
        walk.fields(walk.top(), least, most, "a thing")
    assert caught.value.reason is RejectReason.MALFORMED


MALFORMED_HEADERS = {
    "empty": b"",
    "one-byte": b"\x30",
    "high-tag-number": b"\x1f\x01\x00",
    "indefinite-primitive": b"\x04\x80\x00\x00",
    "length-of-five-bytes": b"\x04\x85\x00\x00\x00\x00\x01",
    "claims-more-than-there-is": b"\x04\x05abc",
    "no-end-of-contents": b"\x30\x80\x05\x00",
    "child-runs-past-parent": b"\x30\x02\x04\x05abcde",
    "indefinite-child-past-parent": b"\x30\x03\x30\x80\x00\x00",
}


@pytest.mark.parametrize("blob", MALFORMED_HEADERS.values(), ids=MALFORMED_HEADERS.keys())
def test_malformed_headers_are_typed(blob):
    walk = Walk(blob)
    with pytest.raises(DerError) as caught:
        walk_everything(walk, walk.top())
    assert caught.value.reason is RejectReason.MALFORMED


def test_a_remembered_end_is_still_held_to_the_parent_that_asks():
    walk = Walk(b"\x30\x03\x30\x80\x00\x00")
    walk.read(2, 6)  # remembered while read with room to end
    with pytest.raises(DerError):
        list(walk.children(walk.top()))


@pytest.mark.parametrize(
    ("content", "dotted"),
    [(b"\x2a\x86\x48\x86\xf7\x0d\x01\x07\x02", "1.2.840.113549.1.7.2"), (b"\x88\x37", "2.999"), (b"\x00", "0.0")],
    ids=["signed-data", "large-first-arc", "zero"],
)
def test_object_identifiers(content, dotted):
    walk = Walk(b"\x06" + bytes([len(content)]) + content)
    assert walk.oid(walk.top()) == dotted


@pytest.mark.parametrize(
    "content", [b"", b"\x86", b"\x01" * 65, b"\x2a\x80\x01"], ids=["empty", "truncated", "too-long", "padded-arc"]
)
def test_malformed_object_identifiers(content):
    walk = Walk(b"\x06" + bytes([len(content)]) + content)
    with pytest.raises(DerError):
        walk.oid(walk.top())


@pytest.mark.parametrize("blob", [b"\x02\x00", b"\x04\x01\x00", b"\x02\x41" + b"\x01" * 65], ids=["empty", "not-integer", "huge"])
def test_malformed_integers(blob):
    walk = Walk(blob)
    with pytest.raises(DerError):
        walk.integer(walk.top())


# ------------------------------------------------------------------ never raises


@settings(max_examples=500)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_give_a_walk_or_a_typed_error(blob):
    walk = Walk(blob)
    try:
        top = walk.top()
        walk_everything(walk, top)
        if top.tag & 0xDF == 0x04:
            list(walk.octet_chunks(top, 100))
    except DerError as exc:
        assert isinstance(exc.reason, RejectReason) and exc.detail
