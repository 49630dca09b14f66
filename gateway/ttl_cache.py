"""Moved to ``gateway.common.ttl_cache`` (a neutral module every layer may use); kept for old imports."""

from gateway.common.ttl_cache import MAX_ENTRIES, TtlCache

__all__ = ["MAX_ENTRIES", "TtlCache"]
