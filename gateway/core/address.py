"""Strict RFC 5322 mailboxes (section 3.4), read once, in linear time.

The sender a record shows must be exactly the address the signature is bound
to, so the From field is read by this one parser and by no other:

- It reads the raw field value. Encoded words (RFC 2047) are never decoded
  first: an encoded word is a display-name token (RFC 2047 section 5), so
  ``=?utf-8?q?alice@a.test?= <mallory@evil.test>`` is malformed, and an
  ``@`` in a display name that is not quoted is malformed.
- A display name is never an address; ``a@b@c`` is malformed; a quoted
  local part keeps its quotes; comments are skipped.
- It accepts the obsolete forms readers must accept (RFC 5322 section 4.4:
  white space and comments between the words and dots of an address, empty
  list elements), which a standard parser reads the same way.

Linear time, and little Python per byte: the lexer hands the parser whole
runs (words, dots, quoted strings and white space in one token; white space
and comments skipped in one step), each matched by one regular expression
with possessive quantifiers over alternatives that start with different
characters, so no match can backtrack. What is left to the parser is a few
steps per address. Comments may nest three deep (deeper is refused: RFC 5322
sets no depth, no mail needs one). An address longer than SMTP can carry
(254 characters, RFC 5321 section 4.5.3.1) is refused before it is examined.

An address must be ASCII (RFC 6532 UTF-8 is allowed in display names only):
the certificate side of the binding, an rfc822Name, is an IA5String
(RFC 5280 section 4.2.1.6).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

# The classes below are written as complements: a class holding the range \u0080-\U0010ffff
# costs re's compiler a 65536-step loop per occurrence, which made importing this module
# take a quarter of a second (every CLI command paid it); a negated class of ASCII is cheap.
# RFC 5322 section 3.2.3 atext, and UTF-8 beyond ASCII (RFC 6532 section 3.2): every
# character but controls, space and specials.
_ATEXT = r'[^\x00-\x20"(),.:;<>@\[\\\]\x7f]'
# atext, dots, spaces and tabs (the words of a display name)
_WORD_TEXT = r'[^\x00-\x08\x0a-\x1f"(),:;<>@\[\\\]\x7f]'
_CTL = r"\x00-\x08\x0a-\x1f\x7f"  # controls but TAB: never in an unfolded field
_PAIR = rf"\\[^{_CTL}]"  # quoted-pair, section 3.2.1: a backslash, then TAB, VCHAR or beyond ASCII
_QUOTED = rf'"(?:[^"\\{_CTL}]++|{_PAIR})*+"'  # section 3.2.4
_C0 = rf"\((?:[^()\\{_CTL}]++|{_PAIR})*+\)"  # section 3.2.2, nesting three deep
_C1 = rf"\((?:[^()\\{_CTL}]++|{_PAIR}|{_C0})*+\)"
_C2 = rf"\((?:[^()\\{_CTL}]++|{_PAIR}|{_C1})*+\)"
_CFWS = re.compile(rf"(?:[ \t]++|{_C2})*+")
_SEPARATORS = re.compile(rf"(?:[ \t,]++|{_C2})*+")
_LIST_SEPARATORS = re.compile(rf"(?:[ \t,;]++|{_C2})*+")
_WORDS = re.compile(rf"(?:{_WORD_TEXT}++|{_QUOTED}|{_C2})++")
_LITERAL = re.compile(rf"\[[^\[\]\\{_CTL}]*+\]")  # domain-literal, section 3.4.1
_WORD = rf"(?:{_ATEXT}++|{_QUOTED})"
_S = rf"(?:[ \t]++|{_C2})*+"  # CFWS between the words and dots of an address (obs-local-part)
_LOCAL = re.compile(rf"{_S}{_WORD}(?:{_S}\.{_S}{_WORD})*+{_S}")
_DOMAIN = re.compile(rf"{_S}{_ATEXT}++(?:{_S}\.{_S}{_ATEXT}++)*+{_S}")
_LOCAL_PIECES = re.compile(rf'({_QUOTED})|{_C2}|[ \t]++|[^" \t(]++')
_COMMENTS_AND_SPACE = re.compile(rf"[ \t]++|{_C2}")
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+(?:\.[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+)*")
_PHRASE_PIECES = re.compile(rf"({_QUOTED})|({_C2})|[^\"(]++")
# Skipping an unreadable list element: up to the next ',' or ';' outside quotes and comments.
_SKIP = re.compile(rf'(?:[^,;"(]++|{_QUOTED}|{_C2})*+')

# The common forms, read in one match each: ``local@domain`` and ``Display Name <local@domain>``,
# ASCII dot-atoms, a display name of atoms, dots and spaces only (no quotes, comments or
# encoded words), elements separated by commas (and semicolons in To/Cc). A list of only
# these is read as the full reader below reads it (``_simple``); anything else goes there.
_ASCII_ATEXT = r"A-Za-z0-9!#$%&'*+\-/=?^_`{|}~"
_SIMPLE_ADDRESS = rf"[{_ASCII_ATEXT}]++(?:\.[{_ASCII_ATEXT}]++)*+@[{_ASCII_ATEXT}]++(?:\.[{_ASCII_ATEXT}]++)*+"
_SIMPLE_MAILBOX = re.compile(
    rf"[ \t]*+(?:({_SIMPLE_ADDRESS})|([{_ASCII_ATEXT}.]++(?:[ \t]++[{_ASCII_ATEXT}.]++)*+)?[ \t]*+"
    rf"<[ \t]*+({_SIMPLE_ADDRESS})[ \t]*+>)[ \t]*+"
)
_SIMPLE_SEPARATORS = re.compile(r"[ \t,]*+")
_SIMPLE_LIST_SEPARATORS = re.compile(r"[ \t,;]*+")

MAX_ADDRESS = 254
"""RFC 5321 section 4.5.3.1.3: a path is at most 256 octets, its angle brackets included."""
MAX_LISTED = 1000
"""Addresses read from the To/Cc fields of one message, in all: more recipients than
an SMTP server takes for one message (RFC 5321 section 4.5.3.1.8 asks for 100)."""

WORDS, LITERAL, END, ERROR = "words", "literal", "end", "error"


@dataclass(frozen=True, slots=True)
class Mailbox:
    address: str
    """The addr-spec, lower-cased: ``local-part@domain``."""
    phrase: str | None = None
    """The display name as written (quotes kept, encoded words not decoded)."""

    @property
    def display_name(self) -> str | None:
        """The display name with its quoted strings unquoted (encoded words still not decoded)."""
        if self.phrase is None:
            return None
        return " ".join(
            _PHRASE_PIECES.sub(
                lambda m: _unquote(m.group(1)) if m.group(1) else "" if m.group(2) else m.group(), self.phrase
            ).split()
        )


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A field value that is not an RFC 5322 mailbox-list; ``offset`` is where reading stopped."""

    detail: str
    offset: int

    def __str__(self) -> str:
        return f"{self.detail} (at character {self.offset})"


class _Bad(Exception):
    def __init__(self, detail: str, offset: int):
        super().__init__(detail)
        self.detail = detail
        self.offset = offset


class _Token(NamedTuple):
    kind: str
    """WORDS, LITERAL, END, ERROR, or one of the specials ``<>@,;:`` itself."""
    text: str
    start: int
    end: int


def _unquote(quoted: str) -> str:
    body = quoted[1:-1]
    return re.sub(r"\\(.)", r"\1", body) if "\\" in body else body


class _Reader:
    """Recursive descent with one token of lookahead: no backtracking."""

    def __init__(self, value: str, start: int = 0):
        self.value = value
        self.tok = self._lex(start)

    def _lex(self, at: int) -> _Token:
        value = self.value
        at = _CFWS.match(value, at).end()  # type: ignore[union-attr]  # matches the empty string
        if at >= len(value):
            return _Token(END, "", at, at)
        c = value[at]
        m = _WORDS.match(value, at)
        if m:
            return _Token(WORDS, m.group(), at, m.end())
        if c in "<>@,;:":
            return _Token(c, c, at, at + 1)
        if c == "[":
            m = _LITERAL.match(value, at)
            if m:
                return _Token(LITERAL, m.group(), at, m.end())
            return _Token(ERROR, "a domain literal that is not closed or holds a control character", at, at)
        if c == '"':
            return _Token(ERROR, "a quoted string that is not closed or holds a control character", at, at)
        if c == "(":
            return _Token(
                ERROR, "a comment that is not closed, holds a control character or nests more than 3 deep", at, at
            )
        return _Token(ERROR, f"the character {c!r} has no place in an address field", at, at)

    def relex(self, at: int) -> None:
        self.tok = self._lex(at)

    def advance(self) -> _Token:
        tok = self.tok
        if tok.kind == ERROR:
            raise _Bad(tok.text, tok.start)
        if tok.kind == END:
            raise _Bad("the field ends too early", tok.start)
        self.tok = self._lex(tok.end)
        return tok

    def expect(self, kind: str, what: str) -> _Token:
        if self.tok.kind != kind:
            raise self.unexpected(what)
        return self.advance()

    def unexpected(self, what: str) -> _Bad:
        tok = self.tok
        if tok.kind == ERROR:
            return _Bad(tok.text, tok.start)
        found = "the end" if tok.kind == END else repr(tok.text[:20])
        return _Bad(f"expected {what}, found {found}", tok.start)

    def runs(self) -> list[_Token]:
        """Word runs (words, dots, quoted strings), comments between them skipped."""
        out: list[_Token] = []
        while self.tok.kind == WORDS:
            out.append(self.advance())
        return out

    def address(self, *, groups: bool) -> list[Mailbox]:
        """One address (section 3.4): a mailbox, or with ``groups`` a group of them."""
        start = self.tok.start
        runs = self.runs()
        kind = self.tok.kind
        if kind == "<":
            self.advance()
            if self.tok.kind == "@":
                raise _Bad("a source route (obs-route) is not accepted", self.tok.start)
            address = self.addr_spec(self.runs())
            self.expect(">", "'>' closing the address")
            phrase = " ".join(r.text.strip() for r in runs) or None
            return [Mailbox(address, phrase)]
        if kind == "@":
            return [Mailbox(self.addr_spec(runs))]
        if kind == ":" and runs and groups:
            self.advance()
            members: list[Mailbox] = []
            while True:
                self.relex(_SEPARATORS.match(self.value, self.tok.start).end())  # type: ignore[union-attr]
                if self.tok.kind == ";":
                    self.advance()
                    return members
                members += self.address(groups=False)
                if self.tok.kind not in (",", ";"):
                    raise self.unexpected("',' or ';' in a group")
        if kind == ":" and runs:
            raise _Bad("a group is not a mailbox (RFC 5322 section 3.6.2)", self.tok.start)
        if runs and kind != ERROR:
            raise _Bad("a display name without an address", start)
        raise self.unexpected("an address")

    def addr_spec(self, local: list[_Token]) -> str:
        """``local-part "@" domain`` (section 3.4.1), the local part already read."""
        if not local:
            raise self.unexpected("a local part before '@'")
        start = local[0].start
        raw = " ".join(r.text for r in local)  # a comment between words separates them
        if len(raw) > 4 * MAX_ADDRESS:
            raise _Bad(f"an address longer than {MAX_ADDRESS} characters (RFC 5321 4.5.3.1)", start)
        if not _LOCAL.fullmatch(raw):
            raise _Bad("a local part must be words separated by single dots", start)
        self.expect("@", "'@'")
        if self.tok.kind == LITERAL:
            domain = self.advance().text
        else:
            labels = self.runs()
            raw_domain = " ".join(r.text for r in labels)
            if not labels or len(raw_domain) > 4 * MAX_ADDRESS or not _DOMAIN.fullmatch(raw_domain):
                raise self.unexpected("a domain") if not labels else _Bad("not a domain name", labels[0].start)
            domain = _COMMENTS_AND_SPACE.sub("", raw_domain)
        if self.tok.kind == "@":
            raise _Bad("a second '@' in one address", self.tok.start)
        address = f"{_local(raw)}@{domain}"
        if len(address) > MAX_ADDRESS:
            raise _Bad(f"an address longer than {MAX_ADDRESS} characters (RFC 5321 4.5.3.1)", start)
        if not address.isascii():
            raise _Bad("an address that is not ASCII (an rfc822Name is IA5String, RFC 5280 4.2.1.6)", start)
        return address.lower()


def _local(raw: str) -> str:
    """The local part without white space; a quoted word stays quoted unless it is a dot-atom."""
    if '"' not in raw:
        return _COMMENTS_AND_SPACE.sub("", raw)
    out = []
    for m in _LOCAL_PIECES.finditer(raw):
        piece = m.group()
        if m.group(1):
            text = _unquote(piece)
            out.append(text if _DOT_ATOM.fullmatch(text) else '"' + re.sub(r'(["\\])', r"\\\1", text) + '"')
        elif piece[0] not in " \t(":
            out.append(piece)
    return "".join(out)


def _simple(value: str, between: str, at_most: int) -> list[Mailbox] | None:
    """The first ``at_most`` mailboxes of a list of only the common forms (``_SIMPLE_MAILBOX``)
    separated by the characters ``between`` (and white space); None, for the full reader, at
    anything else.

    This is what the full reader makes of such a list: an addr-spec is one run of words and
    dots on each side of its "@" (which ``_local`` and the domain keep whole), and a
    display name is one run, whose text stripped is the phrase."""
    separators = _SIMPLE_SEPARATORS if between == "," else _SIMPLE_LIST_SEPARATORS
    found: list[Mailbox] = []
    n = len(value)
    at = separators.match(value).end()  # type: ignore[union-attr]  # matches the empty string
    while at < n and len(found) < at_most:
        m = _SIMPLE_MAILBOX.match(value, at)
        if m is None:
            return None
        spec, phrase, bracketed = m.groups()
        address = spec or bracketed
        if len(address) > MAX_ADDRESS:
            return None
        found.append(Mailbox(address.lower(), phrase if bracketed else None))
        at = m.end()
        if at < n:
            if value[at] not in between:
                return None
            at = separators.match(value, at).end()  # type: ignore[union-attr]
    return found if found else None


def parse_mailbox_list(value: str, at_most: int | None = None) -> tuple[Mailbox, ...] | Unreadable:
    """A ``mailbox-list`` (the From field, RFC 5322 section 3.6.2), or why it is not one.

    Empty list elements are skipped (obs-mbox-list, section 4.4); groups are
    not mailboxes and are refused. With ``at_most``, reading stops after
    ``at_most + 1`` mailboxes: enough to say there are too many."""
    simple = _simple(value, ",", MAX_LISTED if at_most is None else at_most + 1)
    if simple is not None and (at_most is not None or len(simple) < MAX_LISTED):
        return tuple(simple)
    reader = _Reader(value)
    found: list[Mailbox] = []
    try:
        while True:
            reader.relex(_SEPARATORS.match(value, reader.tok.start).end())  # type: ignore[union-attr]
            if reader.tok.kind == END:
                break
            found += reader.address(groups=False)
            if at_most is not None and len(found) > at_most:
                break
            if reader.tok.kind not in (",", END):
                raise reader.unexpected("',' between mailboxes")
    except _Bad as exc:
        return Unreadable(exc.detail, exc.offset)
    if not found:
        return Unreadable("no mailbox", 0)
    return tuple(found)


def parse_address_list(value: str, at_most: int = MAX_LISTED) -> tuple[Mailbox, ...]:
    """The readable mailboxes of an ``address-list`` (To, Cc; section 3.6.3), groups flattened.

    Tolerant where the From is strict: an unreadable element is skipped up to
    the next ',' or ';', and reading stops at an unclosed quoted string or
    comment, or after ``at_most`` elements."""
    simple = _simple(value, ",;", at_most)
    if simple is not None:
        return tuple(simple)
    reader = _Reader(value)
    found: list[Mailbox] = []
    for _ in range(at_most):
        reader.relex(_LIST_SEPARATORS.match(value, reader.tok.start).end())  # type: ignore[union-attr]
        if reader.tok.kind == END:
            break
        try:
            read = reader.address(groups=True)
            if reader.tok.kind not in (",", ";", END):
                raise reader.unexpected("','")
            found += read
        except _Bad:
            end = _SKIP.match(value, reader.tok.start).end()  # type: ignore[union-attr]
            if end < len(value) and value[end] not in ",;":
                break  # an unclosed quoted string or comment: nothing after it can be read
            reader.relex(end)
    return tuple(found[:at_most])
