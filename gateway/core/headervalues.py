"""Header field values MIME gives structure to: parameters and encoded words.

``Content-Type: type/subtype; name=value; ...`` (RFC 2045 section 5.1, and the
same grammar in Content-Disposition, RFC 2183), with RFC 2231's charsets and
continuations (``name*0*=utf-8''%E2%82%AC; name*1=...``); and RFC 2047
encoded words (``=?utf-8?q?...?=``) in unstructured text.

The standard library reads both, but in time that grows faster than the
field (RFC 2231 continuations and runs of ``=?`` cost seconds for 100 KB of
header), so they are read here, left to right, once: each step is one
regular expression with possessive quantifiers (which cannot backtrack) over
a run, or one character. Nothing here raises: what cannot be read is skipped
(a parameter) or left as it came (an encoded word).
"""

from __future__ import annotations

import binascii
import codecs
import re

MAX_PARAMETERS = 64
"""Parameters (continuation sections included) read from one field: a
Content-Type carries two or three; beyond this they are ignored."""

# RFC 2045 section 5.1 token: US-ASCII printable but tspecials and space.
_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]++")
_TYPE = re.compile(rf"{_TOKEN.pattern}/{_TOKEN.pattern}")  # a token holds no "/"
_CTL = r"\x00-\x08\x0a-\x1f\x7f"
_QUOTED = re.compile(rf'"((?:[^"\\{_CTL}]++|\\[^{_CTL}])*+)"')  # RFC 822 quoted-string
_SPACE = re.compile(r"[ \t]*+")
_SEPARATORS = re.compile(r"[ \t;]*+")
# Up to the next ';' outside a quoted string, to skip what cannot be read.
_SKIP = re.compile(r'(?:[^;"]++|"(?:[^"\\]++|\\.)*+")*+')
_SECTION = re.compile(r"([^*]++)\*(?:(0|[1-9][0-9]{0,2})(\*)?|())$")  # name*, name*N, name*N*
_PAIR = re.compile(r"\\(.)")
# The common form: parameters whose names are plain tokens (no RFC 2231 "*" sections) and
# whose values are tokens or quoted strings without a quoted-pair, each followed by ";" or
# the end, read in one match each. For a field of only these, each named once, the full
# reader below gives the same answer in several steps per parameter.
_PLAIN_PARAMETER = re.compile(
    r'[ \t;]*+([!#$%&\'+\-.0-9A-Z^_`a-z{|}~]++)[ \t]*+=[ \t]*+'  # a token without "*", "="
    rf'(?:({_TOKEN.pattern})|"([^"\\{_CTL}]*+)")[ \t]*+(?:;|\Z)'
)


def parse_parameters(value: str | None, default: str = "text/plain") -> tuple[str, dict[str, str]]:
    """(lower-case type/subtype, parameters by lower-case name).

    The type is ``default`` when absent or not one ``type/subtype`` (RFC 2045
    section 5.2); with ``default=""`` (Content-Disposition) the first token is
    taken as it is. RFC 2231 sections are joined in the order of their numbers
    (as the standard library joins them), and an extended form takes
    precedence over a plain one of the same name (RFC 2231 section 4.1:
    senders give both). A parameter given twice in the same form is dropped:
    readers differ on which one counts (a boundary read two ways splits a
    signed body two ways), so it is read as absent."""
    if not value:
        return default, {}
    head, semicolon, _ = value.partition(";")
    ctype = head.strip().lower()
    if default and not _TYPE.fullmatch(ctype):  # one "/" between two tokens
        ctype = default
    if not semicolon:
        return ctype, {}
    simple = _plain_parameters(value, len(head) + 1)
    if simple is not None:
        return ctype, simple
    plain: dict[str, str] = {}
    sections: dict[str, dict[int, tuple[bool, str]]] = {}
    twice: set[str] = set()
    at = len(head) + 1
    n = len(value)
    for _ in range(MAX_PARAMETERS):
        at = _SEPARATORS.match(value, at).end()  # type: ignore[union-attr]  # matches the empty string
        if at >= n:
            break
        read = _parameter(value, at)
        if read is None:
            end = _SKIP.match(value, at).end()  # type: ignore[union-attr]
            if end < n and value[end] == '"':
                break  # a quoted string that is not closed: nothing after it can be read
            at = end + 1
            continue
        name, text, at = read
        section = _SECTION.match(name)
        if section is None:
            if name in plain:
                twice.add(name)
            plain[name] = text
            continue
        base, index, star, single = section.groups()
        number, encoded = (0, True) if single is not None else (int(index), star is not None)
        parts = sections.setdefault(base, {})
        if number in parts:
            twice.add(base)
        parts[number] = (encoded, text)
    params = {name: text for name, text in plain.items() if name not in sections}
    params.update((base, _join_sections(parts)) for base, parts in sections.items())
    for name in twice:
        params.pop(name, None)
    return ctype, params


def _plain_parameters(value: str, at: int) -> dict[str, str] | None:
    """The parameters from ``at`` on when all are in the common form (``_PLAIN_PARAMETER``),
    each named once; None (for the full reader) otherwise."""
    if value.count("=", at) >= MAX_PARAMETERS:
        return None  # one "=" each: fewer than the full reader's bound
    params: dict[str, str] = {}
    while m := _PLAIN_PARAMETER.match(value, at):
        name, token, quoted = m.groups()
        name = name.lower()
        if name in params:
            return None  # named twice: the full reader drops it
        params[name] = token or quoted
        at = m.end()
    if _SEPARATORS.match(value, at).end() != len(value):  # type: ignore[union-attr]
        return None
    return params


def _parameter(value: str, at: int) -> tuple[str, str, int] | None:
    """``attribute = value`` at ``at``: (lower-case name, value, where the next ';' search starts)."""
    name = _TOKEN.match(value, at)
    if name is None:
        return None
    at = _SPACE.match(value, name.end()).end()  # type: ignore[union-attr]
    if value[at : at + 1] != "=":
        return None
    at = _SPACE.match(value, at + 1).end()  # type: ignore[union-attr]
    quoted = _QUOTED.match(value, at)
    if quoted:
        text = quoted.group(1)
        text = _PAIR.sub(r"\1", text) if "\\" in text else text
        end = quoted.end()
    else:
        token = _TOKEN.match(value, at)
        if token is None:
            return None
        text, end = token.group(), token.end()
    end = _SPACE.match(value, end).end()  # type: ignore[union-attr]
    if end < len(value) and value[end] != ";":
        return None
    return name.group().lower(), text, end + 1


def _join_sections(parts: dict[int, tuple[bool, str]]) -> str:
    """RFC 2231 sections 3 and 4: the sections in the order of their numbers; the
    encoded section 0 names the charset, the other encoded ones are percent-encoded in it."""
    charset = "us-ascii"
    chunks: list[bytes] = []
    for index in sorted(parts):  # at most MAX_PARAMETERS of them
        encoded, text = parts[index]
        if encoded and index == 0:
            pieces = text.split("'", 2)
            if len(pieces) == 3:
                charset = pieces[0] or "us-ascii"
                text = pieces[2]
        chunks.append(_percent_decoded(text) if encoded else text.encode("utf-8", "replace"))
    raw = b"".join(chunks)
    decoded = _text(raw, charset)
    return decoded if decoded is not None else raw.decode("ascii", "replace")


_PERCENT = re.compile(rb"%([0-9A-Fa-f]{2})")
_BYTES = {f"{i:02x}".encode(): bytes([i]) for i in range(256)}


def _percent_decoded(text: str) -> bytes:
    """RFC 2231 section 4 %XX octets (a '%' not followed by two hex digits stays as it is)."""
    raw = text.encode("utf-8", "replace")
    return _PERCENT.sub(lambda m: _BYTES[m.group(1).lower()], raw) if b"%" in raw else raw


# Text codecs that are not charsets, some with decoders slower than linear (punycode).
_NOT_CHARSETS = frozenset({"punycode", "idna", "unicode_escape", "raw_unicode_escape"})


def _text(raw: bytes, charset: str) -> str | None:
    """``raw`` in the named MIME charset (RFC 2978), or None for a name that is not one."""
    try:
        name = codecs.lookup(charset).name
        if name in _NOT_CHARSETS:
            return None
        return raw.decode(name, "replace")
    except (LookupError, ValueError):
        return None


# RFC 2047 section 2: encoded-word = "=?" charset "?" encoding "?" encoded-text "?="; an
# encoded word holds no space and no "?" but those delimiters (and a charset may carry
# an RFC 2231 "*language").
_ENCODED_WORD = re.compile(r"=\?([^?\s*]++)(?:\*[^?\s]*+)?\?([bBqQ])\?([^?\s]*+)\?=")
_WSP_ONLY = re.compile(r"[ \t]++")


MAX_ENCODED_TEXT = 8 * 1024
"""Text longer than this is shown as it came, encoded words not decoded: an encoded
word is at most 75 characters (RFC 2047 section 2), a line at most 998 (RFC 5322
section 2.1.1); eight kilobytes of Subject or file name is no message's need."""


def decode_words(value: str) -> str:
    """RFC 2047 encoded words to text; a word that does not decode is left as it came.

    White space between two encoded words is dropped (RFC 2047 section 6.2)."""
    if "=?" not in value or len(value) > MAX_ENCODED_TEXT:
        return value
    out: list[str] = []
    last = 0
    previous_was_word = False
    for m in _ENCODED_WORD.finditer(value):
        between = value[last : m.start()]
        decoded = _decode_word(m.group(1), m.group(2), m.group(3))
        if decoded is None:
            out.append(between + m.group())
            previous_was_word = False
        else:
            if not (previous_was_word and _WSP_ONLY.fullmatch(between)):
                out.append(between)
            out.append(decoded)
            previous_was_word = True
        last = m.end()
    out.append(value[last:])
    return "".join(out)


def _decode_word(charset: str, encoding: str, text: str) -> str | None:
    try:
        if encoding in "bB":
            raw = binascii.a2b_base64(text + "=" * (-len(text) % 4), strict_mode=True)
        else:
            raw = binascii.a2b_qp(text, header=True)  # "_" is a space (RFC 2047 section 4.2)
    except (binascii.Error, ValueError):
        return None
    return _text(raw, charset)
