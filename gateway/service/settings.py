"""The ``[smtp]``, ``[http]`` and ``[serve]`` tables: what ``directgw serve`` listens on and how.

```toml
[smtp]
listen = "0.0.0.0:25"             # default 0.0.0.0:25 (ports under 1024 need CAP_NET_BIND_SERVICE)
hostname = "mx.hospital.example"  # our name in the greeting and EHLO (default: the machine's name)
tls_certificate = "tls/smtp.crt"  # STARTTLS is offered when both are set (init writes a self-signed pair)
tls_key = "tls/smtp.key"
max_message_size = 67108864       # bytes, advertised as SIZE
max_recipients = 100
max_line_length = 1000            # DATA lines, CRLF included (RFC 5321 4.5.3.1.6)
max_command_line = 512            # command lines (RFC 5321 4.5.3.1.4)
command_timeout = 300             # seconds waiting for the next command (RFC 5321 4.5.3.2.7)
data_timeout = 180                # seconds waiting for the next block of DATA
reply_timeout = 600               # seconds the pipeline may take to answer the final dot
max_sessions = 200
max_sessions_per_client = 20
close_grace = 60                  # seconds a stopping server lets sessions finish

[http]
listen = "127.0.0.1:8025"         # /healthz and /metrics (keep it off the internet)

[serve]
node = "gw1"                      # names this node in logs, the audit trail and leases (default: host name)
bundle_check = 60                 # seconds between looks for trust bundles due for refresh

[submission]                      # present: EHRs submit here (STARTTLS + AUTH; needs the [smtp] TLS pair)
listen = "0.0.0.0:587"            # the default
max_auth_failures = 5             # failed logins from one address within the window lock it out...
auth_failure_window = 900         # ...counted over this many seconds...
auth_lockout = 900                # ...for this many seconds (docs/submission.md)
```

File paths are relative to the configuration file's directory.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.accounts.lockout import (
    LOCKOUT_KEYS,
    LockoutPolicy,
    LockoutSettingError,
    lockout_policy,
)
from gateway.smtp.limits import SmtpLimits

DEFAULT_SMTP_LISTEN = "0.0.0.0:25"
DEFAULT_HTTP_LISTEN = "127.0.0.1:8025"
DEFAULT_SUBMISSION_LISTEN = "0.0.0.0:587"
"""RFC 6409 section 3.1: message submission on port 587."""
_SUBMISSION_KEYS = {"listen", *LOCKOUT_KEYS}
DEFAULT_BUNDLE_CHECK = 60.0
"""Bundles carry their own refresh interval (hours); a minute's look keeps a due one late by a minute at most."""

_LIMIT_KEYS = {f.name for f in dataclasses.fields(SmtpLimits)}
_SMTP_KEYS = {"listen", "hostname", "tls_certificate", "tls_key"} | _LIMIT_KEYS


class ServeSettingsError(ValueError):
    def __init__(self, key: str, detail: str) -> None:
        self.key = key
        self.detail = detail
        super().__init__(f"{key}: {detail}")


class CannotListen(Exception):
    """One of serve's listeners could not bind its address: which one, where, and why."""

    def __init__(self, listener: str, where: str, port: int, cause: OSError) -> None:
        self.listener = listener
        """What listens there: "SMTP", "submission", "HTTP", "records bridge" or "DNS"."""
        self.where = where
        self.port = port
        self.cause = cause
        super().__init__(f"cannot listen for {listener} on {where}: {cause.strerror or cause}")


@dataclass(frozen=True, slots=True)
class Listen:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class ServeSettings:
    smtp: Listen
    http: Listen | None
    hostname: str | None
    tls_certificate: Path | None
    tls_key: Path | None
    limits: SmtpLimits = field(default_factory=SmtpLimits)
    node: str = field(default_factory=socket.gethostname)
    bundle_check: float = DEFAULT_BUNDLE_CHECK
    submission: Listen | None = None
    """The submission port (587) for EHRs, when ``[submission]`` or ``--submission`` asks for it."""
    lockout: LockoutPolicy = field(default_factory=LockoutPolicy)
    bridge: Listen | None = None
    """``[bridge] listen``: serve runs the records bridge there too (its other keys: records_bridge.web.settings)."""


def parse_listen(key: str, text: object) -> Listen:
    if not isinstance(text, str):
        raise ServeSettingsError(key, 'expected "ADDRESS:PORT"')
    value = text.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ServeSettingsError(key, f'{text!r}: expected "ADDRESS:PORT", e.g. "127.0.0.1:2525"')
    return Listen(host, int(port))


def serve_settings(tables: Mapping[str, Any], base: Path) -> ServeSettings:
    smtp, http, serve = (dict(tables.get(name, {})) for name in ("smtp", "http", "serve"))
    unknown = set(smtp) - _SMTP_KEYS
    if unknown:
        raise ServeSettingsError(f"[smtp] {sorted(unknown)[0]}", f"unknown setting (known: {', '.join(sorted(_SMTP_KEYS))})")
    limits: dict[str, Any] = {}
    for name in _LIMIT_KEYS & set(smtp):
        value = smtp[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ServeSettingsError(f"[smtp] {name}", f"expected a positive number, got {value!r}")
        default = getattr(SmtpLimits(), name)
        limits[name] = int(value) if isinstance(default, int) else float(value)
    cert, key = smtp.get("tls_certificate"), smtp.get("tls_key")
    if (cert is None) != (key is None):
        raise ServeSettingsError("[smtp] tls_certificate", "give tls_certificate and tls_key together")
    node = serve.get("node", socket.gethostname())
    if not isinstance(node, str) or not node or len(node) > 64:
        raise ServeSettingsError("[serve] node", "expected a name of at most 64 characters")
    check = serve.get("bundle_check", DEFAULT_BUNDLE_CHECK)
    if isinstance(check, bool) or not isinstance(check, int | float) or check <= 0:
        raise ServeSettingsError("[serve] bundle_check", "expected a positive number of seconds")
    hostname = smtp.get("hostname")
    if hostname is not None and (not isinstance(hostname, str) or not hostname):
        raise ServeSettingsError("[smtp] hostname", "expected a host name")
    http_listen = http.get("listen", DEFAULT_HTTP_LISTEN)
    try:
        built_limits = SmtpLimits(**limits)
    except (TypeError, ValueError) as exc:
        raise ServeSettingsError("[smtp]", str(exc)) from exc
    submission, lockout = _submission(tables.get("submission"), tls=cert is not None)
    return ServeSettings(
        bridge=_bridge_listen(tables.get("bridge")),
        submission=submission,
        lockout=lockout,
        smtp=parse_listen("[smtp] listen", smtp.get("listen", DEFAULT_SMTP_LISTEN)),
        http=None if http_listen in ("", "off") else parse_listen("[http] listen", http_listen),
        hostname=hostname,
        tls_certificate=(base / cert) if isinstance(cert, str) else None,
        tls_key=(base / key) if isinstance(key, str) else None,
        limits=built_limits,
        node=node,
        bundle_check=float(check),
    )


def _bridge_listen(table: Any) -> Listen | None:
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ServeSettingsError("[bridge]", "expected a table")
    value = table.get("listen")
    return None if value in (None, "", "off") else parse_listen("[bridge] listen", value)


def _submission(table: Any, *, tls: bool) -> tuple[Listen | None, LockoutPolicy]:
    """``[submission]``: present means on (``listen`` defaults to port 587), with its lockout keys."""
    if table is None:
        return None, LockoutPolicy()
    if not isinstance(table, Mapping):
        raise ServeSettingsError("[submission]", "expected a table")
    unknown = set(table) - _SUBMISSION_KEYS
    if unknown:
        raise ServeSettingsError(f"[submission] {sorted(unknown)[0]}",
                                 f"unknown setting (known: {', '.join(sorted(_SUBMISSION_KEYS))})")
    try:
        lockout = lockout_policy(table)
    except LockoutSettingError as exc:
        raise ServeSettingsError(f"[submission] {exc.key}", exc.detail) from exc
    listen = parse_listen("[submission] listen", table.get("listen", DEFAULT_SUBMISSION_LISTEN))
    if not tls:
        raise ServeSettingsError("[submission]", _NEEDS_TLS)
    return listen, lockout


_NEEDS_TLS = "the submission port needs [smtp] tls_certificate and tls_key (AUTH is offered only over TLS)"


def with_submission(settings: ServeSettings, text: str) -> ServeSettings:
    """``serve --submission HOST:PORT``: the submission port on, there."""
    if settings.tls_certificate is None:
        raise ServeSettingsError("--submission", _NEEDS_TLS)
    return dataclasses.replace(settings, submission=parse_listen("--submission", text))
