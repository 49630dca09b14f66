"""Anchors reused for a few seconds: the trust check asks for them on every message.

Without this, each accepted message costs a database round trip for anchors
that change a few times a year (a tenth of the receiving pipeline's CPU in
bench/smtp_inbound.py's profile). An administrator's change shows within
``ANCHOR_TTL``, the same delay the receiving pipeline already allows for a
new domain, key or record (gateway.receive.pipeline.LOOKUP_TTL).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from gateway.common.ttl_cache import TtlCache
from trust.anchor_source import AnchorSet, AnchorSource, Direction

ANCHOR_TTL = timedelta(seconds=5)
"""Short enough that a removed anchor stops counting before an operator has
finished checking that it did; long enough that a busy gateway reads them
once per domain and direction every few seconds rather than per message."""


class CachedAnchors:
    """An ``AnchorSource`` that remembers another's answers for ``ttl``."""

    def __init__(self, source: AnchorSource, clock: Callable[[], datetime], ttl: timedelta = ANCHOR_TTL) -> None:
        self._source = source
        self._clock = clock
        self._ttl = ttl
        self._cache: TtlCache[AnchorSet] = TtlCache(max_entries=4096)

    async def anchors(self, domain: str, direction: Direction) -> AnchorSet:
        key = (domain.strip().rstrip(".").lower(), direction)
        at = self._clock()
        found = self._cache.get(key, at)
        if found is None:
            found = await self._source.anchors(domain, direction)
            self._cache.put(key, found, at, self._ttl)
        return found
