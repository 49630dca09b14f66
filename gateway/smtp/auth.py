"""SASL PLAIN and LOGIN as SMTP AUTH carries them (RFC 4954, RFC 4616), read purely.

The protocol layer (session.py) sends the challenges and reads the client's
lines; what those lines mean is decided here, without I/O: a response is
base64 (RFC 4954 4), ``*`` cancels the exchange, ``=`` is an empty initial
response. PLAIN is ``authzid NUL authcid NUL passwd`` (RFC 4616 2); an
authorization identity other than the login itself is refused, since no
account may act for another. LOGIN is the de facto two-prompt exchange
(draft-murchison-sasl-login) that Outlook-era clients and many EHRs still use.

The password stays bytes (argon2 checks bytes) and is never in a repr or a log.
"""

from __future__ import annotations

import base64
import binascii
import enum

from .interface import Credentials

MECHANISMS = ("LOGIN", "PLAIN")
"""What EHLO offers once TLS is up (RFC 4954 requires TLS for plain-text mechanisms here)."""

MAX_AUTH_LINE = 12288
"""RFC 4954 4: an AUTH command line, and each response line, may be up to 12288 octets."""

LOGIN_USERNAME = b"Username:"
LOGIN_PASSWORD = b"Password:"


class SaslProblem(enum.Enum):
    """Why an exchange ended without credentials to check (none counts as a failed login)."""

    CANCELLED = "cancelled"
    """The client answered ``*`` (RFC 4954 4: 501)."""
    NOT_BASE64 = "not-base64"
    MALFORMED = "malformed"
    """Not ``authzid NUL authcid NUL passwd``, an empty name or password, or a name that is not UTF-8."""
    OTHER_IDENTITY = "other-identity"
    """PLAIN asked to act as another identity than the login."""


def response(line: bytes) -> bytes | SaslProblem:
    """The decoded bytes of a client's response line (its CRLF included or not)."""
    text = line.rstrip(b"\r\n").strip()
    if text == b"*":
        return SaslProblem.CANCELLED
    if text == b"=":
        return b""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return SaslProblem.NOT_BASE64


def plain(message: bytes) -> Credentials | SaslProblem:
    """RFC 4616 2: ``[authzid] NUL authcid NUL passwd``."""
    parts = message.split(b"\x00")
    if len(parts) != 3:
        return SaslProblem.MALFORMED
    authzid, authcid, password = parts
    login = _name(authcid)
    if isinstance(login, SaslProblem) or not password:
        return SaslProblem.MALFORMED
    if authzid and authzid != authcid:
        return SaslProblem.OTHER_IDENTITY
    return Credentials(login, password)


def login_name(message: bytes) -> str | SaslProblem:
    return _name(message)


def login_password(name: str, message: bytes) -> Credentials | SaslProblem:
    if not message:
        return SaslProblem.MALFORMED
    return Credentials(name, message)


def _name(raw: bytes) -> str | SaslProblem:
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        return SaslProblem.MALFORMED
    if not name or any(ord(c) < 0x20 for c in name):
        return SaslProblem.MALFORMED
    return name


def challenge(prompt: bytes) -> bytes:
    """A ``334`` continuation line: the base64 prompt, and a space even when it is empty (RFC 4954 4)."""
    return b"334 " + base64.b64encode(prompt)
