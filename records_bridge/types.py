"""The records' vocabulary: item types, inbox states, where an item came from,
and what a delivery into a record carries (shared/specs/records-bridge.md section 1)."""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from datetime import datetime


def sent_key(sender: str, message_id: str) -> str:
    """What recognises a sender's retry: its Message-ID bound to the sender.

    A Message-ID alone is the sender's word, unique only among its own messages:
    an EHR that writes ``<12345@localhost>``, or a trusted sender reusing another's
    on purpose, would otherwise have a second, different message taken for a retry
    of the first and dropped as "already delivered". Hashed, so that any length fits
    the key's column and two (sender, Message-ID) pairs cannot meet by concatenation.
    """
    # surrogatepass: a header decoded with surrogateescape still has one encoding, and never raises
    sender = sender.lower()
    digest = hashlib.sha256(f"{len(sender)}:{sender}{message_id}".encode("utf-8", "surrogatepass"))
    return "mid:" + digest.hexdigest()


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
        """What makes a redelivery recognisable: the Message-ID bound to the sender it came
        from (``sent_key``), else the signed content's digest."""
        mid = self.provenance.message_id
        if mid:
            return sent_key(self.provenance.sender, mid)
        return "sha256:" + hashlib.sha256(self.content).hexdigest()
