"""The ``[discovery]`` table, and building discovery from it.

```toml
[discovery]
nameservers = ["127.0.0.1:5353"]   # host:port; `directgw init` writes the system's (/etc/resolv.conf)
dns_timeout = 3.0                  # seconds per server and question
ldap_timeout = 5.0                 # seconds to connect, and per operation
negative_ttl = 60                  # seconds "no record" is believed
ldap = true                        # false: DNS only
```
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from gateway.common.http_fetch import Fetcher

from .dnscert import DnsCertSource
from .dnsclient import (
    DEFAULT_NEGATIVE_TTL,
    DEFAULT_TIMEOUT_SECONDS,
    DnsClient,
    Nameserver,
    NameserverError,
)
from .judge import CertificateJudge
from .ldapsource import DEFAULT_TIMEOUT_SECONDS as LDAP_TIMEOUT
from .ldapsource import Ldap3Directory, LdapDirectory
from .service import Discovery
from .srv import Draw

KNOWN = {"nameservers", "dns_timeout", "ldap_timeout", "negative_ttl", "ldap"}

RESOLV_CONF = Path("/etc/resolv.conf")
"""Where the system names its resolvers (resolv.conf(5)); read by the command
line, the composition root, never by this module."""


def system_nameservers(resolv_conf: str) -> list[str]:
    """The ``nameserver`` addresses of a resolv.conf(5) text, as ``[discovery]
    nameservers`` entries (IPv6 in brackets, so a port can never be misread).

    Only IP addresses count (resolv.conf allows nothing else); a link-local
    IPv6 zone (``fe80::1%eth0``) is kept as written. Comments start with ``#``
    or ``;``.
    """
    out: list[str] = []
    for line in resolv_conf.splitlines():
        fields = line.split(maxsplit=2)
        if len(fields) < 2 or fields[0] != "nameserver":
            continue
        address = fields[1]
        try:
            ip = ipaddress.ip_address(address.partition("%")[0])
        except ValueError:
            continue
        entry = f"[{address}]:53" if ip.version == 6 else f"{address}:53"
        if entry not in out:
            out.append(entry)
    return out


class DiscoverySettingsError(ValueError):
    def __init__(self, key: str, detail: str) -> None:
        self.key = key
        self.detail = detail
        super().__init__(f"[discovery] {key}: {detail}")


@dataclass(frozen=True, slots=True)
class DiscoverySettings:
    nameservers: tuple[Nameserver, ...]
    dns_timeout: float = DEFAULT_TIMEOUT_SECONDS
    ldap_timeout: float = LDAP_TIMEOUT
    negative_ttl: timedelta = DEFAULT_NEGATIVE_TTL
    ldap: bool = True


def _seconds(table: Mapping[str, Any], key: str, default: float) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise DiscoverySettingsError(key, f"expected a positive number of seconds, got {value!r}")
    return float(value)


def settings_from_mapping(table: Mapping[str, Any]) -> DiscoverySettings:
    unknown = set(table) - KNOWN
    if unknown:
        raise DiscoverySettingsError(sorted(unknown)[0], f"unknown setting (known: {', '.join(sorted(KNOWN))})")
    raw = table.get("nameservers")
    if not isinstance(raw, list) or not raw or not all(isinstance(s, str) for s in raw):
        raise DiscoverySettingsError("nameservers", 'expected a list like ["127.0.0.1:5353"]')
    try:
        servers = tuple(Nameserver.parse(s) for s in raw)
    except NameserverError as exc:
        raise DiscoverySettingsError("nameservers", str(exc)) from None
    ldap = table.get("ldap", True)
    if not isinstance(ldap, bool):
        raise DiscoverySettingsError("ldap", "expected true or false")
    return DiscoverySettings(
        servers,
        dns_timeout=_seconds(table, "dns_timeout", DEFAULT_TIMEOUT_SECONDS),
        ldap_timeout=_seconds(table, "ldap_timeout", LDAP_TIMEOUT),
        negative_ttl=timedelta(seconds=_seconds(table, "negative_ttl", DEFAULT_NEGATIVE_TTL.total_seconds())),
        ldap=ldap,
    )


def build_discovery(
    settings: DiscoverySettings,
    judge: CertificateJudge,
    fetcher: Fetcher,
    *,
    ldap: LdapDirectory | None = None,
    draw: Draw | None = None,
) -> Discovery:
    dns = DnsClient(settings.nameservers, timeout=settings.dns_timeout, negative_ttl=settings.negative_ttl)
    return Discovery(
        dns, DnsCertSource(dns, fetcher), ldap or Ldap3Directory(settings.ldap_timeout), judge,
        draw=draw, use_ldap=settings.ldap,
    )
