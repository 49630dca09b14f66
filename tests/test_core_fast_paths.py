"""The core's fast paths (plain Content-Type parameters, simple addresses, whole header
sections in one match) answer exactly as the full, strict readers they stand in front
of, or stand aside: each property compares the two on the same input, the full reader
obtained by switching the fast path off."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core import address, headervalues, mime
from gateway.core.limits import Limits


@contextmanager
def _switched_off(module: Any, name: str, replacement: Any) -> Iterator[None]:
    saved = getattr(module, name)
    setattr(module, name, replacement)
    try:
        yield
    finally:
        setattr(module, name, saved)


def _both(fast: Callable[[], Any], module: Any, name: str, replacement: Any) -> tuple[Any, Any]:
    first = _outcome(fast)
    with _switched_off(module, name, replacement):
        second = _outcome(fast)
    return first, second


def _outcome(fn: Callable[[], Any]) -> Any:
    try:
        return ("ok", fn())
    except Exception as error:  # the same refusal, with the same words
        return ("error", type(error).__name__, str(error), getattr(error, "too_deep", None),
                getattr(error, "too_large", None))


def _joined(atoms: list[str]) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(atoms), max_size=14).map("".join)


PARAMETER_ATOMS = ["text/plain", "multipart/mixed", "TEXT/Plain", " text/xml ", "attachment", ";", "; ", " ", "\t",
                   "=", '"', "\\", "boundary", "Boundary", "name", "charset", "x", "utf-8", '"a b"', '"a\\"b"', "*",
                   "*0", "*1*", "''", "%E2%82%AC", "é", "\x00", "\x7f", "\r\n", "==", '""', "a;b", "filename",
                   " = ", "=?utf-8?q?x?=", "(c)", ",", "/", "\x1f", "\x85", "\u00a0", "name=x", 'name="q"']


@settings(max_examples=3000)
@given(head=st.sampled_from(["text/plain;", "multipart/mixed; ", "attachment;", ""]),
       tail=_joined(PARAMETER_ATOMS), default=st.sampled_from(["text/plain", ""]))
def test_plain_parameters_read_as_the_full_reader_reads_them(head, tail, default):
    fast, full = _both(lambda: headervalues.parse_parameters(head + tail, default),
                       headervalues, "_plain_parameters", lambda *_: None)
    assert fast == full


ADDRESS_ATOMS = ["alice", "a", "Bob", ".", "..", "@", "@", "<", ">", ",", ";", " ", "\t", "a.test", "b.test",
                 "x" * 70, '"', "(", ")", "\\", ":", "[", "]", "é", "\u00a0", "=?utf-8?q?x?=", "Alice Smith",
                 "+tag", "-", "'", "ALICE", "\x00", "\x85", "alice@a.test", "<bob@b.test>", "Bob <b@b.test>"]


@settings(max_examples=3000)
@given(value=_joined(ADDRESS_ATOMS), at_most=st.sampled_from([None, 0, 1, 2, 5]))
def test_simple_mailboxes_read_as_the_full_reader_reads_them(value, at_most):
    fast, full = _both(lambda: address.parse_mailbox_list(value, at_most), address, "_simple", lambda *_: None)
    assert fast == full


@settings(max_examples=3000)
@given(value=_joined(ADDRESS_ATOMS), at_most=st.sampled_from([0, 1, 2, 1000]))
def test_simple_address_lists_read_as_the_full_reader_reads_them(value, at_most):
    fast, full = _both(lambda: address.parse_address_list(value, at_most), address, "_simple", lambda *_: None)
    assert fast == full


HEADER_ATOMS = [b"From", b"To", b": ", b":", b"a@b.c", b"\r\n", b"\r\n", b"\r\n ", b"\r\n\t", b" ", b"\t",
                b"\xc3\xa9", b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98", b"\xff", b"\x80", b"\x0b", b"\x0c", b"\x1f",
                b"\xc2\x85", b"\xc2\xa0", b"\r", b"\n", b"x y", b"Content-Type", b"\r\n\r\n", b"\x00", b"(", b"\x85",
                b"Subject: hello\r\n", b"X: y\r\n"]


class _NeverMatches:
    @staticmethod
    def fullmatch(_text: str) -> None:
        return None


def _entity(raw: bytes, start: int) -> Any:
    e = mime.parse_entity(raw, Limits(), start)
    return e.fields, e.start, e.end, e.header_start


@settings(max_examples=3000)
@given(parts=st.lists(st.sampled_from(HEADER_ATOMS), max_size=16), start=st.sampled_from([0, 0, 1]),
       body=st.booleans())
def test_header_sections_read_in_one_match_as_field_by_field(parts, start, body):
    raw = b"".join(parts) + (b"\r\n\r\nbody" if body else b"")
    fast, full = _both(lambda: _entity(raw, start), mime, "_FIELDS_TEXT", _NeverMatches)
    assert fast == full
