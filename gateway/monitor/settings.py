"""Per local domain: its providers' mailbox route and its MDN timeout; and the sweep's pace.

```toml
[domains."hospital.example"]
provider_smtp = "mail.hospital.example:25"   # the organization's mail server or the EHR's listener
mdn_timeout = 3600                           # seconds to wait for the MDNs owed (default 1 h)

[monitor]
sweep = 30                                   # seconds between looks for trackings past their deadline
```

A local address that is no record's belongs to a provider: with a
``provider_smtp`` route, RCPT for the domain's addresses is accepted and
everything for its providers (verified Direct messages, MDNs passed back,
DSNs, failure notices) is delivered there in plain form. Host names are not
resolved here: the route is used as written at each delivery, so a
configuration never fails to load because DNS is down.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from gateway.outbound.settings import StaticRoute, parse_route

DEFAULT_MDN_TIMEOUT = timedelta(hours=1)
"""Direct item 26: the reference implementation waits 1 h for processed (ETT MT 28 allows N + 5 min)."""
MAX_MDN_TIMEOUT = timedelta(days=7)
"""Longer than any queue lifetime worth having (RFC 5321's 4-5 days): a larger value is a typo."""
DEFAULT_SWEEP = 30.0
"""Seconds between timeout sweeps: against a 1 h timeout, the notice is at most half a minute late
(well inside ETT MT 28's five minutes)."""

DOMAIN_KEYS = {"provider_smtp", "mdn_timeout"}
MONITOR_KEYS = {"sweep"}


class MonitorSettingsError(ValueError):
    def __init__(self, key: str, detail: str) -> None:
        self.key = key
        self.detail = detail
        super().__init__(f"{key}: {detail}")


@dataclass(frozen=True, slots=True)
class DomainSettings:
    provider_smtp: StaticRoute | None = None
    mdn_timeout: timedelta = DEFAULT_MDN_TIMEOUT


@dataclass(frozen=True, slots=True)
class MonitorSettings:
    domains: Mapping[str, DomainSettings] = field(default_factory=dict)
    sweep: float = DEFAULT_SWEEP

    def for_domain(self, domain: str) -> DomainSettings:
        return self.domains.get(domain.lower().rstrip("."), DomainSettings())

    def provider_route(self, domain: str) -> StaticRoute | None:
        return self.for_domain(domain).provider_smtp

    def mdn_timeout(self, address: str) -> timedelta:
        return self.for_domain(address.rpartition("@")[2]).mdn_timeout

    @property
    def provider_routes(self) -> dict[str, StaticRoute]:
        return {d: s.provider_smtp for d, s in self.domains.items() if s.provider_smtp is not None}


def _positive_seconds(where: str, value: Any, top: timedelta | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise MonitorSettingsError(where, f"expected a positive number of seconds, got {value!r}")
    if top is not None and value > top.total_seconds():
        raise MonitorSettingsError(where, f"at most {top.total_seconds():g} seconds, got {value!r}")
    return float(value)


def monitor_settings(domains: Mapping[str, Any], monitor: Mapping[str, Any] | None = None) -> MonitorSettings:
    """``[domains.*]`` and ``[monitor]`` as the configuration gives them (raw tables)."""
    parsed: dict[str, DomainSettings] = {}
    for name, table in domains.items():
        where = f"[domains.{name!r}]".replace("'", '"')
        if not isinstance(table, Mapping):
            raise MonitorSettingsError(where, "expected a table")
        unknown = set(table) - DOMAIN_KEYS
        if unknown:
            raise MonitorSettingsError(f"{where} {sorted(unknown)[0]}",
                                       f"unknown setting (known: {', '.join(sorted(DOMAIN_KEYS))})")
        domain = name.strip().lower().rstrip(".")
        if not domain or "@" in domain or any(c.isspace() for c in domain):
            raise MonitorSettingsError(where, "expected a domain name")
        route = None
        if "provider_smtp" in table:
            target = table["provider_smtp"]
            if not isinstance(target, str):
                raise MonitorSettingsError(f"{where} provider_smtp", 'expected "host:port"')
            try:
                route = parse_route(target)
            except ValueError as exc:
                raise MonitorSettingsError(f"{where} provider_smtp", str(exc)) from None
        timeout = _positive_seconds(f"{where} mdn_timeout", table.get("mdn_timeout", DEFAULT_MDN_TIMEOUT.total_seconds()), MAX_MDN_TIMEOUT)
        parsed[domain] = DomainSettings(route, timedelta(seconds=timeout))
    table = monitor or {}
    unknown = set(table) - MONITOR_KEYS
    if unknown:
        raise MonitorSettingsError(f"[monitor] {sorted(unknown)[0]}",
                                   f"unknown setting (known: {', '.join(sorted(MONITOR_KEYS))})")
    return MonitorSettings(parsed, _positive_seconds("[monitor] sweep", table.get("sweep", DEFAULT_SWEEP)))
