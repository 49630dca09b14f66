"""MAIL FROM and RCPT TO read without a server: paths.py (the path) and commands.py (the parameters).

The reader is checked three ways: vectors for each form RFC 5321 4.1.2
allows (and the ones it refuses); generated paths built from the grammar,
which it must read back; and arbitrary arguments, where it must agree with
a reference reading (aiosmtpd's, the ``email`` package's RFC 5322 parser,
which the edge used before) or refuse. ``simple_path``, the quick reading,
must answer as ``read_path`` does whenever it answers.
"""

from __future__ import annotations

import pytest
from aiosmtpd.smtp import SMTP
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.smtp.commands import Mail, read_mail, read_rcpt
from gateway.smtp.paths import read_path, simple_path
from gateway.smtp.replies import (
    BODY_SYNTAX,
    MAIL_SYNTAX,
    MALFORMED_ADDRESS,
    RCPT_SYNTAX,
    TOO_BIG,
    UNKNOWN_PARAMETER,
)


def _reference(argument: str) -> tuple[str | None, str | None]:
    """aiosmtpd 1.4.6's reading of a MAIL/RCPT argument (``email``'s get_angle_addr): a test-only reference."""
    return SMTP._getaddr(SMTP.__new__(SMTP), argument)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("argument", "reverse", "expected"),
    [
        pytest.param("<alice@sender.test>", True, ("alice@sender.test", ""), id="plain"),
        pytest.param("<a.b+c@d.e> SIZE=10 BODY=8BITMIME", True, ("a.b+c@d.e", "SIZE=10 BODY=8BITMIME"),
                     id="parameters"),
        pytest.param("<>", True, ("", ""), id="null-reverse-path"),
        pytest.param("<> SIZE=1", True, ("", "SIZE=1"), id="null-with-parameters"),
        pytest.param("<>", False, None, id="null-forward-path"),
        pytest.param("<@relay.test:bob@b.test>", False, ("bob@b.test", ""), id="source-route"),
        pytest.param("<@r1.test,@r2.test:bob@b.test>", False, ("bob@b.test", ""), id="source-route-two-hops"),
        pytest.param("<@r1.test,r2.test:bob@b.test>", False, None, id="source-route-hop-without-at"),
        pytest.param("<@:bob@b.test>", False, None, id="source-route-empty-hop"),
        pytest.param('<"john smith"@b.test>', True, ('"john smith"@b.test', ""), id="quoted-local-part"),
        pytest.param('<"john"@b.test>', True, ("john@b.test", ""), id="quoted-dot-string-unquoted"),
        pytest.param('<"a\\"b"@b.test>', True, ('"a\\"b"@b.test', ""), id="quoted-pair"),
        pytest.param('<"a>b"@b.test>', True, ('"a>b"@b.test', ""), id="angle-in-quotes"),
        pytest.param('<"unterminated@b.test>', True, None, id="unterminated-quote"),
        pytest.param("<bob@[192.0.2.1]>", False, ("bob@[192.0.2.1]", ""), id="ipv4-literal"),
        pytest.param("<bob@[192.0.2.256]>", False, None, id="ipv4-literal-out-of-range"),
        pytest.param("<bob@[IPv6:2001:db8::1]>", False, ("bob@[IPv6:2001:db8::1]", ""), id="ipv6-literal"),
        pytest.param("<bob@[IPv6:2001:db8::g]>", False, None, id="ipv6-literal-bad"),
        pytest.param("<bob@[x-tag:some.thing]>", False, ("bob@[x-tag:some.thing]", ""), id="general-literal"),
        pytest.param("<Postmaster>", False, ("Postmaster", ""), id="postmaster"),
        pytest.param("<postmaster>", True, None, id="postmaster-is-no-reverse-path"),
        pytest.param("alice@sender.test", True, ("alice@sender.test", ""), id="no-brackets"),
        pytest.param("alice@sender.test SIZE=5", True, ("alice@sender.test", "SIZE=5"), id="no-brackets-params"),
        pytest.param("<alice@@sender..test>", True, None, id="double-at"),
        pytest.param("<alice@sender.test", True, None, id="unclosed"),
        pytest.param("<alice@sender.test>SIZE=1", True, None, id="parameter-without-space"),
        pytest.param("<alice (comment)@sender.test>", True, None, id="comment"),
        pytest.param("<alice@sender.test> (comment)", True, ("alice@sender.test", "(comment)"),
                     id="comment-after-is-a-parameter"),
        pytest.param("<.alice@sender.test>", True, None, id="leading-dot"),
        pytest.param("<alice@>", True, None, id="no-domain"),
        pytest.param("<@sender.test>", True, None, id="no-local-part"),
    ],
)
def test_paths(argument: str, reverse: bool, expected: tuple[str, str] | None) -> None:
    assert read_path(argument, reverse=reverse) == expected


_ATOM = st.text(alphabet="aZ9-_!{+=", min_size=1, max_size=6)
_DOT_ATOM = st.lists(_ATOM, min_size=1, max_size=3).map(".".join)
_QUOTED_CHAR = st.sampled_from(list('ab .@<>,:"\\'))
_QUOTED = st.lists(_QUOTED_CHAR, max_size=6).map(
    lambda chars: '"' + "".join("\\" + c if c in '"\\' else c for c in chars) + '"'
)
_LITERAL = st.sampled_from(["[192.0.2.1]", "[IPv6:::1]", "[IPv6:2001:db8::5]", "[tag:xyz]"])
_ROUTE = st.lists(_DOT_ATOM, min_size=1, max_size=2).map(lambda hops: ",".join("@" + h for h in hops) + ":")


@settings(max_examples=300)
@given(
    local=st.one_of(_DOT_ATOM, _QUOTED),
    domain=st.one_of(_DOT_ATOM, _LITERAL),
    route=st.one_of(st.just(""), _ROUTE),
)
def test_every_path_of_the_grammar_is_read_back(local: str, domain: str, route: str) -> None:
    address, rest = read_path(f"<{route}{local}@{domain}> SIZE=1", reverse=False) or (None, None)
    assert rest == "SIZE=1"
    assert address is not None and address.endswith("@" + domain)
    # The local part comes back as the same mailbox, quoted only when it must be.
    read_local = address[: -len(domain) - 1]
    if read_local.startswith('"'):
        assert _unquote(read_local) == _unquote(local)
    else:
        assert read_local == (_unquote(local) if local.startswith('"') else local)


def _same_quoted(address: str, reference: str) -> bool:
    local, _, domain = address.rpartition("@")
    return reference == f"{_unquote(local)}@{domain}"


def _unquote(quoted: str) -> str:
    out, index = [], 1
    while index < len(quoted) - 1:
        if quoted[index] == "\\":
            index += 1
        out.append(quoted[index])
        index += 1
    return "".join(out)


_TEXT = st.text(alphabet='<>@.aZ9-_!"()\\ \t:[],;=', max_size=30)
_PATH = st.builds(
    lambda local, domain, gap, params: f"<{local}@{domain}>{gap}{params}",
    st.text(alphabet="aZ9.-_!{", max_size=8),
    st.text(alphabet="aZ9.-_!{", max_size=8),
    st.sampled_from(["", " ", "  ", "\t", " (note) "]),
    st.sampled_from(["", "SIZE=100", "BODY=8BITMIME SIZE=1", "(x)"]),
)


_GRAMMAR = st.builds(
    lambda route, local, domain, params: f"<{route}{local}@{domain}>{params}",
    st.one_of(st.just(""), _ROUTE),
    st.one_of(_DOT_ATOM, _QUOTED),
    st.one_of(_DOT_ATOM, _LITERAL),
    st.sampled_from(["", " SIZE=1"]),
)


@settings(max_examples=500)
@given(argument=st.one_of(_PATH, _TEXT, _GRAMMAR))
def test_the_reader_agrees_with_the_reference_or_refuses(argument: str) -> None:
    ours = read_path(argument, reverse=True)
    if ours is None or ours[0] == "":
        return
    address, rest = ours
    reference, reference_rest = _reference(argument)
    assert reference is not None, argument
    # The same mailbox; a local part that is no dot-string stays quoted here ('"."@x'), where the
    # reference gives its content bare ('.@x', which is not a valid address).
    assert address == reference or (address.startswith('"') and _same_quoted(address, reference)), argument
    # The reference takes a comment after the path as folding whitespace; here it is a (bad) parameter.
    assert rest.startswith("(") or rest.strip(" ") == (reference_rest or "").strip(" "), argument


@settings(max_examples=500)
@given(argument=st.one_of(_PATH, _TEXT))
def test_the_quick_reading_answers_as_the_reader_or_not_at_all(argument: str) -> None:
    quick = simple_path(argument)
    if quick is not None:
        assert quick == read_path(argument, reverse=True) == read_path(argument, reverse=False)


@pytest.mark.parametrize(
    ("argument", "extended", "expected"),
    [
        pytest.param("FROM:<a@b.test>", True, Mail("a@b.test"), id="plain"),
        pytest.param("from: <a@b.test>", True, Mail("a@b.test"), id="lower-case-and-space"),
        pytest.param("FROM:<>", True, Mail(""), id="null"),
        pytest.param("FROM:<a@b.test> SIZE=100 BODY=8BITMIME", True, Mail("a@b.test", 100), id="size-body"),
        pytest.param("FROM:<a@b.test> size=100 body=7bit", True, Mail("a@b.test", 100), id="lower-case-params"),
        pytest.param("FROM:<a@b.test> SIZE=1001", True, TOO_BIG, id="size-over"),
        pytest.param("FROM:<a@b.test> SIZE=ten", True, MAIL_SYNTAX, id="size-not-digits"),
        pytest.param("FROM:<a@b.test> SIZE=", True, MAIL_SYNTAX, id="size-empty"),
        pytest.param("FROM:<a@b.test> SIZE=1 SIZE=2", True, MAIL_SYNTAX, id="size-twice"),
        pytest.param("FROM:<a@b.test> BODY=BINARYMIME", True, BODY_SYNTAX, id="binarymime"),
        pytest.param("FROM:<a@b.test> SMTPUTF8", True, UNKNOWN_PARAMETER, id="smtputf8-not-offered"),
        pytest.param("FROM:<a@b.test> X-FOO=bar", True, UNKNOWN_PARAMETER, id="unknown"),
        pytest.param("FROM:<a@b.test> =bar", True, MAIL_SYNTAX, id="no-keyword"),
        pytest.param("FROM:<a@b.test> SIZE=10", False, MAIL_SYNTAX, id="parameters-after-helo"),
        pytest.param("TO:<a@b.test>", True, MAIL_SYNTAX, id="not-from"),
        pytest.param("FROM:", True, MAIL_SYNTAX, id="no-path"),
        pytest.param("FROM:<a@@b>", True, MALFORMED_ADDRESS, id="malformed"),
    ],
)
def test_mail_arguments(argument: str, extended: bool, expected: object) -> None:
    assert read_mail(argument, extended=extended, max_size=1000) == expected


@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        pytest.param("TO:<bob@b.test>", "bob@b.test", id="plain"),
        pytest.param("TO:<@r.test:bob@b.test>", "bob@b.test", id="route-dropped"),
        pytest.param("TO:<>", MALFORMED_ADDRESS, id="null"),
        pytest.param("TO:<bob@b.test> NOTIFY=NEVER", UNKNOWN_PARAMETER, id="dsn-not-offered"),
        pytest.param("TO:<bob@b.test> ==", RCPT_SYNTAX, id="bad-parameter"),
        pytest.param("FROM:<bob@b.test>", RCPT_SYNTAX, id="not-to"),
    ],
)
def test_rcpt_arguments(argument: str, expected: object) -> None:
    assert read_rcpt(argument, extended=True) == expected
