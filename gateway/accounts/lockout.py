"""Locking a client address out after repeated bad credentials: the rule, pure.

An address that fails ``max_failures`` logins within ``window`` (counted from
its first failure in that window) is locked for ``lock_for``; while locked,
its logins are answered at once without checking the password (no argon2
work for an attacker) and without extending the lock, so a lock always ends.
A successful login clears the address. The counts live in the database
(``gateway.accounts.store.Lockouts``) so every node and worker process agrees;
this module only says what the next state is.

IPv6 clients are counted by their /64: a host usually holds a whole /64
(RFC 4291 2.5.1 interface identifiers), and an attacker would otherwise take a
fresh address per attempt.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

MAX_FAILURES = 5
"""Failures in one window before the lock: fail2ban's default ``maxretry``; an EHR
with a wrong stored password hits it in one retry cycle, a person mistyping does not."""
FAILURE_WINDOW = timedelta(minutes=15)
"""CIS Benchmarks' account lockout guidance: reset the failure count after 15 minutes or more."""
LOCK_DURATION = timedelta(minutes=15)
"""CIS Benchmarks: a lockout duration of 15 minutes or more. Long enough to make guessing
hopeless (5 tries per 15 minutes), short enough that a misconfigured EHR recovers unaided."""
IPV6_PREFIX = 64


@dataclass(frozen=True, slots=True)
class LockoutPolicy:
    max_failures: int = MAX_FAILURES
    window: timedelta = FAILURE_WINDOW
    lock_for: timedelta = LOCK_DURATION

    def __post_init__(self) -> None:
        if self.max_failures < 1:
            raise ValueError("max_failures must be at least 1")
        if self.window <= timedelta(0) or self.lock_for <= timedelta(0):
            raise ValueError("the failure window and the lock must be positive durations")

    @property
    def forget_after(self) -> timedelta:
        """A row untouched this long counts nothing and locks nothing: it may be purged."""
        return max(self.window, self.lock_for)


@dataclass(frozen=True, slots=True)
class FailureCount:
    """One client address's row: failures in the current window, and the lock if any."""

    failures: int
    window_start: datetime
    locked_until: datetime | None = None

    def locked(self, at: datetime) -> bool:
        return self.locked_until is not None and at < self.locked_until


def after_failure(previous: FailureCount | None, at: datetime, policy: LockoutPolicy) -> FailureCount:
    """The address's count after one more failed login at ``at``."""
    if previous is not None and previous.locked(at):
        return previous  # a failure racing the one that locked: the lock stands, unextended
    if previous is None or at - previous.window_start >= policy.window:
        failures, start = 1, at
    else:
        failures, start = previous.failures + 1, previous.window_start
    if failures >= policy.max_failures:
        return FailureCount(0, at, at + policy.lock_for)
    return FailureCount(failures, start, None)


def client_key(peer: str) -> str:
    """What failures are counted by: the IPv4 address, or the IPv6 /64 (module docstring)."""
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return peer[:64]  # not an IP address (a Unix socket in tests): itself
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_PREFIX), strict=False))
    return str(address)


class LockoutSettingError(ValueError):
    def __init__(self, key: str, detail: str) -> None:
        self.key = key
        self.detail = detail
        super().__init__(f"{key}: {detail}")


LOCKOUT_KEYS = ("max_auth_failures", "auth_failure_window", "auth_lockout")


def lockout_policy(table: Mapping[str, Any]) -> LockoutPolicy:
    """The lockout keys of ``[submission]`` (seconds for the durations)."""
    values: dict[str, Any] = {}
    for key, field, seconds in (("max_auth_failures", "max_failures", False),
                                ("auth_failure_window", "window", True), ("auth_lockout", "lock_for", True)):
        if key not in table:
            continue
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise LockoutSettingError(key, f"expected a positive number{' of seconds' if seconds else ''}, got {value!r}")
        if not seconds and not isinstance(value, int):
            raise LockoutSettingError(key, f"expected a whole number, got {value!r}")
        values[field] = timedelta(seconds=value) if seconds else value
    return LockoutPolicy(**values)
