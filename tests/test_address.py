"""The strict RFC 5322 address parser (gateway/core/address.py) as a specification.

From fields are read strictly (one reading, or a typed refusal); To and Cc
tolerantly (what cannot be read is skipped). Both in linear time, whatever
the bytes.
"""

from __future__ import annotations

import time
from email.headerregistry import HeaderRegistry

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.address import (
    MAX_LISTED,
    Mailbox,
    Unreadable,
    parse_address_list,
    parse_mailbox_list,
)

from .mutations import FUZZ

# value: the addresses read, or None when the From is unreadable
STRICT: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "bare": ("alice@a.test", ("alice@a.test",)),
    "lower-cased": ("Alice@A.Test", ("alice@a.test",)),
    "name-addr": ("Alice Example <alice@a.test>", ("alice@a.test",)),
    "quoted-display-name-holding-an-address": ('"bob@b.test" <alice@a.test>', ("alice@a.test",)),
    "comment-holding-an-address": ("alice@a.test (bob@b.test)", ("alice@a.test",)),
    "nested-comments": ("alice(x(y(z)))@a.test", ("alice@a.test",)),
    "obsolete-spaces-around-dots": ("john . doe @ example . com", ("john.doe@example.com",)),
    "quoted-local-part": ('"john doe"@example.com', ('"john doe"@example.com',)),
    "quoted-local-part-that-needs-no-quotes": ('"john"@example.com', ("john@example.com",)),
    "domain-literal": ("a@[192.0.2.1]", ("a@[192.0.2.1]",)),
    "utf8-display-name": ("José <jose@a.test>", ("jose@a.test",)),
    "two-mailboxes": ("a@a.test, b@b.test", ("a@a.test", "b@b.test")),
    "empty-list-elements": (", a@a.test, ,", ("a@a.test",)),
    "two-at-signs": ("a@b@c", None),
    "unquoted-address-as-display-name": ("alice@a.test <mallory@evil.test>", None),
    "encoded-word-around-an-address": ("=?utf-8?q?alice@a.test?= <mallory@evil.test>", None),
    "encoded-word-alone": ("=?utf-8?b?YWxpY2VAYS50ZXN0?=", None),
    "display-name-only": ("Alice", None),
    "group": ("friends: a@a.test;", None),
    "source-route": ("<@relay.test:alice@a.test>", None),
    "unclosed-angle": ("Alice <alice@a.test", None),
    "unclosed-quote": ('"Alice <alice@a.test>', None),
    "unclosed-comment": ("alice@a.test (x", None),
    "comments-too-deep": ("alice@a.test ((((x))))", None),
    "words-without-a-dot": ("alice smith@a.test", None),
    "double-dot": ("alice..smith@a.test", None),
    "trailing-dot": ("alice.@a.test", None),
    "non-ascii-address": ("josé@a.test", None),
    "control-character": ("alice\x01@a.test", None),
    "bare-cr": ("mallory@evil.test\ralice@a.test", None),
    "too-long": ("a" * 250 + "@a.test", None),
    "empty": ("", None),
    "only-commas": (" , ,", None),
}


@pytest.mark.parametrize(("value", "expected"), list(STRICT.values()), ids=list(STRICT))
def test_from_is_read_strictly(value, expected):
    result = parse_mailbox_list(value)
    if expected is None:
        assert isinstance(result, Unreadable), result
        assert result.detail and 0 <= result.offset <= len(value)
    else:
        assert not isinstance(result, Unreadable), result
        assert tuple(m.address for m in result) == expected


TOLERANT = {
    "skips-the-unreadable": ("a@a.test, not an address, b@b.test", ("a@a.test", "b@b.test")),
    "skips-an-address-with-a-display-name-that-is-an-address": (
        "alice@a.test <mallory@evil.test>, b@b.test",
        ("b@b.test",),
    ),
    "groups-flattened": ("team: a@a.test, b@b.test;, c@c.test", ("a@a.test", "b@b.test", "c@c.test")),
    "empty-group": ("undisclosed-recipients:;", ()),
    "stops-at-an-unclosed-quote": ('a@a.test, "b@b.test, c@c.test', ("a@a.test",)),
    "comma-inside-quotes-is-not-a-separator": ('"Doe, John" <j@a.test>, k@a.test', ("j@a.test", "k@a.test")),
    "control-character-spoils-one-element": ("a@a.test, b\x01@b.test, c@c.test", ("a@a.test", "c@c.test")),
}


@pytest.mark.parametrize(("value", "expected"), list(TOLERANT.values()), ids=list(TOLERANT))
def test_to_and_cc_are_read_tolerantly(value, expected):
    assert tuple(m.address for m in parse_address_list(value)) == expected


def test_display_names_are_kept_undecoded_and_unquoted():
    (mailbox,) = parse_address_list('"Doe, \\"J\\"" (work) <j@a.test>')
    assert mailbox == Mailbox("j@a.test", '"Doe, \\"J\\"" (work)')
    assert mailbox.display_name == 'Doe, "J"'
    (encoded,) = parse_address_list("=?utf-8?q?Jos=C3=A9?= <j@a.test>")
    assert encoded.display_name == "=?utf-8?q?Jos=C3=A9?="


def test_at_most_stops_reading():
    many = ", ".join(f"u{i}@a.test" for i in range(5000))
    assert len(parse_mailbox_list(many, at_most=1)) == 2  # type: ignore[arg-type]
    assert len(parse_address_list(many)) == MAX_LISTED


# ------------------------------------------------------------------ agreement with a standard parser

_ATOM = st.text("abcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-/=?^_`{|}~", min_size=1, max_size=8)
_DOT_ATOM = st.lists(_ATOM, min_size=1, max_size=3).map(".".join)
_QUOTED_TEXT = st.text("abc xyz.@,<>()[]:;", min_size=1, max_size=10)


@st.composite
def _mailbox(draw) -> tuple[str, str]:
    """A well-formed mailbox, and its addr-spec as the standard library renders it."""
    local = draw(_DOT_ATOM)
    domain = draw(st.lists(st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=8), min_size=1, max_size=3).map(".".join))
    addr = f"{local}@{domain}"
    form = draw(st.sampled_from(["bare", "angle", "atoms", "quoted", "comment"]))
    if form == "bare":
        return addr, addr
    if form == "angle":
        return f"<{addr}>", addr
    if form == "atoms":
        return f"{draw(_ATOM)} {draw(_ATOM)} <{addr}>", addr
    if form == "quoted":
        return f'"{draw(_QUOTED_TEXT)}" <{addr}>', addr
    return f"{addr} ({draw(_QUOTED_TEXT).replace('(', '').replace(')', '')})", addr


@FUZZ
@given(_mailbox())
def test_a_well_formed_mailbox_reads_as_the_standard_library_reads_it(case):
    value, addr = case
    header = HeaderRegistry()("From", value)
    (standard,) = header.addresses
    assert standard.addr_spec == addr
    ours = parse_mailbox_list(value)
    assert not isinstance(ours, Unreadable), (value, ours)
    assert tuple(m.address for m in ours) == (addr.lower(),)


@FUZZ
@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=200))
def test_any_text_is_read_or_refused_never_raises(value):
    strict = parse_mailbox_list(value)
    assert isinstance(strict, Unreadable | tuple)
    tolerant = parse_address_list(value)
    if not isinstance(strict, Unreadable):
        assert tolerant == strict  # what the strict reading accepts, the tolerant one reads the same


@FUZZ
@given(st.text(alphabet='a@.<>,;:"()\\[] \t=?', max_size=300))
def test_the_syntax_characters_alone_never_raise(value):
    parse_mailbox_list(value)
    parse_address_list(value)


# ------------------------------------------------------------------ linear time

HOSTILE = ["@", "<", "@<", "a@", "a.", '"', '"a"', "(", "()", "(a)b ", "a,", "a@b,", "<a@b>,", ". ", ",", "a a ", "\\", ":"]


def _best(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


@pytest.mark.parametrize("pattern", HOSTILE, ids=[repr(p) for p in HOSTILE])
def test_a_field_costs_in_proportion_to_its_size(pattern):
    """Reading 32 small fields and one 32 times larger cost the same if the parser is
    linear (quadratic: 32 times more). Compared by ratio, not by a wall-clock limit.
    The From is read as the core reads it (at most one mailbox), To and Cc whole."""
    small = pattern * (2048 // len(pattern))
    big = pattern * (32 * 2048 // len(pattern))

    def read_small():
        for _ in range(32):
            parse_mailbox_list(small, at_most=1)
            parse_address_list(small)

    def read_big():
        parse_mailbox_list(big, at_most=1)
        parse_address_list(big)

    assert _best(read_big) < 6 * _best(read_small) + 0.002


@pytest.mark.slow
@settings(FUZZ, max_examples=5000)
@given(_mailbox())
def test_a_well_formed_mailbox_reads_as_the_standard_library_reads_it_at_length(case):
    test_a_well_formed_mailbox_reads_as_the_standard_library_reads_it.hypothesis.inner_test(case)


_ATEXT_ASCII = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~")


@pytest.mark.parametrize(("name", "prefix", "member"), [
    # RFC 5322 3.2.3 atext, and every character beyond ASCII (RFC 6532 3.2)
    ("_ATEXT", "", lambda c: c in _ATEXT_ASCII or ord(c) >= 0x80),
    # the words of a display name: atext, dots, spaces and tabs
    ("_WORD_TEXT", "", lambda c: c in _ATEXT_ASCII or c in ". \t" or ord(c) >= 0x80),
    # RFC 5322 3.2.1 quoted-pair: a backslash, then VCHAR, WSP, or beyond ASCII
    ("_PAIR", "\\", lambda c: c in " \t" or 0x21 <= ord(c) <= 0x7E or ord(c) >= 0x80),
])
def test_the_grammars_character_classes_hold_exactly_the_rfcs_characters(name, prefix, member):
    import re

    from gateway.core import address

    pattern = re.compile(getattr(address, name))
    wrong = [hex(cp) for cp in range(0x110000)
             if bool(pattern.fullmatch(prefix + chr(cp))) != member(chr(cp))]
    assert wrong == []
