"""Strict RFC 5322 mailboxes (section 3.4), read once, in linear time.

The sender a record shows must be exactly the address the signature is bound
to, so the From field is read by this one parser and by no other:

- It reads the raw field value. Encoded words (RFC 2047) are never decoded
  first: an encoded word is a display-name token (RFC 2047 section 5), so
  ``=?utf-8?q?alice@a.test?= <mallory@evil.test>`` is Mallory's, and an
  ``@`` in a display name that is not quoted is malformed.
- A display name is never an address; ``a@b@c`` is malformed; a quoted
  local part keeps its quotes; comments are skipped, however nested.
- It tokenises once, left to right: every step consumes at least one
  character, and runs of atext, qtext, ctext and dtext are matched with a
  single character class (which cannot backtrack), so a field of many ``@``
  and ``<`` costs as much as any other field of its size.
- It accepts the obsolete forms readers must accept (RFC 5322 section 4.4:
  folding white space and comments between the words and dots of a local
  part, empty list elements), which a standard parser reads the same way.

An address must be ASCII (RFC 6532 UTF-8 is allowed in display names only):
the certificate side of the binding, an rfc822Name, is an IA5String
(RFC 5280 section 4.2.1.6).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

# RFC 5322 section 3.2.3 atext, and UTF-8 beyond ASCII (RFC 6532 section 3.2).
_ATEXT = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\u0080-\U0010ffff]+")
_WSP = re.compile(r"[ \t]+")
# qtext (section 3.2.4) and WSP; the quote, the backslash and controls end a run.
_QTEXT = re.compile(r'[^"\\\x00-\x08\x0a-\x1f\x7f]+')
# ctext (section 3.2.2) and WSP; parentheses, backslash and controls end a run.
_CTEXT = re.compile(r"[^()\\\x00-\x08\x0a-\x1f\x7f]+")
# dtext (section 3.4.1) and WSP.
_DTEXT = re.compile(r"[^\[\]\\\x00-\x08\x0a-\x1f\x7f]+")
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+(?:\.[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+)*")
_SPECIALS = frozenset("<>@,;:.")
_VCHAR_OR_WSP = frozenset(chr(c) for c in range(0x20, 0x7F)) | {"\t"}

ATOM, QUOTED, LITERAL, END, ERROR = "atom", "quoted", "literal", "end", "error"


@dataclass(frozen=True, slots=True)
class Mailbox:
    address: str
    """The addr-spec, lower-cased: ``local-part@domain``."""
    display_name: str | None
    """The display name as it came (quotes removed, encoded words not decoded)."""


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


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str
    """ATOM, QUOTED, LITERAL, END, or the special character itself."""
    text: str
    offset: int


def _quoted(value: str, at: int) -> tuple[str, int]:
    """The content of the quoted string opening at ``value[at]``, and where it ends."""
    out: list[str] = []
    i = at + 1
    while True:
        m = _QTEXT.match(value, i)
        if m:
            out.append(m.group())
            i = m.end()
        if i >= len(value):
            raise _Bad("a quoted string is not closed", at)
        c = value[i]
        if c == '"':
            return "".join(out), i + 1
        if c == "\\" and i + 1 < len(value) and value[i + 1] in _VCHAR_OR_WSP:
            out.append(value[i + 1])
            i += 2
            continue
        raise _Bad("a control character or a lone backslash in a quoted string", i)


def _comment_end(value: str, at: int) -> int:
    """Where the comment opening at ``value[at]`` ends (comments nest, section 3.2.2)."""
    depth, i = 0, at
    while True:
        if i >= len(value):
            raise _Bad("a comment is not closed", at)
        c = value[i]
        if c == "(":
            depth += 1
            i += 1
        elif c == ")":
            depth -= 1
            i += 1
            if depth == 0:
                return i
        elif c == "\\" and i + 1 < len(value) and value[i + 1] in _VCHAR_OR_WSP:
            i += 2
        else:
            m = _CTEXT.match(value, i)
            if not m:
                raise _Bad("a control character or a lone backslash in a comment", i)
            i = m.end()


def _tokens(value: str) -> Iterator[_Token]:
    """Tokens, comments and white space skipped; an ERROR token ends the stream."""
    try:
        yield from _scan(value)
    except _Bad as exc:
        yield _Token(ERROR, exc.detail, exc.offset)


def _scan(value: str) -> Iterator[_Token]:
    i, n = 0, len(value)
    while i < n:
        c = value[i]
        m = _ATEXT.match(value, i)
        if m:
            yield _Token(ATOM, m.group(), i)
            i = m.end()
        elif c in " \t":
            i = _WSP.match(value, i).end()  # type: ignore[union-attr]  # c matched it
        elif c == "(":
            i = _comment_end(value, i)
        elif c == '"':
            text, end = _quoted(value, i)
            yield _Token(QUOTED, text, i)
            i = end
        elif c == "[":
            m = _DTEXT.match(value, i + 1)
            end = m.end() if m else i + 1
            if end >= n or value[end] != "]":
                raise _Bad("a domain literal is not closed", i)
            yield _Token(LITERAL, value[i : end + 1], i)
            i = end + 1
        elif c in _SPECIALS:
            yield _Token(c, c, i)
            i += 1
        else:
            raise _Bad(f"the character {c!r} has no place in an address field", i)
    yield _Token(END, "", n)


class _Parser:
    """Recursive descent with one token of lookahead: no backtracking."""

    def __init__(self, value: str):
        self._tokens = _tokens(value)
        self.tok = _Token(END, "", 0)
        self._next()

    def _next(self) -> None:
        self.tok = next(self._tokens)
        if self.tok.kind == ERROR:
            raise _Bad(self.tok.text, self.tok.offset)

    def advance(self) -> _Token:
        tok = self.tok
        if tok.kind in (END, ERROR):
            raise _Bad("unexpected end of the field", tok.offset)
        self._next()
        return tok

    def expect(self, kind: str, what: str) -> _Token:
        if self.tok.kind != kind:
            found = "the end" if self.tok.kind == END else repr(self.tok.text)
            raise _Bad(f"expected {what}, found {found}", self.tok.offset)
        return self.advance()

    def words(self) -> list[_Token]:
        """A phrase or a local part: words (atoms, quoted strings) and dots, as they come."""
        out: list[_Token] = []
        while self.tok.kind in (ATOM, QUOTED) or (self.tok.kind == "." and out):
            out.append(self.advance())
        return out

    def address(self, *, groups: bool) -> list[Mailbox]:
        """One address (section 3.4): a mailbox, or with ``groups`` a group of them."""
        start = self.tok.offset
        words = self.words()
        if self.tok.kind == "<":
            self.advance()
            if self.tok.kind == "@":
                raise _Bad("a source route (obs-route) is not accepted", self.tok.offset)
            address = self.addr_spec(self.words())
            self.expect(">", "'>' closing the address")
            return [Mailbox(address, _phrase(words, start))]
        if self.tok.kind == "@":
            return [Mailbox(self.addr_spec(words), None)]
        if self.tok.kind == ":" and words and groups:
            self.advance()
            members: list[Mailbox] = []
            while self.tok.kind != ";":
                if self.tok.kind == ",":
                    self.advance()
                    continue
                members += self.address(groups=False)
                if self.tok.kind not in (",", ";"):
                    self.expect(";", "',' or ';' in a group")
            self.advance()
            return members
        if self.tok.kind == ":" and words:
            raise _Bad("a group is not a mailbox (RFC 5322 section 3.6.2)", self.tok.offset)
        if words:
            raise _Bad("a display name without an address", start)
        found = "the end" if self.tok.kind == END else repr(self.tok.text)
        raise _Bad(f"expected an address, found {found}", self.tok.offset)

    def addr_spec(self, local: list[_Token]) -> str:
        """``local-part "@" domain`` (section 3.4.1), the local part already read."""
        if not local:
            raise _Bad("an address without a local part", self.tok.offset)
        for i, word in enumerate(local):
            if (word.kind == ".") != (i % 2 == 1):
                raise _Bad("a local part must be words separated by single dots", word.offset)
        if local[-1].kind == ".":
            raise _Bad("a local part cannot end with '.'", local[-1].offset)
        self.expect("@", "'@'")
        if self.tok.kind == LITERAL:
            domain = self.advance().text
        else:
            labels = [self.expect(ATOM, "a domain").text]
            while self.tok.kind == ".":
                self.advance()
                labels.append(self.expect(ATOM, "a domain label after '.'").text)
            domain = ".".join(labels)
        if self.tok.kind == "@":
            raise _Bad("a second '@' in one address", self.tok.offset)
        local_part = "".join(_local_word(w) for w in local)
        address = f"{local_part}@{domain}"
        if not address.isascii():
            raise _Bad("an address that is not ASCII (an rfc822Name is IA5String, RFC 5280 4.2.1.6)", local[0].offset)
        return address.lower()


def _local_word(word: _Token) -> str:
    if word.kind != QUOTED or _DOT_ATOM.fullmatch(word.text):
        return word.text
    return '"' + word.text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _phrase(words: list[_Token], start: int) -> str | None:
    if not words:
        return None
    if words[0].kind == ".":
        raise _Bad("a display name cannot start with '.'", start)
    return " ".join(w.text for w in words)


def parse_mailbox_list(value: str) -> tuple[Mailbox, ...] | Unreadable:
    """A ``mailbox-list`` (the From field, RFC 5322 section 3.6.2), or why it is not one.

    Empty list elements are skipped (obs-mbox-list, section 4.4); groups are
    not mailboxes and are refused."""
    try:
        parser = _Parser(value)
        found: list[Mailbox] = []
        while parser.tok.kind != END:
            if parser.tok.kind == ",":
                parser.advance()
                continue
            found += parser.address(groups=False)
            if parser.tok.kind != END:
                parser.expect(",", "',' between mailboxes")
        if not found:
            return Unreadable("no mailbox", 0)
        return tuple(found)
    except _Bad as exc:
        return Unreadable(exc.detail, exc.offset)


def parse_address_list(value: str) -> tuple[Mailbox, ...]:
    """The readable mailboxes of an ``address-list`` (To, Cc; section 3.6.3), groups flattened.

    Tolerant where the From is strict: an unreadable address is skipped up to
    the next ',' (or the end of its group), and reading stops at an unclosed
    quoted string or comment."""
    found: list[Mailbox] = []
    try:
        parser = _Parser(value)
    except _Bad:
        return ()
    while parser.tok.kind not in (END, ERROR):
        try:
            if parser.tok.kind in (",", ";"):
                parser.advance()
                continue
            read = parser.address(groups=True)
            if parser.tok.kind not in (",", END):
                parser.expect(",", "','")
            found += read
        except _Bad:
            try:
                while parser.tok.kind not in (",", ";", END, ERROR):
                    parser.advance()
            except _Bad:
                break
    return tuple(found)
