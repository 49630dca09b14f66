"""The ``[outbound]`` and ``[routes]`` tables: how the delivery worker sends.

```toml
[outbound]
helo = "gw.hospital.example"    # our name in EHLO (RFC 5321 4.1.1.1); default: the first local domain
lifetime = 345600               # seconds a message is retried before it expires (RFC 5321 4.5.4.1: 4-5 days)
first_retry = 60                # seconds before the first retry; doubled per attempt
max_retry = 1800                # seconds: the backoff stops growing here (RFC 5321 4.5.4.1: 30 minutes)
connect_timeout = 30            # seconds to open the connection and read the greeting
command_timeout = 300           # seconds per SMTP command (RFC 5321 4.5.3.2: 5 minutes)
data_timeout = 600              # seconds for the message and the reply to its final dot (4.5.3.2.6: 10 minutes)
lease = 1800                    # seconds a claimed job stays ours; longer than one whole delivery
batch = 8                       # attempts in flight at once (keep it under peers' per-client session limit)
poll = 5                        # seconds between looks for other nodes' jobs (this node's commits wake the loop)
session_idle = 2                # seconds a session that delivered is kept for the next message there (0: never)
mx_port = 25                    # the port of servers found through MX (tests point it elsewhere)
starttls = "opportunistic"      # every destination: "opportunistic" or "required"
starttls_required = ["phr.example"]   # destinations that must offer STARTTLS whatever the default
tls_ca_file = "/etc/directgw/smtp-ca.pem"   # optional: verify servers' TLS certificates against these

[routes]                        # static routes, asked before DNS MX
"phr.example" = "127.0.0.1:2626"
```

TLS here protects the envelope; the message itself is already signed and
encrypted end to end (Direct). So, as in RFC 7435's opportunistic security,
a server's certificate is not verified unless ``tls_ca_file`` is given;
"required" means the session must be encrypted.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

KNOWN = {
    "helo", "lifetime", "first_retry", "max_retry", "connect_timeout", "command_timeout", "data_timeout",
    "lease", "batch", "poll", "mx_port", "starttls", "starttls_required", "tls_ca_file", "session_idle",
}

DEFAULT_LIFETIME = timedelta(days=4)
"""RFC 5321 4.5.4.1: "the give-up time generally needs to be at least 4-5 days"."""
DEFAULT_FIRST_RETRY = timedelta(minutes=1)
"""Shorter than RFC 5321's 30 minutes: Direct's sender waits at most an hour
for our MDN (specs/direct.md item 26), so the first retries come quickly."""
DEFAULT_MAX_RETRY = timedelta(minutes=30)
"""RFC 5321 4.5.4.1: "the retry interval SHOULD be at least 30 minutes"; we grow to it."""
DEFAULT_CONNECT_TIMEOUT = 30.0
DEFAULT_COMMAND_TIMEOUT = 300.0
"""RFC 5321 4.5.3.2.2-5: MAIL and RCPT 5 minutes (DATA initiation 2)."""
DEFAULT_DATA_TIMEOUT = 600.0
"""RFC 5321 4.5.3.2.6: 10 minutes for the reply to the final dot."""
DEFAULT_LEASE = timedelta(minutes=30)
DEFAULT_BATCH = 8
"""Attempts in flight per worker; memory is about batch x 2.5 x the largest message."""
DEFAULT_POLL = 5.0
DEFAULT_SESSION_IDLE = 2.0
"""Seconds a session that delivered is kept for the next message to the same destination
(Postfix's smtp_connection_cache_time_limit is also 2 s): long enough to catch a busy peer's
next message, short enough not to hold one of its connection slots for nothing."""
MAX_SESSION_IDLE = 300.0
"""RFC 5321 4.5.3.2.7: a server may drop a client idle for 5 minutes."""
SMTP_PORT = 25


class TlsMode(enum.Enum):
    OPPORTUNISTIC = "opportunistic"
    """STARTTLS when the server offers it, plain otherwise (RFC 7435)."""
    REQUIRED = "required"
    """No STARTTLS offered, or the handshake fails: a temporary failure, nothing sent."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff: ``first``, doubled after each attempt, at most ``cap``."""

    first: timedelta = DEFAULT_FIRST_RETRY
    cap: timedelta = DEFAULT_MAX_RETRY

    def delay(self, attempts: int) -> timedelta:
        # doubling stops at the cap: a job's thousandth attempt costs a few steps, no big numbers
        delay = self.first
        for _ in range(max(attempts, 1) - 1):
            delay *= 2
            if delay >= self.cap:
                return self.cap
        return min(delay, self.cap)


class OutboundSettingsError(ValueError):
    def __init__(self, key: str, detail: str) -> None:
        self.key = key
        self.detail = detail
        super().__init__(f"{key}: {detail}")


@dataclass(frozen=True, slots=True)
class StaticRoute:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class OutboundSettings:
    helo: str = "localhost"
    lifetime: timedelta = DEFAULT_LIFETIME
    first_retry: timedelta = DEFAULT_FIRST_RETRY
    max_retry: timedelta = DEFAULT_MAX_RETRY
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    command_timeout: float = DEFAULT_COMMAND_TIMEOUT
    data_timeout: float = DEFAULT_DATA_TIMEOUT
    lease: timedelta = DEFAULT_LEASE
    batch: int = DEFAULT_BATCH
    poll: float = DEFAULT_POLL
    mx_port: int = SMTP_PORT
    starttls: TlsMode = TlsMode.OPPORTUNISTIC
    starttls_required: frozenset[str] = frozenset()
    tls_ca_file: Path | None = None
    routes: Mapping[str, StaticRoute] = field(default_factory=dict)
    session_idle: float = 0.0
    """Seconds a delivering session is kept for the next message (0: one session per attempt,
    the default when settings are built by hand; ``[outbound] session_idle`` defaults to
    ``DEFAULT_SESSION_IDLE``). ``SmtpTransport.close`` ends the kept ones."""

    def __post_init__(self) -> None:
        # a lease shorter than one delivery would let a second worker send the same job
        if self.lease.total_seconds() <= self.delivery_timeout:
            raise OutboundSettingsError(
                "lease", f"must be longer than one delivery (connect + 3 commands + data = {self.delivery_timeout:g} s)"
            )

    @property
    def delivery_timeout(self) -> float:
        """The bound on one attempt at one destination: connect and greeting,
        EHLO/STARTTLS/MAIL/RCPT (the EHLO after STARTTLS shares a budget), DATA."""
        return self.connect_timeout + 3 * self.command_timeout + self.data_timeout

    @property
    def backoff(self) -> Backoff:
        """For ``OutboundQueue(store, backoff=settings.backoff)``."""
        return Backoff(self.first_retry, self.max_retry)

    def tls_for(self, domain: str) -> TlsMode:
        return TlsMode.REQUIRED if domain.lower() in self.starttls_required else self.starttls


def parse_route(text: str) -> StaticRoute:
    """``host:port``, ``[v6]:port`` or ``host`` (port 25)."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":") or str(SMTP_PORT)
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, str(SMTP_PORT)
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r}: expected host:port")
    return StaticRoute(host, int(port))


def _seconds(table: Mapping[str, Any], key: str, default: float) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise OutboundSettingsError(f"[outbound] {key}", f"expected a positive number of seconds, got {value!r}")
    return float(value)


def _count(table: Mapping[str, Any], key: str, default: int, top: int) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= top:
        raise OutboundSettingsError(f"[outbound] {key}", f"expected a whole number from 1 to {top}, got {value!r}")
    return value


def outbound_settings(
    table: Mapping[str, Any], routes: Mapping[str, Any] | None = None, *, helo: str = "localhost"
) -> OutboundSettings:
    """``[outbound]`` and ``[routes]``; ``helo`` is the default EHLO name (the composition root
    passes our first domain)."""
    unknown = set(table) - KNOWN
    if unknown:
        key = sorted(unknown)[0]
        raise OutboundSettingsError(f"[outbound] {key}", f"unknown setting (known: {', '.join(sorted(KNOWN))})")
    name = table.get("helo", helo)
    if not isinstance(name, str) or not name or any(c.isspace() for c in name):
        raise OutboundSettingsError("[outbound] helo", "expected a host name")
    try:
        mode = TlsMode(table.get("starttls", TlsMode.OPPORTUNISTIC.value))
    except ValueError:
        raise OutboundSettingsError("[outbound] starttls", 'expected "opportunistic" or "required"') from None
    required = table.get("starttls_required", [])
    if not isinstance(required, list) or not all(isinstance(d, str) and d for d in required):
        raise OutboundSettingsError("[outbound] starttls_required", 'expected a list of domains like ["phr.example"]')
    ca = table.get("tls_ca_file")
    if ca is not None and (not isinstance(ca, str) or not ca):
        raise OutboundSettingsError("[outbound] tls_ca_file", "expected a file path")
    parsed: dict[str, StaticRoute] = {}
    for domain, target in (routes or {}).items():
        if not isinstance(target, str):
            raise OutboundSettingsError(f"[routes] {domain}", 'expected "host:port"')
        try:
            parsed[domain.strip().lower().rstrip(".")] = parse_route(target)
        except ValueError as exc:
            raise OutboundSettingsError(f"[routes] {domain}", str(exc)) from None
    return OutboundSettings(
        helo=name,
        lifetime=timedelta(seconds=_seconds(table, "lifetime", DEFAULT_LIFETIME.total_seconds())),
        first_retry=timedelta(seconds=_seconds(table, "first_retry", DEFAULT_FIRST_RETRY.total_seconds())),
        max_retry=timedelta(seconds=_seconds(table, "max_retry", DEFAULT_MAX_RETRY.total_seconds())),
        connect_timeout=_seconds(table, "connect_timeout", DEFAULT_CONNECT_TIMEOUT),
        command_timeout=_seconds(table, "command_timeout", DEFAULT_COMMAND_TIMEOUT),
        data_timeout=_seconds(table, "data_timeout", DEFAULT_DATA_TIMEOUT),
        lease=timedelta(seconds=_seconds(table, "lease", DEFAULT_LEASE.total_seconds())),
        batch=_count(table, "batch", DEFAULT_BATCH, 1000),
        poll=_seconds(table, "poll", DEFAULT_POLL),
        mx_port=_count(table, "mx_port", SMTP_PORT, 65535),
        starttls=mode,
        starttls_required=frozenset(d.strip().lower().rstrip(".") for d in required),
        tls_ca_file=Path(ca) if ca else None,
        routes=parsed,
        session_idle=_idle(table),
    )


def _idle(table: Mapping[str, Any]) -> float:
    value = table.get("session_idle", DEFAULT_SESSION_IDLE)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= MAX_SESSION_IDLE:
        raise OutboundSettingsError("[outbound] session_idle",
                                    f"expected seconds from 0 (no reuse) to {MAX_SESSION_IDLE:g}, got {value!r}")
    return float(value)
