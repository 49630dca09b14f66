"""The trust store's side of the anchor-source interface.

The interface (``Direction``, ``AnchorSet``, ``AnchorSource``) belongs to the
trust engine that consumes it (``trust.anchor_source``) and is re-exported
here for existing callers; the database-backed store (``anchors.store``) and
the fixed sets below implement it.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.core.certs import CertRef
from trust.anchor_source import AnchorSet, AnchorSource, Direction

__all__ = ["AnchorSet", "AnchorSource", "Direction", "StaticAnchors"]


@dataclass(frozen=True)
class StaticAnchors:
    """The same fixed anchors for every domain and direction (``directgw verify``, tests)."""

    certificates: tuple[CertRef, ...]

    async def anchors(self, domain: str, direction: Direction) -> AnchorSet:
        return AnchorSet.of(domain, direction, self.certificates)
