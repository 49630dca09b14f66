"""The records' vocabulary: item types, inbox states, where an item came from,
and what a delivery into a record carries (shared/specs/records-bridge.md section 1)."""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from datetime import datetime


class ItemType(enum.Enum):
    MESSAGE = "message"
    FILE = "file"
    """Anything else, PDFs included (their content type says so)."""
    CCD = "ccd"
    CDA = "cda"
    DISCHARGE_SUMMARY = "discharge_summary"
    CCR = "ccr"

    @property
    def immutable(self) -> bool:
        """Clinical documents are never edited in place (HealthVault's rule, spec section 1)."""
        return self in (ItemType.CCD, ItemType.CDA, ItemType.CCR, ItemType.DISCHARGE_SUMMARY)


class InboxState(enum.Enum):
    NONE = "none"
    UNREVIEWED = "unreviewed"
    ACCEPTED = "accepted"
    DISMISSED = "dismissed"


class SourceKind(enum.Enum):
    DIRECT = "direct"
    PACKAGE = "package"
    CONNECT = "connect"
    APP = "app"


@dataclass(frozen=True, slots=True)
class Attachment:
    content_type: str
    filename: str | None
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Provenance:
    """Who a Direct item came from, as the gateway established it."""

    sender: str
    """The From address the signature is bound to."""
    signer_sha256: str
    signer_subject: str
    trust_decision: str
    """The trust decision in words: anchor set, checks passed."""
    message_id: str | None


@dataclass(frozen=True, slots=True)
class Delivery:
    """One accepted Direct message, as the gateway hands it to a record."""

    provenance: Provenance
    recipients: tuple[str, ...]
    subject: str | None
    date: str | None
    received_at: datetime
    content: bytes = field(repr=False)
    """The signed MIME entity exactly as signed: what the record keeps as the message."""
    body_text: str | None
    attachments: tuple[Attachment, ...] = ()

    @property
    def message_key(self) -> str:
        """What makes a redelivery recognisable: the Message-ID, else the content's digest."""
        mid = self.provenance.message_id
        if mid and len(mid) <= 255:
            return mid
        return "sha256:" + hashlib.sha256(self.content).hexdigest()
