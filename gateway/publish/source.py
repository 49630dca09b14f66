"""Where the responder's certificates come from.

``PublishedCertificates`` is the one question the responder asks: which
certificates does a domain of ours publish, and under which owner. An owner
is an address (``bob@b.test``) or its DNS name (``bob.b.test``) for an
address-bound certificate, or the domain itself (``b.test``) for an org-bound
one, per specs/direct.md item 16; ``zone.owner_name`` maps either form. The
store (``gateway.domains.LocalDomains``) answers it from the database; the
``[dns] certificates`` files and the tests use ``StaticPublished``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from gateway.core.certs import CertRef, KeyMaterialError, load_certificates


class PublishedCertificates(Protocol):
    async def published_certificates(self, domain: str) -> list[tuple[str, CertRef]]: ...


def owners_of(cert: CertRef) -> list[str]:
    """Where a certificate is published: each address it is bound to (SAN
    rfc822Name or the legacy emailAddress), else each domain (SAN dNSName)."""
    return list(cert.email_addresses) or list(cert.dns_names)


@dataclass(frozen=True)
class StaticPublished:
    """A fixed list of (owner, certificate), e.g. loaded from files at start-up."""

    entries: tuple[tuple[str, CertRef], ...] = field(default=())

    @classmethod
    def of(cls, certs: Iterable[CertRef]) -> StaticPublished:
        """Each certificate under the owners it names (``owners_of``)."""
        return cls(tuple((owner, c) for c in certs for owner in owners_of(c)))

    async def published_certificates(self, domain: str) -> list[tuple[str, CertRef]]:
        domain = domain.lower().rstrip(".")
        return [(o, c) for o, c in self.entries if o.lower().rpartition("@")[2] == domain]


def load_published(paths: Iterable[str | Path]) -> StaticPublished:
    """The ``[dns] certificates`` files (PEM or DER), read once at start-up by the composition root."""
    certs: list[CertRef] = []
    for path in paths:
        try:
            certs.extend(load_certificates(Path(path).read_bytes()))
        except (OSError, KeyMaterialError) as exc:
            raise PublishError(f"{path}: {exc}") from exc
    return StaticPublished.of(certs)


class PublishError(ValueError):
    """A certificate file to publish that cannot be read."""
