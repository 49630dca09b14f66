"""Abuse the bridge refuses, counted and logged (issue 10: "each refused and counted").

Each refusal is one warning log line (``bridge.refused``, with what and
from where, never a secret) and one increment of a per-process counter,
which ``serve`` publishes on its metrics listener
(``directgw_bridge_refused_<what>``) and tests read.
"""

from __future__ import annotations

import enum
import functools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

log = structlog.get_logger("directgw.bridge")


class Refusal(enum.Enum):
    CSRF = "csrf"
    """A form or page call without this browser's CSRF token."""
    SIGN_IN_FAILED = "sign_in_failed"
    RATE_LIMITED = "rate_limited"
    """Sign-in or registration over its limit."""
    UNKNOWN_CLIENT = "unknown_client"
    REDIRECT_MISMATCH = "redirect_mismatch"
    """An authorization request naming a redirect URI the client did not register (open-redirect attempts)."""
    FOREIGN_RECORD = "foreign_record"
    """A person trying to give an app a record they may not give."""
    CODE_REPLAY = "code_replay"
    REFRESH_REUSE = "refresh_reuse"
    INVALID_CLIENT = "invalid_client"
    """Client authentication failed at the token or revocation endpoint."""
    INVALID_TOKEN = "invalid_token"
    """A bearer token that is unknown, expired or revoked."""
    FOREIGN_GRANT = "foreign_grant"
    """An app token used on a record its grants do not cover."""
    NO_ACCESS = "no_access"
    """A signed-in person asking for a record, or its items, they hold no role on (patient pages)."""
    ADMIN_TOKEN = "admin_token"
    """An admin API call without the admin token, or with a wrong one."""


@dataclass
class Refusals:
    counts: Counter[Refusal] = field(default_factory=Counter)

    def count(self, what: Refusal, **detail: Any) -> None:
        self.counts[what] += 1
        log.warning("bridge.refused", refusal=what.value, **detail)

    def gauges(self) -> dict[str, Callable[[], float]]:
        """Metric name -> current value, for ``serve``'s metrics listener."""
        return {f"directgw_bridge_refused_{what.value}": functools.partial(self.value, what) for what in Refusal}

    def value(self, what: Refusal) -> float:
        return float(self.counts[what])
