"""What the trust engine asks of a trust store: the anchors of one local
domain in one direction.

The engine owns this interface and the trust store (``anchors``) implements
it, so ``trust`` never imports ``anchors`` (tests/test_layers.py). An
``AnchorSet``'s ``version`` changes whenever its contents do, so trust
decisions can be cached against it.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from gateway.core.certs import CertRef


class Direction(enum.Enum):
    """Anchors for incoming mail judge signers of messages we receive; anchors
    for outgoing mail judge recipients' encryption certificates (Direct
    Applicability Statement section 4, requirement 8 of specs/direct.md)."""

    INCOMING = "incoming"
    OUTGOING = "outgoing"


@dataclass(frozen=True, slots=True)
class AnchorSet:
    domain: str
    direction: Direction
    certificates: tuple[CertRef, ...]
    version: str
    """Changes whenever the set changes; part of every trust-cache key."""

    @classmethod
    def of(cls, domain: str, direction: Direction, certs: Iterable[CertRef]) -> AnchorSet:
        ordered = tuple(sorted(set(certs), key=lambda c: c.sha256))
        version = hashlib.sha256(b"".join(c.sha256.encode() for c in ordered)).hexdigest()[:16]
        return cls(domain.lower(), direction, ordered, version)

    def describe(self) -> str:
        return f"{self.direction.value} anchors of {self.domain} (version {self.version}, {len(self.certificates)} certificates)"


class AnchorSource(Protocol):
    async def anchors(self, domain: str, direction: Direction) -> AnchorSet: ...
