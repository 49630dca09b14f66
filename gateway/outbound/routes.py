"""Where to deliver a recipient's mail: a static route, else DNS MX.

RFC 5321 section 5.1: the MX records of the domain, lowest preference first
(equal ones in random order, to spread load); when the domain has no MX
record at all, the domain itself is the one "implicit MX" (its A/AAAA). A
single MX of "." (RFC 7505, "null MX") says the domain accepts no mail: a
final failure, no connection attempted. A domain that does not exist
(NXDOMAIN) is final too; DNS that cannot be asked is temporary.

The static table (``[routes]``) comes first, so several gateways can run on
loopback and a site can pin a partner to a relay. DNS goes through the same
``DnsClient`` as certificate discovery (explicit nameservers, TTL cache, TCP
on truncation), not the system resolver.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import dns.rdtypes.ANY.MX

from gateway.discovery.dnsclient import DnsClient, Status

from .settings import StaticRoute, TlsMode

MAX_DESTINATIONS = 10
"""Addresses tried per attempt: a domain publishing fifty MX hosts costs ten connection timeouts at most."""


@dataclass(frozen=True, slots=True)
class Destination:
    host: str
    """The name the route gave (the MX exchange or the static host), for TLS names and logs."""
    address: str
    """What to connect to (an IP address, or the static route's host)."""
    port: int
    tls: TlsMode

    def __str__(self) -> str:
        where = f"[{self.address}]" if ":" in self.address else self.address
        return f"{where}:{self.port}" if self.host == self.address else f"{self.host} ({where}:{self.port})"


@dataclass(frozen=True, slots=True)
class Routed:
    destinations: tuple[Destination, ...]
    how: str
    """``static route``, ``MX``, ``implicit MX``: for the audit trail."""


@dataclass(frozen=True, slots=True)
class Unroutable:
    permanent: bool
    null_mx: bool
    detail: str


RouteResult = Routed | Unroutable


class Router(Protocol):
    async def route(self, domain: str, *, at: datetime) -> RouteResult: ...


Shuffle = Callable[[list[str]], None]


class MxRouter:
    def __init__(
        self,
        dns: DnsClient,
        *,
        static: Mapping[str, StaticRoute],
        tls_for: Callable[[str], TlsMode],
        mx_port: int = 25,
        shuffle: Shuffle = random.shuffle,
    ) -> None:
        self.dns = dns
        self.static = {d.lower().rstrip("."): r for d, r in static.items()}
        self.tls_for = tls_for
        self.mx_port = mx_port
        self._shuffle = shuffle

    async def route(self, domain: str, *, at: datetime) -> RouteResult:
        domain = domain.lower().rstrip(".")
        tls = self.tls_for(domain)
        fixed = self.static.get(domain)
        if fixed is not None:
            return Routed((Destination(fixed.host, fixed.host, fixed.port, tls),), "static route")
        answer = await self.dns.query(domain, "MX", at=at)
        if answer.status is Status.NXDOMAIN:
            return Unroutable(True, False, f"{domain} does not exist ({answer.describe()}: NXDOMAIN)")
        if answer.status in (Status.FAILED, Status.UNREACHABLE):
            return Unroutable(False, False, f"{answer.describe()}: {answer.detail or answer.status.value}")
        if answer.status is Status.NODATA or answer.rrset is None:
            hosts, how = [domain], "implicit MX"
        else:
            records = [r for r in answer.rrset if isinstance(r, dns.rdtypes.ANY.MX.MX)]
            if any(r.exchange.to_text() == "." for r in records):
                # RFC 7505 section 3: a null MX is the only MX; either way, no mail
                return Unroutable(True, True, f"{domain} publishes a null MX (RFC 7505): it accepts no mail")
            hosts, how = self._by_preference(records), "MX"
        destinations: list[Destination] = []
        problems: list[str] = []
        temporary = False
        for host in hosts:
            addresses, problem, temp = await self._addresses(host, at)
            destinations += [Destination(host, a, self.mx_port, tls) for a in addresses]
            if problem:
                problems.append(problem)
                temporary |= temp
            if len(destinations) >= MAX_DESTINATIONS:
                break
        if destinations:
            return Routed(tuple(destinations[:MAX_DESTINATIONS]), how)
        return Unroutable(not temporary, False, f"no address for {how} of {domain}: " + "; ".join(problems))

    def _by_preference(self, records: Sequence[dns.rdtypes.ANY.MX.MX]) -> list[str]:
        ordered: list[str] = []
        for preference in sorted({r.preference for r in records}):
            same = sorted({r.exchange.to_text().rstrip(".").lower() for r in records if r.preference == preference})
            self._shuffle(same)
            ordered += [h for h in same if h not in ordered]
        return ordered

    async def _addresses(self, host: str, at: datetime) -> tuple[list[str], str, bool]:
        """A then AAAA of one host; the problem (and whether it is temporary) when neither gives one."""
        found: list[str] = []
        problems: list[str] = []
        temporary = False
        for rdtype in ("A", "AAAA"):
            answer = await self.dns.query(host, rdtype, at=at)
            if answer.status is Status.ANSWER and answer.rrset is not None:
                found += [r.to_text() for r in answer.rrset]
            elif answer.status in (Status.FAILED, Status.UNREACHABLE):
                temporary = True
                problems.append(f"{answer.describe()}: {answer.detail or answer.status.value}")
            else:
                problems.append(f"{answer.describe()}: {answer.status.value}")
        return found, ("" if found else ", ".join(problems)), temporary
