"""One in-memory sliding-window limiter, keyed by (purpose, who).

A window keeps the times of the attempts it allowed in the last ``window``;
an attempt is allowed while fewer than ``limit`` remain. Memory per key is
bounded by ``limit``, and keys whose window has emptied are dropped, so a
flood of distinct keys costs at most ``MAX_KEYS`` entries (the oldest keys
go first). The limiter is per process: with several nodes each enforces its
own budget, which bounds an attacker at nodes x limit -- acceptable for
these purposes, where the database-side lockouts (three answers per code)
are the hard bound.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

MAX_KEYS = 100_000
"""Memory bound: 100k keys x a few timestamps is a few tens of MB at worst."""


@dataclass
class RateLimiter:
    limit: int
    window: timedelta
    _hits: OrderedDict[str, deque[datetime]] = field(default_factory=OrderedDict, repr=False)

    def allow(self, key: str, *, at: datetime) -> bool:
        """Count an attempt by ``key`` at ``at``; False when it is over the limit (not counted then)."""
        hits = self._hits.get(key)
        if hits is None:
            hits = deque()
            self._hits[key] = hits
            while len(self._hits) > MAX_KEYS:
                self._hits.popitem(last=False)
        else:
            self._hits.move_to_end(key)
        while hits and hits[0] <= at - self.window:
            hits.popleft()
        if len(hits) >= self.limit:
            return False
        hits.append(at)
        return True

    def reset(self, key: str) -> None:
        self._hits.pop(key, None)


def _sign_in() -> RateLimiter:
    # 10 attempts a minute per address or per account: a person mistyping
    # twice never notices; an online guesser gets 14,400 a day per source
    # against argon2id hashes of passwords of at least PASSWORD_MIN_LENGTH.
    return RateLimiter(10, timedelta(minutes=1))


def _code_entry() -> RateLimiter:
    # Spec section 3: code lookup/verify at most 10 per minute per session and IP.
    return RateLimiter(10, timedelta(minutes=1))


def _registration() -> RateLimiter:
    # RFC 7591 registration (spec section 5: "rate-limited"): an app installs
    # once per device; 20 an hour per IP is generous for a clinic's shared NAT.
    return RateLimiter(20, timedelta(hours=1))


@dataclass(frozen=True)
class RateLimits:
    """The bridge's limiters, one per purpose, built once per process."""

    sign_in: RateLimiter = field(default_factory=_sign_in)
    code_entry: RateLimiter = field(default_factory=_code_entry)
    registration: RateLimiter = field(default_factory=_registration)
