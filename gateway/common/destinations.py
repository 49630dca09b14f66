"""Where a fetch may connect: public addresses only, unless configured otherwise.

The URLs the gateway fetches on its own (AIA caIssuers, CRL distribution
points, OCSP responders, DNS CERT IPKIX/URI records) are written by whoever
made a certificate or a DNS zone, that is by a peer. Fetching whatever they
name would let a peer make the gateway reach its own network: a loopback
admin port, a database on a private address, the cloud metadata service at
169.254.169.254 (server-side request forgery). So by default a fetch connects
only to addresses in no special-purpose range of the IANA registries
(RFC 6890), and the check is made on the address actually connected to,
after resolving the name (see ``http_fetch``), and again after each redirect.

``Destinations.allowing(networks)`` opens chosen networks (tests on
loopback, a private deployment whose CA publishes CRLs internally);
``Destinations.anywhere()`` checks nothing (trust bundles, whose URL the
administrator typed).
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class AddressClass(enum.Enum):
    """Why an address is not public (the special-purpose ranges of RFC 6890 and successors)."""

    UNSPECIFIED = "unspecified"
    LOOPBACK = "loopback"
    PRIVATE = "private"
    SHARED = "shared"
    LINK_LOCAL = "link-local"
    MULTICAST = "multicast"
    RESERVED = "reserved"


_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

_SPECIAL: tuple[tuple[IPNetwork, AddressClass], ...] = (
    (_V4("0.0.0.0/8"), AddressClass.UNSPECIFIED),  # "this network", RFC 1122 3.2.1.3
    (_V4("10.0.0.0/8"), AddressClass.PRIVATE),  # RFC 1918
    (_V4("100.64.0.0/10"), AddressClass.SHARED),  # carrier-grade NAT, RFC 6598
    (_V4("127.0.0.0/8"), AddressClass.LOOPBACK),  # RFC 1122 3.2.1.3
    (_V4("169.254.0.0/16"), AddressClass.LINK_LOCAL),  # RFC 3927; cloud metadata at 169.254.169.254
    (_V4("172.16.0.0/12"), AddressClass.PRIVATE),  # RFC 1918
    (_V4("192.0.0.0/24"), AddressClass.RESERVED),  # IETF protocol assignments, RFC 6890
    (_V4("192.0.2.0/24"), AddressClass.RESERVED),  # documentation, RFC 5737
    (_V4("192.88.99.0/24"), AddressClass.RESERVED),  # 6to4 relay anycast, deprecated by RFC 7526
    (_V4("192.168.0.0/16"), AddressClass.PRIVATE),  # RFC 1918
    (_V4("198.18.0.0/15"), AddressClass.RESERVED),  # benchmarking, RFC 2544
    (_V4("198.51.100.0/24"), AddressClass.RESERVED),  # documentation, RFC 5737
    (_V4("203.0.113.0/24"), AddressClass.RESERVED),  # documentation, RFC 5737
    (_V4("224.0.0.0/4"), AddressClass.MULTICAST),  # RFC 5771
    (_V4("240.0.0.0/4"), AddressClass.RESERVED),  # RFC 1112, with the broadcast 255.255.255.255
    (_V6("::/128"), AddressClass.UNSPECIFIED),  # RFC 4291 2.5.2
    (_V6("::1/128"), AddressClass.LOOPBACK),  # RFC 4291 2.5.3
    (_V6("::/96"), AddressClass.RESERVED),  # IPv4-compatible, deprecated, RFC 4291 2.5.5.1
    (_V6("64:ff9b:1::/48"), AddressClass.PRIVATE),  # local-use NAT64, RFC 8215
    (_V6("100::/64"), AddressClass.RESERVED),  # discard-only, RFC 6666
    (_V6("2001::/23"), AddressClass.RESERVED),  # IETF protocol assignments (Teredo 2001::/32), RFC 2928
    (_V6("2001:db8::/32"), AddressClass.RESERVED),  # documentation, RFC 3849
    (_V6("fc00::/7"), AddressClass.PRIVATE),  # unique local, RFC 4193
    (_V6("fe80::/10"), AddressClass.LINK_LOCAL),  # RFC 4291 2.5.6
    (_V6("fec0::/10"), AddressClass.PRIVATE),  # site-local, deprecated by RFC 3879
    (_V6("ff00::/8"), AddressClass.MULTICAST),  # RFC 4291 2.7
)

_NAT64 = _V6("64:ff9b::/96")
"""RFC 6052: a NAT64 gateway forwards 64:ff9b::a.b.c.d to the IPv4 address a.b.c.d."""


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for when connecting through it:
    IPv4-mapped (::ffff:a.b.c.d, RFC 4291 2.5.5.2, what a dual-stack socket
    connects to), NAT64 (RFC 6052) and 6to4 (2002:aabb:ccdd::, RFC 3056)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def classify(address: IPAddress) -> AddressClass | None:
    """The special-purpose class of ``address``, or None for a public address.
    An IPv6 address that stands for an IPv4 one is judged as that IPv4 address."""
    inner = embedded_ipv4(address)
    if inner is not None:
        return classify(inner)
    for network, kind in _SPECIAL:
        if address.version == network.version and address in network:
            return kind
    return None


@dataclass(frozen=True, slots=True)
class Destinations:
    """Which addresses a fetch may connect to."""

    allow: tuple[IPNetwork, ...] = ()
    """Networks permitted although they are not public."""
    check: bool = True
    """False: every address is permitted (``anywhere``)."""

    @classmethod
    def public(cls) -> Destinations:
        return cls()

    @classmethod
    def allowing(cls, networks: Iterable[str | IPNetwork]) -> Destinations:
        """Public addresses and ``networks`` (e.g. ``["127.0.0.1/32"]``); raises ValueError on a malformed network."""
        return cls(tuple(ipaddress.ip_network(n, strict=False) if isinstance(n, str) else n for n in networks))

    @classmethod
    def anywhere(cls) -> Destinations:
        return cls(check=False)

    def refused(self, address: IPAddress) -> AddressClass | None:
        """Why a connection to ``address`` is refused, or None when it is permitted."""
        if not self.check:
            return None
        kind = classify(address)
        if kind is None:
            return None
        inner = embedded_ipv4(address)
        for network in self.allow:
            if (address.version == network.version and address in network) or (
                inner is not None and network.version == 4 and inner in network
            ):
                return None
        return kind


PUBLIC_ONLY = Destinations()
"""The default: public addresses only."""


def parse_networks(values: object) -> tuple[IPNetwork, ...]:
    """A configuration list of networks (``["127.0.0.1/32", "fd00::/8"]``); raises ValueError saying what is wrong."""
    if not isinstance(values, list | tuple) or not all(isinstance(v, str) for v in values):
        raise ValueError("expected a list of networks such as \"10.1.0.0/16\"")
    out: list[IPNetwork] = []
    for value in values:
        try:
            out.append(ipaddress.ip_network(value, strict=False))
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a network ({exc})") from None
    return tuple(out)
