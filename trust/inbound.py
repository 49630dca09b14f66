"""The inbound step after ``open_inbound``: is the signer trusted?

Direct item 8: the signer's certificate must chain to an INCOMING anchor of
the recipient's local domain, be usable for signing (item 13) and be bound
to the sender (item 12): ``Opened.sender``, which the core read strictly
from the single From of the wrapped message (the one the signature covers),
or of the outer message when it was not wrapped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from gateway.core.certs import CertRef
from gateway.core.outcomes import Observation, Opened

from .anchor_source import Direction
from .policy import Policy
from .types import Check, Purpose, TrustDecision, TrustFailure


class Decider(Protocol):
    async def decide(
        self,
        cert: CertRef,
        *,
        purpose: Purpose,
        bound_to: str,
        local_domain: str,
        direction: Direction,
        at: datetime,
        intermediates: tuple[CertRef, ...] = (),
        binding: bool = True,
    ) -> TrustDecision: ...


@dataclass(frozen=True, slots=True)
class Accepted:
    decision: TrustDecision

    @property
    def trusted(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class Rejected:
    """The message opened, but its signer is not trusted; ``decision`` says why.
    (Not ``gateway.core.Rejected``: that one is about the message itself.)"""

    decision: TrustDecision

    @property
    def trusted(self) -> bool:
        return False

    @property
    def failure(self) -> TrustFailure:
        assert self.decision.failure is not None
        return self.decision.failure

    @property
    def temporary(self) -> bool:
        return self.decision.temporary

    def __str__(self) -> str:
        return str(self.decision)


InboundVerdict = Accepted | Rejected


def sender_of(opened: Opened) -> str:
    """The address the signature must be bound to: the core's strict reading of
    the single From of the wrapped message, else of the outer message."""
    return opened.sender


def weak_algorithms(opened: Opened, policy: Policy) -> str | None:
    """The message's own algorithms the policy refuses (the core reports, policy decides)."""
    refused = []
    if opened.has(Observation.SHA1_DIGEST) and not policy.allow_sha1:
        refused.append("the signature digest is SHA-1 (Direct requires SHA-256)")
    if opened.has(Observation.WEAK_CIPHER) and not policy.allow_3des:
        refused.append("the content is encrypted with 3DES")
    return "; ".join(refused) or None


async def check_inbound(
    service: Decider,
    opened: Opened,
    *,
    recipient: str,
    at: datetime,
    binding: bool = True,
    policy: Policy | None = None,
) -> InboundVerdict:
    signer = opened.signature.signer
    sender = sender_of(opened)
    local_domain = recipient.rpartition("@")[2].lower()
    weak = weak_algorithms(opened, policy) if policy is not None else None
    if weak is not None:
        failure = TrustFailure(Check.WEAK_MESSAGE_ALGORITHM, signer, weak)
        return Rejected(
            TrustDecision(
                trusted=False, certificate=signer, purpose=Purpose.SIGNING, bound_to=sender,
                direction=Direction.INCOMING,
                local_domain=local_domain, anchors="(not consulted)", anchors_version="", at=at, failure=failure,
            )
        )
    decision = await service.decide(
        signer,
        purpose=Purpose.SIGNING,
        bound_to=sender,
        local_domain=local_domain,
        direction=Direction.INCOMING,
        at=at,
        intermediates=tuple(opened.signature.certificates),
        binding=binding,
    )
    return Accepted(decision) if decision.trusted else Rejected(decision)
