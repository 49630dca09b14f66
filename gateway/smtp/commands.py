"""The arguments of MAIL and RCPT read purely: the path (paths.py) and the ESMTP parameters.

Each function answers what the session should do with the command, or the
reply that refuses it; nothing here knows of sockets or sessions. The
parameters the edge knows (RFC 5321 4.1.2 esmtp-param, RFC 1869):

- MAIL ``SIZE=n`` (RFC 1870): digits; over the server's limit 552 5.3.4, at MAIL;
- MAIL ``BODY=7BIT`` or ``BODY=8BITMIME`` (RFC 6152; 8BITMIME is advertised);
- nothing else: 555 5.5.4 (RFC 5321 4.1.1.11), SMTPUTF8 included (not
  advertised: the edge's addresses are ASCII). RCPT takes no parameters.

BDAT's argument (RFC 3030 2: ``chunk-size [SP "LAST"]``) is read here too.

Parameters are refused with 501 after HELO (no ESMTP), and when malformed
or given twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from .interface import SmtpReply
from .paths import read_path, simple_path
from .replies import (
    BODY_SYNTAX,
    MAIL_SYNTAX,
    MALFORMED_ADDRESS,
    RCPT_SYNTAX,
    TOO_BIG,
    UNKNOWN_PARAMETER,
)

_BODIES = frozenset({"7BIT", "8BITMIME"})


@dataclass(frozen=True, slots=True)
class Mail:
    """A MAIL command the edge can take: its reverse-path ("" for <>) and declared SIZE."""

    sender: str
    size: int | None = None


def read_mail(argument: str, *, extended: bool, max_size: int) -> Mail | SmtpReply:
    """``FROM:<path> [parameters]`` as MAIL gives it (the argument after the verb, stripped)."""
    if argument[:5].upper() != "FROM:":
        return MAIL_SYNTAX
    rest = argument[5:].lstrip(" ")
    if not rest:
        return MAIL_SYNTAX
    path = simple_path(rest) or read_path(rest, reverse=True)
    if path is None:
        return MALFORMED_ADDRESS
    address, parameters = path
    if not parameters:
        return Mail(address)
    params = _parameters(parameters, extended, MAIL_SYNTAX)
    if isinstance(params, SmtpReply):
        return params
    body = params.pop("BODY", "7BIT")
    if body not in _BODIES:
        return BODY_SYNTAX
    size_text = params.pop("SIZE", None)
    size = None
    if size_text is not None:
        if not (size_text.isascii() and size_text.isdigit()) or len(size_text) > 20:
            return MAIL_SYNTAX
        size = int(size_text)
        if size > max_size:
            return TOO_BIG
    if params:
        return UNKNOWN_PARAMETER
    return Mail(address, size)


def read_rcpt(argument: str, *, extended: bool) -> str | SmtpReply:
    """``TO:<path>`` as RCPT gives it: the forward-path, or the reply that refuses it."""
    if argument[:3].upper() != "TO:":
        return RCPT_SYNTAX
    rest = argument[3:].lstrip(" ")
    if not rest:
        return RCPT_SYNTAX
    path = simple_path(rest) or read_path(rest, reverse=False)
    if path is None:
        return MALFORMED_ADDRESS
    address, parameters = path
    if parameters:
        params = _parameters(parameters, extended, RCPT_SYNTAX)
        return params if isinstance(params, SmtpReply) else UNKNOWN_PARAMETER
    return address


@dataclass(frozen=True, slots=True)
class Chunk:
    """A BDAT command: how many octets follow it, and whether they end the message."""

    size: int
    last: bool


MAX_CHUNK_DIGITS = 18
"""Longer sizes are refused as syntax: no message is near 10**18 octets."""


def read_bdat(argument: str) -> Chunk | None:
    """``chunk-size [SP end-marker]`` (RFC 3030 2), or None when it cannot be read: then
    nobody knows where the chunk ends, and the session cannot go on."""
    size, _, marker = argument.partition(" ")
    if not (size.isascii() and size.isdigit()) or len(size) > MAX_CHUNK_DIGITS:
        return None
    marker = marker.strip(" ")
    if marker and marker.upper() != "LAST":
        return None
    return Chunk(int(size), bool(marker))


def _parameters(text: str, extended: bool, syntax: SmtpReply) -> dict[str, str] | SmtpReply:
    """RFC 5321 4.1.2 ``esmtp-keyword ["=" esmtp-value]``, upper-cased, each once."""
    if not extended:
        return syntax
    params: dict[str, str] = {}
    for param in text.upper().split(" "):
        if not param:
            continue  # more than one space between parameters: tolerated
        keyword, equals, value = param.partition("=")
        if (
            not keyword
            or not keyword[0].isalnum()
            or not keyword.replace("-", "").isalnum()
            or (equals and not _esmtp_value(value))
            or keyword in params
        ):
            return syntax
        params[keyword] = value
    return params


def _esmtp_value(value: str) -> bool:
    # RFC 5321 4.1.2: 1*(%d33-60 / %d62-126): printable ASCII without "=".
    return bool(value) and all(33 <= ord(c) <= 126 and c != "=" for c in value)
