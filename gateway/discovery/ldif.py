"""LDIF for administrators who publish our certificates in an existing LDAP
directory (``directgw certs export-ldif``), shaped the way discovery reads
them (Direct item 19): one inetOrgPerson entry per address (or per domain, for
an org-bound certificate) with ``mail`` and ``userCertificate;binary``.

Values that are not plain ASCII text are base64 (RFC 2849 "::"); DN values are
escaped per RFC 4514.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable

from ldap3.utils.dn import escape_rdn

from gateway.core.certs import CertRef

LINE_WIDTH = 76
"""RFC 2849 folds long lines; 76 keeps them readable in any editor."""


def default_base(domain: str) -> str:
    return "ou=direct," + ",".join(f"dc={escape_rdn(label)}" for label in domain.strip(".").split("."))


def mail_of(cert: CertRef, domain: str) -> str:
    """The address a certificate is bound to within ``domain``, else the domain (org-bound)."""
    domain = domain.lower().rstrip(".")
    for address in cert.email_addresses:
        if address.rpartition("@")[2] == domain:
            return address
    return domain


def _safe(value: str) -> bool:
    # RFC 2849 SAFE-STRING: ASCII without NUL, CR, LF, not starting with space, ':' or '<'
    return (
        value.isascii()
        and not any(c in value for c in "\0\r\n")
        and not value.startswith((" ", ":", "<"))
        and not value.endswith(" ")
    )


def _line(attribute: str, value: str | bytes) -> str:
    if isinstance(value, str) and _safe(value):
        text = f"{attribute}: {value}"
    else:
        raw = value.encode() if isinstance(value, str) else value
        text = f"{attribute}:: {base64.b64encode(raw).decode()}"
    # folding: continuation lines start with one space (RFC 2849 section 2)
    first, rest = text[:LINE_WIDTH], text[LINE_WIDTH:]
    chunks = [first] + [" " + rest[i : i + LINE_WIDTH - 1] for i in range(0, len(rest), LINE_WIDTH - 1)]
    return "\n".join(chunks)


def export_ldif(domain: str, certificates: Iterable[CertRef], *, base: str | None = None) -> str:
    base = base or default_base(domain)
    by_mail: dict[str, list[CertRef]] = {}
    for cert in certificates:
        by_mail.setdefault(mail_of(cert, domain), []).append(cert)
    entries = []
    for mail, certs in sorted(by_mail.items()):
        local = mail.partition("@")[0] if "@" in mail else mail
        lines = [
            _line("dn", f"cn={escape_rdn(mail)},{base}"),
            "objectClass: inetOrgPerson",
            _line("cn", mail),
            _line("sn", local),
            _line("mail", mail),
            *(_line("userCertificate;binary", c.der) for c in dict.fromkeys(certs)),
        ]
        entries.append("\n".join(lines) + "\n")
    return "\n".join(entries)
