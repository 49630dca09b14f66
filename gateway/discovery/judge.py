"""Who decides whether a found certificate may be encrypted to.

``CertificateJudge`` is the one question discovery asks of the trust engine;
``TrustServiceJudge`` asks ``trust.TrustService`` (outgoing anchors of our
sender's domain, Direct item 8; the recipient's address as binding, item 12;
encryption key usage, item 13; expiry and revocation, items 9-10).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from anchors.source import Direction
from gateway.core.certs import CertRef
from trust import Purpose, TrustService


@dataclass(frozen=True, slots=True)
class Verdict:
    trusted: bool
    detail: str = ""
    temporary: bool = False


class CertificateJudge(Protocol):
    async def judge(
        self, cert: CertRef, *, recipient: str, local_domain: str, at: datetime, intermediates: Sequence[CertRef] = ()
    ) -> Verdict: ...


@dataclass(frozen=True)
class TrustServiceJudge:
    service: TrustService

    async def judge(
        self, cert: CertRef, *, recipient: str, local_domain: str, at: datetime, intermediates: Sequence[CertRef] = ()
    ) -> Verdict:
        decision = await self.service.decide(
            cert, purpose=Purpose.ENCRYPTION, bound_to=recipient, local_domain=local_domain,
            direction=Direction.OUTGOING, at=at, intermediates=intermediates,
        )
        if decision.trusted:
            return Verdict(True, str(decision))
        failure = decision.failure
        assert failure is not None
        return Verdict(False, str(failure), failure.temporary)
