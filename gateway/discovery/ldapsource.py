"""Certificates from an LDAP directory (Direct item 19).

Anonymous bind, the search base from the root DSE's ``namingContexts``
(RFC 4512 section 5.1), a subtree search for ``mail=<address>`` (or the domain
for an org-bound entry), reading ``userSMIMECertificate`` (RFC 2798),
``userCertificate`` and ``userCertificate;binary`` (RFC 4523). ldap3 is
synchronous, so the whole exchange runs in a worker thread: the event loop
never waits on a socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from dataclasses import dataclass
from typing import Protocol

import ldap3
from ldap3.core.exceptions import (
    LDAPBindError,
    LDAPException,
    LDAPSocketOpenError,
    LDAPSocketReceiveError,
)
from ldap3.utils.conv import escape_filter_chars

from gateway.core.certs import CertRef, KeyMaterialError

from .parsing import certificates_in
from .types import Outcome, Source, SourceReport

DEFAULT_TIMEOUT_SECONDS = 5.0
"""Connect and per-operation timeout; a dead server costs at most this (DCDT D10)."""
MAX_ENTRIES = 20
"""An address names one person; a directory answering more is misconfigured,
and we read no further than this."""
CERT_ATTRIBUTES = ("userSMIMECertificate", "userCertificate", "userCertificate;binary")


@dataclass(frozen=True, slots=True)
class LdapServer:
    host: str
    port: int = 389

    def __str__(self) -> str:
        return f"ldap://{self.host}:{self.port}"


class LdapDirectory(Protocol):
    """What discovery needs from a directory: the certificates of one mail value."""

    async def certificates(self, server: LdapServer, mail: str, *, connect_to: str | None = None) -> SourceReport: ...


class Ldap3Directory:
    def __init__(self, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        self.timeout = timeout

    async def certificates(self, server: LdapServer, mail: str, *, connect_to: str | None = None) -> SourceReport:
        """``connect_to`` is the address the host resolved to through our own nameservers."""
        return await asyncio.to_thread(self._search, server, mail, connect_to or server.host)

    def _search(self, server: LdapServer, mail: str, address: str) -> SourceReport:
        query = f"{server} (mail={mail})"
        try:
            values, detail = self._read(address, server.port, mail)
        except (LDAPSocketOpenError, LDAPSocketReceiveError) as exc:
            return SourceReport(Source.LDAP, query, Outcome.UNREACHABLE, detail=str(exc))
        except LDAPException as exc:
            return SourceReport(Source.LDAP, query, Outcome.ERROR, detail=f"{type(exc).__name__}: {exc}")
        if values is None:
            return SourceReport(Source.LDAP, query, Outcome.NO_SUCH_NAME, detail=detail)
        certs: list[CertRef] = []
        problems = []
        for attr, value in values:
            try:
                certs.extend(certificates_in(value))
            except KeyMaterialError as exc:
                problems.append(f"{attr}: {exc}")
        unique = tuple(dict.fromkeys(certs))
        outcome = Outcome.FOUND if unique else Outcome.EMPTY
        return SourceReport(Source.LDAP, query, outcome, unique, "; ".join([detail, *problems]).strip("; "))

    def _read(self, host: str, port: int, mail: str) -> tuple[list[tuple[str, bytes]] | None, str]:
        # ldap3 packs the receive timeout into SO_RCVTIMEO as whole seconds: an int, or it fails
        seconds = max(1, math.ceil(self.timeout))
        srv = ldap3.Server(host, port=port, get_info=ldap3.DSA, connect_timeout=self.timeout)
        conn = ldap3.Connection(
            srv, auto_bind=ldap3.AUTO_BIND_NONE, receive_timeout=seconds, read_only=True, raise_exceptions=False
        )
        try:
            conn.open()
            if not conn.bind():  # anonymous (Direct item 19)
                raise LDAPBindError(f"anonymous bind refused: {conn.result}")
            info = srv.info
            bases = list(info.naming_contexts) if info is not None and info.naming_contexts else []
            if not bases:
                return None, "the root DSE names no namingContexts"
            found: list[tuple[str, bytes]] = []
            entries = 0
            for base in bases:
                conn.search(
                    base, f"(mail={escape_filter_chars(mail)})", ldap3.SUBTREE,
                    attributes=list(CERT_ATTRIBUTES), size_limit=MAX_ENTRIES, time_limit=seconds,
                )
                for entry in conn.response or []:
                    if entry.get("type") != "searchResEntry":
                        continue
                    entries += 1
                    for attr, raw in entry.get("raw_attributes", {}).items():
                        if attr.split(";")[0].lower() in ("usersmimecertificate", "usercertificate"):
                            found.extend((attr, v) for v in raw)
            if not entries:
                return None, f"no entry under {', '.join(bases)}"
            return found, f"{entries} entr{'y' if entries == 1 else 'ies'}"
        finally:
            with contextlib.suppress(LDAPException, OSError):
                conn.unbind()
            # ldap3 keeps the socket of a connect that failed; close it ourselves
            sock = getattr(conn, "socket", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
