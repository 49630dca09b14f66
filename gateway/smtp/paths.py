"""Reading the path of MAIL FROM and RCPT TO (RFC 5321 4.1.2), strictly and without the ``email`` package.

``simple_path`` takes the form nearly every HISP sends, ``<dot-atom@dot-atom>``
and its parameters, in a few string operations. ``read_path`` reads the
rest of RFC 5321's grammar by hand, one character class at a time (no
regular expression, no backtracking; linear in the argument, which the
command line limit bounds):

- ``<>``, the null reverse-path (RFC 5321 4.5.5), for MAIL only: ``""``;
- a source route, ``<@relay.example,@other.example:user@domain>``: read and
  dropped (RFC 5321 4.1.1.3 and C: a server SHOULD ignore it);
- a quoted local part, ``<"john smith"@domain>``, with quoted pairs
  (``\\"``): given back unquoted when its content is a dot-string (RFC 5321
  4.1.2: ``"john"`` and ``john`` are the same mailbox), else quoted with
  only the pairs it needs;
- an address literal as the domain, ``[192.0.2.1]``, ``[IPv6:2001:db8::1]``
  or ``[tag:content]`` (RFC 5321 4.1.3), as written;
- ``<Postmaster>`` without a domain, for RCPT only (RFC 5321 4.1.1.3);
- a mailbox without the angle brackets (``MAIL FROM:user@domain``), which
  RFC 5321 does not allow but old clients send and aiosmtpd and Postfix
  accept: read as a mailbox, never with a route or as ``<>``.

Anything else is refused (None: 553 5.1.3), comments and folding
whitespace included. After the path comes nothing, or a space and the
parameters. Domains are read as dot-atoms, as the edge always has (RFC 5321's
Domain is letters, digits and hyphens; the pipeline decides whose a domain is).
"""

from __future__ import annotations

import ipaddress
import string

# RFC 5322 3.2.3 atext: what a dot-atom holds between its dots.
_ATEXT = frozenset(string.ascii_letters + string.digits + "!#$%&'*+/=?^_`{|}~-")
# RFC 5321 4.1.2 qtextSMTP (%d32-33 / %d35-91 / %d93-126) and quoted-pairSMTP's second octet (%d32-126).
_QTEXT = frozenset(chr(c) for c in range(32, 127)) - {'"', "\\"}
_QPAIR = frozenset(chr(c) for c in range(32, 127))
# RFC 5321 4.1.3 dcontent (%d33-90 / %d94-126) and Ldh-str.
_DCONTENT = frozenset(chr(c) for c in range(33, 127)) - {"[", "\\", "]"}
_LDH = frozenset(string.ascii_letters + string.digits + "-")


def simple_path(argument: str) -> tuple[str, str] | None:
    """(address, parameters) for ``<dot-atom@dot-atom>[ SP parameters]``, else None (read it with ``read_path``)."""
    if not argument.startswith("<"):
        return None
    close = argument.find(">")
    if close < 0:
        return None
    rest = argument[close + 1 :]
    if rest and rest[0] != " ":
        return None
    local, at, domain = argument[1:close].rpartition("@")
    if not at or not _dot_atom(local) or not _dot_atom(domain):
        return None
    return argument[1:close], rest.lstrip(" ")


def read_path(argument: str, *, reverse: bool) -> tuple[str, str] | None:
    """(address, parameters) for any RFC 5321 path (``reverse``: MAIL's, which may be ``<>``), or None.

    The address is ``""`` for the null reverse-path."""
    if not argument.startswith("<"):
        # A bare mailbox up to the first space (old clients; never a route, never empty).
        end = argument.find(" ")
        mailbox, rest = (argument, "") if end < 0 else (argument[:end], argument[end:])
        address = _mailbox(mailbox)
        return None if address is None else (address, rest.lstrip(" "))
    close = _path_end(argument)
    if close < 0:
        return None
    rest = argument[close + 1 :]
    if rest and rest[0] != " ":
        return None
    inner = argument[1:close]
    if not inner:
        return ("", rest.lstrip(" ")) if reverse else None
    if inner.startswith("@"):
        colon = inner.find(":")
        if colon < 0 or not all(
            hop.startswith("@") and _domain(hop[1:]) for hop in inner[:colon].split(",")
        ):
            return None
        inner = inner[colon + 1 :]
    elif not reverse and inner.lower() == "postmaster":
        return inner, rest.lstrip(" ")
    address = _mailbox(inner)
    return None if address is None else (address, rest.lstrip(" "))


def _path_end(argument: str) -> int:
    """The index of the ">" closing the path (a quoted local part may hold one), or -1."""
    index, quoted = 1, False
    while index < len(argument):
        char = argument[index]
        if quoted and char == "\\":
            index += 2
            continue
        if char == '"':
            quoted = not quoted
        elif char == ">" and not quoted:
            return index
        index += 1
    return -1


def _mailbox(text: str) -> str | None:
    """RFC 5321 Mailbox = Local-part "@" ( Domain / address-literal ), as the pipeline is given it."""
    if text.startswith('"'):
        local = _quoted(text)
        if local is None:
            return None
        content, end = local
        if text[end : end + 1] != "@":
            return None
        domain = text[end + 1 :]
        if _dot_atom(content):
            local_part = content
        else:
            local_part = '"' + content.replace("\\", "\\\\").replace('"', '\\"') + '"'
    else:
        local_part, at, domain = text.partition("@")
        if not at or not _dot_atom(local_part):
            return None
    if not (_domain(domain) or _address_literal(domain)):
        return None
    return f"{local_part}@{domain}"


def _quoted(text: str) -> tuple[str, int] | None:
    """The content of the quoted string that ``text`` begins with, unescaped, and the index after it."""
    content: list[str] = []
    index = 1
    while index < len(text):
        char = text[index]
        if char == '"':
            return "".join(content), index + 1
        if char == "\\":
            pair = text[index + 1 : index + 2]
            if pair not in _QPAIR:
                return None
            content.append(pair)
            index += 2
            continue
        if char not in _QTEXT:
            return None
        content.append(char)
        index += 1
    return None


def _domain(text: str) -> bool:
    return _dot_atom(text)


def _address_literal(text: str) -> bool:
    """RFC 5321 4.1.3: ``[IPv4]``, ``[IPv6:...]`` or ``[tag:dcontent]``."""
    if len(text) < 3 or text[0] != "[" or text[-1] != "]":
        return False
    body = text[1:-1]
    tag, colon, content = body.partition(":")
    if not colon:
        parts = body.split(".")
        return len(parts) == 4 and all(
            0 < len(part) <= 3 and part.isascii() and part.isdigit() and int(part) <= 255
            for part in parts
        )
    if tag.upper() == "IPV6":
        if "%" in content or not content.isascii():
            return False
        try:
            ipaddress.IPv6Address(content)
        except ValueError:
            return False
        return True
    return (
        bool(tag)
        and tag[0].isalnum()
        and tag[-1].isalnum()
        and _LDH.issuperset(tag)
        and bool(content)
        and _DCONTENT.issuperset(content)
    )


def _dot_atom(text: str) -> bool:
    return (
        bool(text)
        and text[0] != "."
        and text[-1] != "."
        and ".." not in text
        and _ATEXT.issuperset(text.replace(".", ""))
    )
