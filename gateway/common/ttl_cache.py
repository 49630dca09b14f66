"""A bounded cache whose entries expire, for every answer worth reusing.

Discovery keeps DNS and LDAP answers for their TTL (RFC 1035 3.2.1; negative
ones briefly, RFC 2308), the trust engine keeps decisions and AIA-fetched
issuers. Time is given by the caller (``at``), so tests can step past an
expiry without sleeping; past ``max_entries`` the least recently used go.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime, timedelta
from typing import Generic, TypeVar

V = TypeVar("V")

MAX_ENTRIES = 10_000
"""A busy gateway talks to a few thousand peers; beyond that the least
recently used entries go first, which costs only another lookup."""


class TtlCache(Generic[V]):
    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._entries: OrderedDict[object, tuple[datetime, V]] = OrderedDict()
        self._max = max_entries

    def get(self, key: object, at: datetime) -> V | None:
        hit = self._entries.get(key)
        if hit is None:
            return None
        expires, value = hit
        if at >= expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: object, value: V, at: datetime, ttl: timedelta) -> None:
        if ttl <= timedelta(0):
            return
        self._entries[key] = (at + ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
