"""The interface between the trust store and the trust engine.

The engine asks for the anchors of one local domain in one direction and gets
an ``AnchorSet`` whose ``version`` changes whenever its contents do, so trust
decisions can be cached against it. The database-backed store and the fixed
sets the ``verify`` command and the tests use both implement ``AnchorSource``.
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


@dataclass(frozen=True)
class StaticAnchors:
    """The same fixed anchors for every domain and direction (``directgw verify``, tests)."""

    certificates: tuple[CertRef, ...]

    async def anchors(self, domain: str, direction: Direction) -> AnchorSet:
        return AnchorSet.of(domain, direction, self.certificates)
