"""The common MAIL FROM / RCPT TO argument read quickly: ``<local@domain> [params]``.

aiosmtpd reads each address with the ``email`` package's RFC 5322 header
parser (``get_angle_addr``): comments, quoted strings, source routes,
obsolete forms. That costs more than the rest of the command (hundreds of
microseconds per address on these machines, twice per message). Nearly every
path a HISP sends is a plain dot-atom on both sides of the "@" (RFC 5321
4.1.2 ``Dot-string "@" Domain``); for those this answers exactly what
aiosmtpd's reading would (tests/test_smtp_data.py checks it on generated
arguments), and for anything else it answers None and aiosmtpd reads it.
"""

from __future__ import annotations

import string

# RFC 5322 3.2.3 atext: what a dot-atom holds between its dots.
_ATEXT = frozenset(string.ascii_letters + string.digits + "!#$%&'*+/=?^_`{|}~-")


def simple_path(argument: str) -> tuple[str, str] | None:
    """(address, parameters) for ``<dot-atom@dot-atom> [parameters]``, else None (read it the long way)."""
    if not argument.startswith("<"):
        return None
    close = argument.find(">")
    if close < 0:
        return None
    address = argument[1:close]
    parameters = argument[close + 1 :].lstrip(" \t")
    if parameters.startswith("("):
        return None  # a comment after the path (CFWS): the long way
    local, at, domain = address.rpartition("@")
    if not at or not _dot_atom(local) or not _dot_atom(domain):
        return None
    return address, parameters


def _dot_atom(text: str) -> bool:
    return (
        bool(text)
        and text[0] != "."
        and text[-1] != "."
        and ".." not in text
        and _ATEXT.issuperset(text.replace(".", ""))
    )
