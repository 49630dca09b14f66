"""What a submitted message must be before it is queued, and what is added: pure.

An EHR's plain message (RFC 5322) is read once with the core's header parser
(``gateway.core.mime.parse_entity``: bounded, strict about line ends) and:

- its From must be exactly one mailbox, the MAIL FROM address. Not merely an
  address of the account's domain: the outbound worker signs with the key of
  the job's sender (the address's own certificate before the domain's), the
  recipient binds the signer to the From, and the receiving HISP checks the
  envelope sender against the signed From (``reject_header_mismatch``); one
  address for all three is what makes those checks pass. DSNs and MDNs then
  come back to the address the EHR submitted from.
- Bcc and Resent-Bcc fields are removed (Direct item 7): each Bcc recipient
  is a RCPT of its own and gets a job of its own, so no recipient learns of
  another through the copy it receives.
- Message-ID is added when missing (Direct needs one per message: MDNs and
  DSNs name it as Original-Message-ID, and the delivery monitor matches on
  it), and Date when missing (RFC 5322 3.6: both From and Date are required).

Anything the parser refuses is a typed ``Refused``; nothing here raises on
hostile bytes. The header fields kept are the received bytes, unchanged.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime

from gateway.core.address import parse_mailbox_list
from gateway.core.limits import Limits
from gateway.core.mdn import requests_reliable_delivery
from gateway.core.mime import MimeError, decode_words, format_headers, parse_entity
from gateway.core.outbound import new_message_id
from gateway.store.lookups import normalise_domain

MAX_SUBJECT = 998
"""What the journal keeps of a Subject: one RFC 5322 line's worth (2.1.1)."""

_STRIPPED = {b"bcc", b"resent-bcc"}


class SubmitProblem(enum.Enum):
    HEADER_UNREADABLE = "header-unreadable"
    HEADER_TOO_LARGE = "header-too-large"
    NO_FROM = "no-from"
    FROM_UNREADABLE = "from-unreadable"
    SEVERAL_FROM = "several-from"
    FROM_NOT_SENDER = "from-not-sender"
    """The From mailbox is not the MAIL FROM address (module docstring)."""
    MESSAGE_ID_MALFORMED = "message-id-malformed"


@dataclass(frozen=True, slots=True)
class Refused:
    problem: SubmitProblem
    detail: str


@dataclass(frozen=True, slots=True)
class Prepared:
    payload: bytes = field(repr=False)
    """The message to queue: added fields first, then the received fields but Bcc, then the body."""
    message_id: str
    sender: str
    """The From address (the MAIL FROM address, lower-cased)."""
    subject: str | None
    reliable: bool
    """The submitter asked for timely and reliable delivery (Disposition-Notification-Options)."""
    added: tuple[str, ...]
    bcc_removed: int

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.payload).hexdigest()


def address(text: str) -> str | None:
    """An SMTP path's address as Direct can use it (a local part, ``@``, a DNS domain of two labels
    or more), lower-cased; None for anything else. Read by the core's strict parser, and
    refused when the parser had to drop anything (comments, a display name)."""
    parsed = parse_mailbox_list(text, at_most=1)
    if not isinstance(parsed, tuple) or len(parsed) != 1 or parsed[0].phrase is not None:
        return None
    found = parsed[0].address
    if found != text.strip().lower():
        return None
    local, _, domain = found.rpartition("@")
    try:
        if not local or normalise_domain(domain) != domain:
            return None
    except ValueError:
        return None
    return found


def prepare(data: bytes, *, mail_from: str, domain: str, at: datetime, limits: Limits) -> Prepared | Refused:
    try:
        entity = parse_entity(data, limits)
    except MimeError as exc:
        problem = SubmitProblem.HEADER_TOO_LARGE if exc.too_large else SubmitProblem.HEADER_UNREADABLE
        return Refused(problem, str(exc))
    froms = entity.get_all("From")
    if not froms:
        return Refused(SubmitProblem.NO_FROM, "the message has no From field (RFC 5322 3.6)")
    if len(froms) > 1:
        return Refused(SubmitProblem.SEVERAL_FROM, "the message has more than one From field (RFC 5322 3.6)")
    mailboxes = parse_mailbox_list(froms[0], at_most=1)
    if not isinstance(mailboxes, tuple):
        return Refused(SubmitProblem.FROM_UNREADABLE, f"From: {mailboxes}")
    if len(mailboxes) != 1:
        return Refused(SubmitProblem.SEVERAL_FROM, "From names more than one mailbox: Direct binds one signer")
    sender = mailboxes[0].address
    if sender != mail_from.strip().lower():
        return Refused(SubmitProblem.FROM_NOT_SENDER, f"From {sender} is not the MAIL FROM address {mail_from}")
    ids = entity.get_all("Message-ID")
    added: list[tuple[str, str]] = []
    if len(ids) > 1:
        return Refused(SubmitProblem.MESSAGE_ID_MALFORMED, "more than one Message-ID field (RFC 5322 3.6)")
    message_id = ids[0].strip() if ids else ""
    if message_id and not _msg_id_shaped(message_id):
        return Refused(SubmitProblem.MESSAGE_ID_MALFORMED, "Message-ID is not <id-left@id-right> (RFC 5322 3.6.4)")
    if not message_id:
        message_id = new_message_id(domain)
        added.append(("Message-ID", message_id))
    if entity.get("Date") is None:
        added.append(("Date", format_datetime(at.astimezone(UTC))))
    head_end, body_start = _sections(data, entity.start)
    kept, removed = _without_bcc(data[:head_end])
    payload = format_headers(added) + kept + b"\r\n" + data[body_start:]
    subject = entity.get("Subject")
    return Prepared(
        payload=payload, message_id=message_id, sender=sender,
        subject=decode_words(subject)[:MAX_SUBJECT] if subject is not None else None,
        reliable=requests_reliable_delivery(entity.get("Disposition-Notification-Options")),
        added=tuple(name for name, _ in added), bcc_removed=removed,
    )


def _msg_id_shaped(value: str) -> bool:
    if not (value.startswith("<") and value.endswith(">")):
        return False
    inner = value[1:-1]
    left, at, right = inner.rpartition("@")
    return bool(at and left and right) and not any(c.isspace() or c in "<>" for c in inner)


def _sections(data: bytes, body_start: int) -> tuple[int, int]:
    """(end of the header fields, start of the body) as ``parse_entity`` found them: the
    fields end with their CRLF, then one empty line; a message of fields alone has neither."""
    if data[max(0, body_start - 4) : body_start] == b"\r\n\r\n":
        return body_start - 2, body_start
    return body_start, body_start


def _without_bcc(head: bytes) -> tuple[bytes, int]:
    """The header fields without Bcc and Resent-Bcc (each with its folded lines), and how many went.

    ``parse_entity`` has accepted this section: every line is a field or the
    continuation of one, with CRLF line ends only, so splitting at CRLF reads it
    the same way the parser did."""
    if not head:
        return b"", 0
    if not head.endswith(b"\r\n"):
        head += b"\r\n"
    out: list[bytes] = []
    removed = 0
    dropping = False
    for line in head[:-2].split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            if not dropping:
                out.append(line)
            continue
        dropping = line.partition(b":")[0].lower() in _STRIPPED
        removed += dropping
        if not dropping:
            out.append(line)
    return b"".join(piece + b"\r\n" for piece in out), removed
