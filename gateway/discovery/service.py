"""Finding the certificates to encrypt to (Direct items 16-21).

The places are asked in a fixed order and the first that yields a valid
certificate wins, so address-bound always beats org-bound and DNS beats LDAP:

1. DNS CERT at the address-bound name (``bob.example.test`` for ``bob@example.test``);
2. DNS CERT at the domain (org-bound);
3. each LDAP server of ``_ldap._tcp.<domain>`` in RFC 2782 order: ``mail=<address>``,
   then ``mail=<domain>``; a server that is unreachable or holds no valid certificate
   passes the turn to the next (DCDT D10, RI issue #199).

Certificates are checked cheapest first (validity period, key usage, binding)
and then judged (trust path, revocation). Every valid certificate of the
winning place is kept: the message is encrypted to all of them (item 20).
Nothing valid anywhere gives ``DoNotSend`` (item 21), naming every place asked.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from cryptography import x509

from gateway.common.ttl_cache import TtlCache
from gateway.core.certs import CertRef

from .dnscert import CertificateRecords
from .dnsclient import MAX_POSITIVE_TTL, DnsClient, Status
from .judge import CertificateJudge
from .ldapsource import LdapDirectory, LdapServer
from .srv import Draw, SrvTarget, rfc2782_order
from .types import (
    Binding,
    Discovered,
    DoNotSend,
    Dropped,
    DropReason,
    Outcome,
    Source,
    SourceReport,
)


def split_address(address: str) -> tuple[str, str]:
    local, at_sign, domain = address.strip().rpartition("@")
    if not at_sign or not local or not domain:
        raise ValueError(f"not an email address: {address!r}")
    return local, domain.lower().rstrip(".")


def address_name(address: str) -> str:
    """RFC 4398 section 3.3 as Direct applies it: the "@" becomes a dot."""
    local, domain = split_address(address)
    return f"{local}.{domain}"


class Discovery:
    """Built once (``build_discovery``); ``discover`` is safe to call concurrently."""

    def __init__(
        self,
        dns: DnsClient,
        dns_certs: CertificateRecords,
        ldap: LdapDirectory,
        judge: CertificateJudge,
        *,
        draw: Draw | None = None,
        use_ldap: bool = True,
    ) -> None:
        self.dns = dns
        self.dns_certs = dns_certs
        self.ldap = ldap
        self.judge = judge
        self._draw = draw
        self.use_ldap = use_ldap
        self._ldap_cache: TtlCache[SourceReport] = TtlCache()

    async def discover(self, address: str, *, local_domain: str, at: datetime) -> Discovered | DoNotSend:
        """``local_domain`` is our sender's domain: its outgoing anchors judge the certificates."""
        local, domain = split_address(address)
        address = f"{local}@{domain}"
        reports: list[SourceReport] = []
        dropped: list[Dropped] = []

        async def attempt(report: SourceReport, binding: Binding) -> Discovered | None:
            reports.append(report)
            if report.outcome is not Outcome.FOUND:
                return None
            kept = await self._select(report, binding, address, domain, local_domain, at, dropped)
            if not kept:
                return None
            return Discovered(address, kept, binding, report.source, tuple(reports), tuple(dropped))

        for name, binding in ((address_name(address), Binding.ADDRESS), (domain, Binding.ORG)):
            found = await attempt(await self.dns_certs.lookup(name, at=at), binding)
            if found:
                return found
        if self.use_ldap:
            targets, srv_report, srv_ttl = await self._ldap_servers(domain, at)
            if srv_report is not None:
                reports.append(srv_report)
            for target in targets:
                server = LdapServer(target.host.rstrip("."), target.port)
                connect_to = await self._resolve(server.host, at)
                for mail, binding in ((address, Binding.ADDRESS), (domain, Binding.ORG)):
                    report = await self._ldap_lookup(server, mail, connect_to, srv_ttl, at)
                    found = await attempt(report, binding)
                    if found:
                        return found
                    if report.outcome is Outcome.UNREACHABLE:
                        break  # the org-bound search would only time out again
        return DoNotSend(address, tuple(reports), tuple(dropped))

    async def _ldap_servers(
        self, domain: str, at: datetime
    ) -> tuple[list[SrvTarget], SourceReport | None, timedelta]:
        name = f"_ldap._tcp.{domain}"
        answer = await self.dns.query(name, "SRV", at=at)
        query = answer.describe()
        if answer.status in (Status.FAILED, Status.UNREACHABLE):
            report = SourceReport(Source.DNS, query, answer.status.outcome, detail=answer.detail, cached=answer.cached)
            return [], report, timedelta(0)
        if answer.rrset is None:
            outcome = Outcome.NO_SUCH_NAME if answer.status is Status.NXDOMAIN else Outcome.EMPTY
            report = SourceReport(Source.DNS, query, outcome, detail="no LDAP server published", cached=answer.cached)
            return [], report, timedelta(0)
        targets = [SrvTarget(r.priority, r.weight, r.port, r.target.to_text()) for r in answer.rrset]
        ordered = rfc2782_order(targets, self._draw) if self._draw else rfc2782_order(targets)
        detail = "servers in order: " + ", ".join(str(t) for t in ordered)
        report = SourceReport(Source.DNS, query, Outcome.FOUND, detail=detail, cached=answer.cached)
        return ordered, report, timedelta(seconds=answer.rrset.ttl)

    async def _ldap_lookup(
        self, server: LdapServer, mail: str, connect_to: str | None, srv_ttl: timedelta, at: datetime
    ) -> SourceReport:
        """A directory has no TTLs: its answers are believed as long as the SRV record
        that named the server, and "nothing there" (or a dead server) only briefly."""
        key = (server, mail.lower())
        hit = self._ldap_cache.get(key, at)
        if hit is not None:
            return replace(hit, cached=True)
        report = await self.ldap.certificates(server, mail, connect_to=connect_to)
        ttl = min(srv_ttl, MAX_POSITIVE_TTL) if report.outcome is Outcome.FOUND else self.dns.negative_ttl
        self._ldap_cache.put(key, report, at, ttl)
        return report

    async def _resolve(self, host: str, at: datetime) -> str | None:
        """The SRV target through our own nameservers; None leaves it to the system resolver
        (in ldap3's worker thread, never on the loop)."""
        for rdtype in ("A", "AAAA"):
            answer = await self.dns.query(host, rdtype, at=at)
            if answer.status is Status.ANSWER and answer.rrset is not None:
                return answer.rrset[0].to_text()
        return None

    async def _select(
        self,
        report: SourceReport,
        binding: Binding,
        address: str,
        domain: str,
        local_domain: str,
        at: datetime,
        dropped: list[Dropped],
    ) -> tuple[CertRef, ...]:
        # CA certificates published beside a leaf help build its path; they are not recipients
        cas = [c for c in report.certificates if _is_ca(c)]
        leaves = [c for c in report.certificates if c not in cas]
        kept: list[CertRef] = []
        for cert in leaves:
            problem = _precheck(cert, address, domain, at)
            if problem is None:
                verdict = await self.judge.judge(
                    cert, recipient=address, local_domain=local_domain, at=at, intermediates=cas
                )
                if not verdict.trusted:
                    problem = Dropped(cert, DropReason.UNTRUSTED, verdict.detail, verdict.temporary)
            if problem is None:
                kept.append(cert)
            else:
                dropped.append(
                    Dropped(problem.certificate, problem.reason, problem.detail, problem.temporary, report.query)
                )
        return tuple(kept)


def _is_ca(cert: CertRef) -> bool:
    try:
        return bool(cert.x509.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _precheck(cert: CertRef, address: str, domain: str, at: datetime) -> Dropped | None:
    """The checks that need no anchors, so the report names them plainly."""
    try:
        cert.x509  # noqa: B018 -- parse now
    except ValueError as exc:
        return Dropped(None, DropReason.NOT_A_CERTIFICATE, str(exc))
    if at > cert.not_after:
        return Dropped(cert, DropReason.EXPIRED, f"expired {cert.not_after:%Y-%m-%d %H:%M} UTC")
    if at < cert.not_before:
        return Dropped(cert, DropReason.NOT_YET_VALID, f"valid from {cert.not_before:%Y-%m-%d %H:%M} UTC")
    if not cert.can_encrypt:
        return Dropped(cert, DropReason.WRONG_KEY_USAGE, "keyUsage lacks keyEncipherment (Direct item 13)")
    # Direct item 12: the address in subjectAltName rfc822Name, or the domain in dNSName
    if address.lower() not in cert.email_addresses and domain not in cert.dns_names:
        names = ", ".join(cert.email_addresses + cert.dns_names) or "no name"
        return Dropped(cert, DropReason.OTHER_BINDING, f"bound to {names}, not {address}")
    return None
