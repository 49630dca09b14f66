"""An opened, trusted message as the records receive it.

Only what the signature covers reaches a record: the signed entity
(``Opened.content``), the parts read from it, and the sender the signature
is bound to. The first inline text/plain part is the message's body; every
other leaf part is an attachment.
"""

from __future__ import annotations

from datetime import datetime

from gateway.core.outcomes import Opened, Part
from records_bridge.types import Attachment, Delivery, Provenance
from trust.types import TrustDecision

BODY_TEXT_LIMIT = 64 * 1024
"""The body kept in the message item's data for display; the whole message is its blob."""


def delivery_of(opened: Opened, sender: str, decision: TrustDecision, recipients: tuple[str, ...],
                received_at: datetime) -> Delivery:
    body: Part | None = None
    attachments: list[Attachment] = []
    for part in opened.parts:
        if body is None and part.content_type == "text/plain" and not part.attachment:
            body = part
            continue
        attachments.append(Attachment(part.content_type, part.filename, part.data))
    signer = opened.signature.signer
    return Delivery(
        provenance=Provenance(
            sender=sender,
            signer_sha256=signer.sha256,
            signer_subject=signer.subject,
            trust_decision=str(decision),
            message_id=opened.inner.message_id,
        ),
        recipients=recipients,
        subject=opened.inner.subject,
        date=opened.inner.date,
        received_at=received_at,
        content=opened.content,
        body_text=body.data[:BODY_TEXT_LIMIT].decode("utf-8", "replace") if body is not None else None,
        attachments=tuple(attachments),
    )
