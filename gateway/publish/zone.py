"""One zone's records, built from what we publish, and the answer to one query.

No I/O here: ``build_zone`` turns (owner, certificate) pairs into RRsets and
``answer`` turns a parsed query into a response, following RFC 1034 section
4.3.2 (authoritative answers), RFC 2308 (negative answers: NXDOMAIN when the
name does not exist, NODATA when it exists without that type, both with the
zone's SOA in the authority section) and RFC 4398 (CERT records).

Owners follow specs/direct.md item 16: an address-bound certificate of
``bob@b.test`` lives at ``bob.b.test`` (the ``@`` replaced by a dot, as the
RI and DCDT do; a dotted local part gives several labels), an org-bound one
at ``b.test``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.CERT
import dns.rdtypes.ANY.NS
import dns.rdtypes.ANY.SOA
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.rrset

from gateway.core.certs import CertRef

from .settings import DnsSettings

CERT_TYPE_PKIX = 1
"""RFC 4398 section 2.1: an X.509 certificate, key tag and algorithm 0."""
SOA_REFRESH, SOA_RETRY, SOA_EXPIRE = 3600, 600, 1_209_600
"""RFC 1912 section 2.2 values; no secondary transfers from us, so they are informational."""

_IN = dns.rdataclass.IN
RRsets = dict[dns.rdatatype.RdataType, dns.rrset.RRset]


@dataclass(frozen=True)
class Zone:
    origin: dns.name.Name
    nodes: dict[dns.name.Name, RRsets]
    soa: dns.rrset.RRset
    negative_soa: dns.rrset.RRset
    """The SOA as negative answers carry it (RFC 2308 section 3), made once per zone."""
    names: frozenset[dns.name.Name]
    """Every name that exists: those with records and the empty non-terminals above them (RFC 8020)."""

    def exists(self, name: dns.name.Name) -> bool:
        return name in self.names


def owner_name(owner: str) -> dns.name.Name:
    """``bob@b.test`` -> ``bob.b.test.``; ``b.test`` -> ``b.test.``."""
    return dns.name.from_text(owner.strip().lower().replace("@", "."))


def find_zone(qname: dns.name.Name, zones: Iterable[str]) -> str | None:
    """The most specific of our zones that holds ``qname``; None: not ours."""
    best: str | None = None
    best_len = -1
    for z in zones:
        origin = dns.name.from_text(z)
        if qname.is_subdomain(origin) and len(origin) > best_len:
            best, best_len = z, len(origin)
    return best


def _serial(entries: Iterable[tuple[str, CertRef]]) -> int:
    # The serial changes whenever the content does. Nothing transfers the zone
    # from us (no AXFR), so the RFC 1982 ordering secondaries rely on is moot.
    digest = "".join(sorted(f"{o.lower()}:{c.sha256}" for o, c in entries))
    return zlib.crc32(digest.encode()) or 1


def _add(nodes: dict[dns.name.Name, RRsets], name: dns.name.Name, rdata: dns.rdata.Rdata, ttl: int) -> None:
    rrsets = nodes.setdefault(name, {})
    rrset = rrsets.get(rdata.rdtype)
    if rrset is None:
        rrset = rrsets[rdata.rdtype] = dns.rrset.RRset(name, _IN, rdata.rdtype)
    rrset.add(rdata, ttl)


def build_zone(zone: str, entries: Iterable[tuple[str, CertRef]], settings: DnsSettings) -> Zone:
    entries = list(entries)
    origin = dns.name.from_text(zone)
    ns_names = [dns.name.from_text(n) for n in settings.nameservers] or [dns.name.from_text("ns", origin)]
    nodes: dict[dns.name.Name, RRsets] = {}
    soa_rdata = dns.rdtypes.ANY.SOA.SOA(
        _IN, dns.rdatatype.SOA, ns_names[0], dns.name.from_text("hostmaster", origin), _serial(entries),
        SOA_REFRESH, SOA_RETRY, SOA_EXPIRE, settings.negative_ttl,
    )
    _add(nodes, origin, soa_rdata, settings.ttl)
    for ns in ns_names:
        _add(nodes, origin, dns.rdtypes.ANY.NS.NS(_IN, dns.rdatatype.NS, ns), settings.ttl)
        if ns.is_subdomain(origin):
            for address in settings.nameserver_addresses:
                rd: dns.rdata.Rdata
                if ":" in address:
                    rd = dns.rdtypes.IN.AAAA.AAAA(_IN, dns.rdatatype.AAAA, address)
                else:
                    rd = dns.rdtypes.IN.A.A(_IN, dns.rdatatype.A, address)
                _add(nodes, ns, rd, settings.ttl)
    for owner, cert in entries:
        name = owner_name(owner)
        if not name.is_subdomain(origin):
            continue  # the source gave us another zone's owner: not ours to publish
        cert_rd = dns.rdtypes.ANY.CERT.CERT(_IN, dns.rdatatype.CERT, CERT_TYPE_PKIX, 0, 0, cert.der)
        _add(nodes, name, cert_rd, settings.ttl)
    names: set[dns.name.Name] = set()
    for name in nodes:
        while name != origin and name not in names:
            names.add(name)
            name = name.parent()
    names.add(origin)
    soa = nodes[origin][dns.rdatatype.SOA]
    return Zone(origin, nodes, soa, _negative_soa(soa), frozenset(names))


def _negative_soa(soa: dns.rrset.RRset) -> dns.rrset.RRset:
    """RFC 2308 section 3: the SOA's TTL in a negative answer is min(SOA TTL, MINIMUM)."""
    minimum = soa[0].minimum
    out = dns.rrset.RRset(soa.name, _IN, dns.rdatatype.SOA)
    out.add(soa[0], min(soa.ttl, minimum))
    return out


def answer(query: dns.message.Message, zone: Zone | None, response: dns.message.Message) -> None:
    """Fill ``response`` (made from ``query``) with the authoritative answer, or REFUSED."""
    if zone is None:
        # RFC 1035 4.1.1: not authoritative and no recursion offered
        response.set_rcode(dns.rcode.REFUSED)
        return
    question = query.question[0]
    qname, qtype = question.name, question.rdtype
    if qtype in (dns.rdatatype.AXFR, dns.rdatatype.IXFR):
        response.set_rcode(dns.rcode.REFUSED)  # no zone transfers (RFC 5936 section 6)
        return
    response.flags |= dns.flags.AA
    node = zone.nodes.get(qname)
    if node is None:
        if not zone.exists(qname):
            response.set_rcode(dns.rcode.NXDOMAIN)
        response.authority.append(zone.negative_soa)
        return
    if qtype == dns.rdatatype.ANY:
        # RFC 8482 4.1: answer ANY with one RRset, so it is no amplification tool;
        # the lowest type, as Knot DNS does
        found = [node[min(node)]]
    else:
        found = [node[qtype]] if qtype in node else []
    if not found:
        response.authority.append(zone.negative_soa)  # NODATA (RFC 2308 section 2.2)
        return
    response.answer.extend(found)
