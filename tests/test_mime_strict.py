"""MIME read one way, in linear time (issue 7 sections 1 and 3).

Header sections are refused where another reader would see other fields;
parameters (RFC 2045, RFC 2231) and encoded words (RFC 2047) are read by the
core's own linear readers, which agree with the standard library on
well-formed values.
"""

from __future__ import annotations

import email.message
import email.utils
import time
from email.policy import compat32

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.headervalues import MAX_ENCODED_TEXT, decode_words, parse_parameters
from gateway.core.limits import Limits
from gateway.core.mime import MimeError, own_lines, parse_entity

from .mutations import FUZZ

# ------------------------------------------------------------------ header sections

HEADS = {
    "crlf": (b"From: a@a.test\r\nTo: b@b.test\r\n\r\nbody", [("From", "a@a.test"), ("To", "b@b.test")]),
    "folded": (b"Subject: one\r\n two\r\n\tthree\r\n\r\n", [("Subject", "one two three")]),
    "bare-cr-in-a-field": (b"From: m@evil.test\rFrom: a@a.test\r\n\r\n", None),
    "bare-lf-among-crlf": (b"From: m@evil.test\r\nX: 1\nFrom: a@a.test\r\n\r\n", None),
    "blank-line-of-bare-lf": (b"From: a@a.test\r\n\nFrom: m@evil.test\r\n\r\n", None),
    "space-before-the-colon": (b"From : m@evil.test\r\n\r\n", None),
    "no-colon": (b"From m@evil.test Mon\r\n\r\n", None),
    "non-ascii-field-name": ("Fröm: m@evil.test\r\n\r\n".encode(), None),
    "continuation-first": (b" From: m@evil.test\r\n\r\n", None),
}


@pytest.mark.parametrize(("raw", "fields"), list(HEADS.values()), ids=list(HEADS))
def test_header_sections_are_read_one_way_or_refused(raw, fields):
    if fields is None:
        with pytest.raises(MimeError):
            parse_entity(raw, Limits())
    else:
        assert list(parse_entity(raw, Limits()).fields) == fields


def test_bare_lf_in_a_body_is_not_judged():
    entity = parse_entity(b"Content-Type: application/octet-stream\r\n\r\n\n\r\x00\n", Limits())
    assert entity.body == b"\n\r\x00\n"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"From: a\nTo: b\n\nhi\n", b"From: a\r\nTo: b\r\n\r\nhi\r\n"),  # no CR at all: one reading
        (b"From: a\r\nTo: b\r\n\r\nhi\n", b"From: a\r\nTo: b\r\n\r\nhi\n"),  # kept, and judged as it is
    ],
    ids=["all-lf-converted", "mixed-kept"],
)
def test_decrypted_content_is_judged_on_its_own_bytes(content, expected):
    assert bytes(own_lines(content)) == expected


def test_the_header_section_is_bounded_before_it_is_read():
    raw = b"X: " + b"a" * 5000 + b"\r\n\r\nbody"
    with pytest.raises(MimeError) as caught:
        parse_entity(raw, Limits(max_header_bytes=4096))
    assert caught.value.too_large


def _best(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def test_many_continuation_lines_cost_in_proportion():
    """Unfolding by concatenation cost the square of the number of lines."""
    limits = Limits(max_header_bytes=10 * 1024 * 1024)
    small = b"Subject: x\r\n" + b" y\r\n" * 2_000 + b"\r\n"
    big = b"Subject: x\r\n" + b" y\r\n" * 64_000 + b"\r\n"
    assert _best(lambda: parse_entity(big, limits)) < 6 * _best(
        lambda: [parse_entity(small, limits) for _ in range(32)]
    ) + 0.002


# ------------------------------------------------------------------ parameters

PARAMETERS = {
    "simple": ("text/plain; charset=utf-8", ("text/plain", {"charset": "utf-8"})),
    "quoted-and-spaced": ('Text/Plain ; Charset = "us-ascii" ; format=flowed', ("text/plain", {"charset": "us-ascii", "format": "flowed"})),
    "quoted-pair": ('application/x; name="a\\"b.txt"', ("application/x", {"name": 'a"b.txt'})),
    "rfc2231-charset-and-language": (
        "application/x-stuff; title*=us-ascii'en-us'This%20is%20%2A%2A%2Afun%2A%2A%2A",
        ("application/x-stuff", {"title": "This is ***fun***"}),
    ),
    "rfc2231-continuations": (
        'message/external-body; access-type=URL; URL*0="ftp://"; URL*1="cs.utk.edu/pub/moore/bulk-mailer/bulk-mailer.tar"',
        (
            "message/external-body",
            {"access-type": "URL", "url": "ftp://cs.utk.edu/pub/moore/bulk-mailer/bulk-mailer.tar"},
        ),
    ),
    "rfc2231-mixed-sections": (
        "attachment; filename*0*=utf-8''%E2%82%AC; filename*1=\" rates\"; filename*2*=%2Epdf",
        ("attachment", {"filename": "€ rates.pdf"}),
    ),
    "rfc2231-out-of-order": ("text/plain; a*1=x; a*0=y", ("text/plain", {"a": "yx"})),
    "extended-form-wins": ("text/plain; filename=plain.txt; filename*=utf-8''%C3%A9.txt", ("text/plain", {"filename": "é.txt"})),
    "unknown-charset": ("text/plain; a*=x-nothing''%41", ("text/plain", {"a": "A"})),
    "boundary-twice-is-absent": ('multipart/mixed; boundary="a"; boundary="b"', ("multipart/mixed", {})),
    "section-twice-is-absent": ("text/plain; a*0=x; a*0=y; c=1", ("text/plain", {"c": "1"})),
    "unreadable-parameter-skipped": ("text/plain; bad; x=1", ("text/plain", {"x": "1"})),
    "unclosed-quote-ends-reading": ('text/plain; a=1; b="open; c=2', ("text/plain", {"a": "1"})),
    "not-a-type": ("nonsense; charset=x", ("text/plain", {"charset": "x"})),
}


@pytest.mark.parametrize(("value", "expected"), list(PARAMETERS.values()), ids=list(PARAMETERS))
def test_parameters(value, expected):
    default = "" if value.startswith("attachment") else "text/plain"
    assert parse_parameters(value, default) == expected


_TOKEN = st.text("abcdefghijklmnopqrstuvwxyz0123456789-.", min_size=1, max_size=10)
_VALUE = st.text("abcdefghijklmnopqrstuvwxyz0123456789-. ;=/", min_size=1, max_size=20)


@FUZZ
@given(st.dictionaries(_TOKEN, _VALUE, min_size=1, max_size=6))
def test_well_formed_parameters_read_as_the_standard_library_reads_them(params):
    value = "text/plain; " + "; ".join(f'{k}="{v}"' for k, v in params.items())
    message = email.message.Message(policy=compat32)
    message["Content-Type"] = value
    standard = {k.lower(): email.utils.collapse_rfc2231_value(v) for k, v in (message.get_params() or [])[1:]}
    assert parse_parameters(value) == ("text/plain", standard)


@FUZZ
@given(st.text(max_size=300))
def test_any_parameter_text_is_read_without_raising(value):
    ctype, params = parse_parameters(value)
    assert isinstance(ctype, str) and isinstance(params, dict)


@FUZZ
@given(st.text(alphabet="ab;=*\"'\\% 0123", max_size=300))
def test_parameter_syntax_alone_never_raises(value):
    parse_parameters("text/plain;" + value)


HOSTILE_PARAMETERS = ["; a*0*=x", ";", '; a="', '"', "; a*1=x", '; a="\\', '="', "; a", "; a*=''%41", "; a*999*=%4"]


@pytest.mark.parametrize("pattern", HOSTILE_PARAMETERS, ids=[repr(p) for p in HOSTILE_PARAMETERS])
def test_parameters_cost_in_proportion_to_their_size(pattern):
    small = "text/plain" + pattern * (10_000 // len(pattern))
    big = "text/plain" + pattern * (1_000_000 // len(pattern))
    assert _best(lambda: parse_parameters(big)) < 6 * _best(lambda: [parse_parameters(small) for _ in range(100)]) + 0.002


# ------------------------------------------------------------------ encoded words

WORDS = {
    "q": ("=?utf-8?q?=C3=9Cberweisung?=", "Überweisung"),
    "b": ("=?utf-8?b?SGFsbG8=?=", "Hallo"),
    "space-between-words-dropped": ("=?utf-8?b?SGFsbG8=?= =?utf-8?q?_Welt?=", "Hallo Welt"),
    "latin-1": ("caf=?iso-8859-1?q?=E9?=", "café"),
    "language": ("=?utf-8*en?q?hi?=", "hi"),
    "unknown-charset-left-as-is": ("a =?x-unknown?q?a?= b", "a =?x-unknown?q?a?= b"),
    "not-a-charset-left-as-is": ("=?punycode?q?abc?=", "=?punycode?q?abc?="),
    "bad-base64-left-as-is": ("=?utf-8?b?@@@?=", "=?utf-8?b?@@@?="),
    "plain": ("no words here", "no words here"),
}


@pytest.mark.parametrize(("value", "expected"), list(WORDS.values()), ids=list(WORDS))
def test_encoded_words(value, expected):
    assert decode_words(value) == expected


def test_long_text_is_left_undecoded():
    value = "=?utf-8?q?a?= " * (MAX_ENCODED_TEXT // 10)
    assert decode_words(value) == value


@pytest.mark.parametrize("pattern", ["=?", "=?a?q?", "=?utf-8?q?a?= ", "=?utf-8?b?YQ==?="])
def test_encoded_words_cost_in_proportion(pattern):
    small = pattern * (MAX_ENCODED_TEXT // 32 // len(pattern))
    big = pattern * (MAX_ENCODED_TEXT // len(pattern))
    assert _best(lambda: decode_words(big)) < 6 * _best(lambda: [decode_words(small) for _ in range(32)]) + 0.002
