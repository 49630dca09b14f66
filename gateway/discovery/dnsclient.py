"""Asking DNS: one question to the configured nameservers, over UDP and,
when the answer is truncated, again over TCP (RFC 1035 4.2.2, RFC 7766;
Direct item 17: a 4096-bit certificate does not fit in 512 bytes).

The nameservers are explicit (``host:port``), never the system resolver, so
tests and air-gapped sites point discovery at their own server. Each server is
asked in turn until one answers authoritatively enough (NOERROR or NXDOMAIN);
SERVFAIL, REFUSED and timeouts move on to the next.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

import dns.asyncquery
import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from gateway.common.ttl_cache import TtlCache

from .types import Outcome

DEFAULT_TIMEOUT_SECONDS = 3.0
"""Per server and question; the sender's SMTP client waits minutes, but
discovery runs before every first message to a new address."""
DEFAULT_NEGATIVE_TTL = timedelta(seconds=60)
"""How long "no such record" is believed; brief, so a new publication is seen soon."""
EDNS_PAYLOAD = 1232
"""EDNS0 (RFC 6891) UDP size: the DNS Flag Day 2020 value, which avoids IP
fragmentation; a 2048-bit certificate fits, a 4096-bit one comes back truncated."""
MAX_POSITIVE_TTL = timedelta(days=1)
"""A record claiming a week-long TTL is re-asked daily anyway (as resolvers cap it)."""


class NameserverError(ValueError):
    """A nameserver setting that cannot be used."""


@dataclass(frozen=True, slots=True)
class Nameserver:
    host: str
    port: int = 53

    @classmethod
    def parse(cls, text: str) -> Nameserver:
        """``1.2.3.4``, ``1.2.3.4:5353``, ``[::1]:5353`` or ``::1``."""
        text = text.strip()
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            port = rest.removeprefix(":") or "53"
        elif text.count(":") == 1:
            host, port = text.split(":")
        else:
            host, port = text, "53"
        try:
            number = int(port)
        except ValueError:
            raise NameserverError(f"{text!r}: the port is not a number") from None
        if not host or not 0 < number < 65536:
            raise NameserverError(f"{text!r}: expected host or host:port")
        return cls(host, number)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class Status(enum.Enum):
    ANSWER = "answer"
    NODATA = "nodata"
    NXDOMAIN = "nxdomain"
    FAILED = "failed"  # a server answered, but with SERVFAIL, REFUSED..., and none did better
    UNREACHABLE = "unreachable"  # no server answered at all (timeouts, connection errors)

    @property
    def outcome(self) -> Outcome:
        return Outcome.ERROR if self is Status.FAILED else Outcome.UNREACHABLE


@dataclass(frozen=True, slots=True)
class DnsAnswer:
    name: str
    rdtype: str
    status: Status
    rrset: dns.rrset.RRset | None = None
    additional: tuple[dns.rrset.RRset, ...] = ()
    server: str = ""
    tcp: bool = False
    detail: str = ""
    cached: bool = False

    def describe(self) -> str:
        via = f" @{self.server}" if self.server else ""
        return f"{self.rdtype} {self.name}{via}" + (" (tcp)" if self.tcp else "")


class DnsClient:
    """Built once with its servers and limits; caches answers by TTL."""

    def __init__(
        self,
        nameservers: tuple[Nameserver, ...],
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        negative_ttl: timedelta = DEFAULT_NEGATIVE_TTL,
        cache: TtlCache[DnsAnswer] | None = None,
    ) -> None:
        if not nameservers:
            raise NameserverError("discovery needs at least one nameserver")
        self.nameservers = nameservers
        self.timeout = timeout
        self.negative_ttl = negative_ttl
        self.cache: TtlCache[DnsAnswer] = cache if cache is not None else TtlCache()
        self._in_flight: dict[tuple[str, str], asyncio.Future[tuple[DnsAnswer, timedelta]]] = {}

    async def query(self, name: str, rdtype: str, *, at: datetime) -> DnsAnswer:
        key = (name.lower().rstrip("."), rdtype)
        hit = self.cache.get(key, at)
        if hit is not None:
            return _cached(hit)
        # concurrent lookups of one name share one question (a burst to a new route costs one)
        pending = self._in_flight.get(key)
        if pending is not None:
            answer, _ = await asyncio.shield(pending)
            return answer
        future: asyncio.Future[tuple[DnsAnswer, timedelta]] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            answer, ttl = await self._ask(name, rdtype)
            future.set_result((answer, ttl))
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here: waiters re-raise it, nobody else need
            raise
        finally:
            del self._in_flight[key]
        self.cache.put(key, answer, at, ttl)
        return answer

    async def _ask(self, name: str, rdtype: str) -> tuple[DnsAnswer, timedelta]:
        try:
            qname = dns.name.from_text(name)
        except dns.exception.DNSException as exc:
            return DnsAnswer(name, rdtype, Status.FAILED, detail=f"not a DNS name: {exc}"), timedelta(0)
        wanted = dns.rdatatype.from_text(rdtype)
        problems = []
        answered = False
        for server in self.nameservers:
            q = dns.message.make_query(qname, wanted, use_edns=0, payload=EDNS_PAYLOAD)
            try:
                r, tcp = await dns.asyncquery.udp_with_fallback(
                    q, server.host, timeout=self.timeout, port=server.port
                )
            except dns.exception.Timeout:
                problems.append(f"{server}: timed out after {self.timeout:g} s")
                continue
            except (OSError, dns.exception.DNSException) as exc:
                problems.append(f"{server}: {exc}")
                continue
            answered = True
            rcode = r.rcode()
            if rcode == dns.rcode.NXDOMAIN:
                return DnsAnswer(name, rdtype, Status.NXDOMAIN, server=str(server), tcp=tcp), self._negative(r)
            if rcode != dns.rcode.NOERROR:
                problems.append(f"{server}: {dns.rcode.to_text(rcode)}")
                continue
            try:
                rrset = r.find_rrset(r.answer, qname, dns.rdataclass.IN, wanted)
            except KeyError:
                return DnsAnswer(name, rdtype, Status.NODATA, server=str(server), tcp=tcp), self._negative(r)
            ttl = min(timedelta(seconds=rrset.ttl), MAX_POSITIVE_TTL)
            additional = tuple(r.additional)
            return DnsAnswer(name, rdtype, Status.ANSWER, rrset, additional, str(server), tcp), ttl
        # failures are cached for the negative time too, so a dead server costs one timeout per route
        detail = "; ".join(problems)
        status = Status.FAILED if answered else Status.UNREACHABLE
        return DnsAnswer(name, rdtype, status, detail=detail), self.negative_ttl

    def _negative(self, r: dns.message.Message) -> timedelta:
        """RFC 2308 section 5: the SOA's minimum (and TTL) bounds a negative answer."""
        for rrset in r.authority:
            if rrset.rdtype == dns.rdatatype.SOA:
                soa_min = min(rrset.ttl, rrset[0].minimum)
                return min(self.negative_ttl, timedelta(seconds=soa_min))
        return self.negative_ttl


def _cached(answer: DnsAnswer) -> DnsAnswer:
    return DnsAnswer(
        answer.name, answer.rdtype, answer.status, answer.rrset, answer.additional,
        answer.server, answer.tcp, answer.detail, cached=True,
    )
