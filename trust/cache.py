"""Reusing trust decisions: a busy sender costs one validation, not one per message.

A decision is keyed by everything it depends on: the certificates (by DER
hash), the purpose, the address or domain it was bound to, the anchor set
(domain, direction and version, which changes whenever the set does) and the
policy value. It is reused from the moment it was made until the earliest of
the certificates' expiry, the nextUpdate of the CRLs and OCSP answers it
relied on, and the policy's TTL. Temporary failures are kept only briefly, so
a CRL server coming back is noticed soon while a burst of mail during an
outage does not wait on the network once per message.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import replace
from datetime import datetime, timedelta

from gateway.common.ttl_cache import TtlCache

from .types import TrustDecision

TEMPORARY_FAILURE_TTL = timedelta(minutes=1)
MAX_ENTRIES = 10_000
"""A HISP talks to a few thousand peers; past that the oldest decisions go."""


class DecisionCache:
    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        # Each entry remembers when it was made: a decision is not reused for
        # a moment before it (a replayed `at` in the past must validate anew).
        self._entries: TtlCache[TrustDecision] = TtlCache(max_entries)
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, at: datetime) -> TrustDecision | None:
        decision = self._entries.get(key, at)
        if decision is None or at < decision.at:
            self.misses += 1
            return None
        self.hits += 1
        return replace(decision, at=at, cached=True)

    def put(self, key: Hashable, decision: TrustDecision, expires: datetime) -> None:
        if decision.temporary:
            expires = min(expires, decision.at + TEMPORARY_FAILURE_TTL)
        self._entries.put(key, decision, decision.at, expires - decision.at)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
