"""The ``[dns]`` table: our authoritative responder.

```toml
[dns]
enabled = true                       # started by `directgw serve`; `directgw dns` runs it alone
listen = "0.0.0.0:53"                # address and port, UDP and TCP ("[::]:53" for IPv6)
zones = ["b.test"]                   # the domains we answer for; anything else is REFUSED
nameservers = ["ns1.b.test"]         # the zones' NS records (default: ns.<zone>)
nameserver_addresses = ["192.0.2.1"] # A/AAAA for those names when they lie inside a zone
ttl = 3600                           # CERT, NS, A records
negative_ttl = 300                   # SOA MINIMUM: how long others may hold "no such name"
refresh = 5                          # seconds a zone read from the database is reused (0: every query)
certificates = ["certs/bob.pem"]     # files published besides what the database holds
```
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_PORT = 53
DEFAULT_TTL = 3600
"""An hour: certificates change rarely, and a replaced one is usually valid
alongside its successor for longer than that."""
DEFAULT_NEGATIVE_TTL = 300
"""RFC 2308 section 5 recommends one to three hours for the SOA MINIMUM; a
newly added address should become reachable sooner than that."""


DEFAULT_REFRESH_SECONDS = 5
"""A new key is published within five seconds, while a query flood costs one
database read per zone per five seconds."""


class DnsSettingsError(ValueError):
    """A ``[dns]`` table that cannot be used, naming the key."""


@dataclass(frozen=True, slots=True)
class DnsSettings:
    zones: tuple[str, ...]
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    enabled: bool = False
    nameservers: tuple[str, ...] = ()
    """Empty: ``ns.<zone>`` for each zone."""
    nameserver_addresses: tuple[str, ...] = ()
    ttl: int = DEFAULT_TTL
    negative_ttl: int = DEFAULT_NEGATIVE_TTL
    certificates: tuple[str, ...] = ()
    refresh: int = DEFAULT_REFRESH_SECONDS


def parse_listen(text: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port``, or a bare host (port 53)."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""
    try:
        ipaddress.ip_address(host)
        port = int(port_text) if port_text else DEFAULT_PORT
    except ValueError:
        raise DnsSettingsError(f"dns.listen: {text!r} is not ADDRESS:PORT") from None
    if not 0 <= port < 65536:
        raise DnsSettingsError(f"dns.listen: port {port} is out of range")
    return host, port


def _strings(table: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise DnsSettingsError(f"dns.{key}: expected a list of strings")
    return tuple(value)


def _seconds(table: Mapping[str, Any], key: str, default: int) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 2**31 - 1:
        raise DnsSettingsError(f"dns.{key}: expected a whole number of seconds (RFC 2181 section 8)")
    return value


def dns_settings(table: Mapping[str, Any]) -> DnsSettings:
    known = {"enabled", "listen", "zones", "nameservers", "nameserver_addresses", "ttl", "negative_ttl",
             "certificates", "refresh"}
    unknown = set(table) - known
    if unknown:
        raise DnsSettingsError(f"dns: unknown key(s) {', '.join(sorted(unknown))}")
    enabled = table.get("enabled", False)
    if not isinstance(enabled, bool):
        raise DnsSettingsError("dns.enabled: expected true or false")
    listen = table.get("listen", f"127.0.0.1:{DEFAULT_PORT}")
    if not isinstance(listen, str):
        raise DnsSettingsError("dns.listen: expected a string like \"0.0.0.0:53\"")
    host, port = parse_listen(listen)
    addresses = _strings(table, "nameserver_addresses")
    for a in addresses:
        try:
            ipaddress.ip_address(a)
        except ValueError:
            raise DnsSettingsError(f"dns.nameserver_addresses: {a!r} is not an IP address") from None
    return DnsSettings(
        zones=tuple(z.lower().rstrip(".") for z in _strings(table, "zones")),
        host=host,
        port=port,
        enabled=enabled,
        nameservers=tuple(n.lower().rstrip(".") for n in _strings(table, "nameservers")),
        nameserver_addresses=addresses,
        ttl=_seconds(table, "ttl", DEFAULT_TTL),
        negative_ttl=_seconds(table, "negative_ttl", DEFAULT_NEGATIVE_TTL),
        certificates=_strings(table, "certificates"),
        refresh=_seconds(table, "refresh", DEFAULT_REFRESH_SECONDS),
    )
