"""The sender a signature binds: exactly one address, read once, strictly.

A record shows its message's sender, and the trust layer checks that the
signer's certificate names that same sender (Direct item 12). The two must be
one reading of one From field, or a message signed by Mallory can show Alice:

- The sender is the single mailbox of the single From field of the wrapped
  message (Direct AS section 3.3: the message/rfc822 inside the signature
  carries the real headers), or of the outer message when the signed content
  is not wrapped (its headers are not signed; the binding is what protects
  them). RFC 5322 section 3.6.2 allows a From of several mailboxes with a
  Sender field; a signature has one signer, so Direct needs one mailbox.
- No other From inside the signed entity (its own header section, the wrapped
  message's parts, nested message/rfc822 entities at any depth) may name
  anyone else: a reader showing a nested From would show a sender nobody
  bound.
- Every address is read by ``address.parse_mailbox_list`` (no encoded-word
  decoding, no display name taken for an address), over header sections
  ``mime.parse_entity`` has already refused when a bare CR or LF could make
  another parser see other fields.

The walk is bounded by the MIME depth and part limits, and never decodes a
body: a message/rfc822 entity with a content transfer encoding other than
7bit, 8bit or binary is refused (RFC 2046 section 5.2.1).
"""

from __future__ import annotations

from .address import Unreadable, parse_mailbox_list
from .limits import Limits
from .mime import Entity, MimeError, parse_entity
from .outcomes import Rejected, RejectReason

MESSAGE_TYPES = ("message/rfc822", "message/global")
IDENTITY_ENCODINGS = ("7bit", "8bit", "binary")


def bound_sender(source: Entity, signed: Entity, limits: Limits, *, wrapped: Entity | None = None) -> str | Rejected:
    """The single From mailbox of ``source``, if nothing in ``signed`` names another.

    ``source`` is the wrapped message, the outer message, or (a bare CMS)
    the signed content itself. ``wrapped`` is the message ``signed`` wraps, when
    the caller has parsed it already (a header section near the limit costs a
    millisecond a parse: issue 7 section 3 wants no input costing more than its size). Raises ``MimeError`` only for structure the
    walk cannot read (the caller's typed MALFORMED/TOO_DEEP/TOO_LARGE).
    """
    fields = source.get_all("From")
    if not fields:
        return Rejected(RejectReason.SENDER_MISSING, "the message has no From field to bind the signer to")
    if len(fields) > 1:
        return Rejected(
            RejectReason.SENDER_AMBIGUOUS,
            f"the message has {len(fields)} From fields; exactly one is allowed (RFC 5322 section 3.6)",
        )
    mailboxes = parse_mailbox_list(fields[0], at_most=1)
    if isinstance(mailboxes, Unreadable):
        return Rejected(RejectReason.SENDER_MALFORMED, f"the From field is not an RFC 5322 mailbox: {mailboxes}")
    if len(mailboxes) != 1:
        return Rejected(
            RejectReason.SENDER_AMBIGUOUS,
            "the From field names more than one mailbox; a signed Direct message has one sender",
        )
    sender = mailboxes[0].address
    other = _other_from(signed, sender, limits, wrapped)
    return other if other is not None else sender


def _other_from(signed: Entity, sender: str, limits: Limits, wrapped: Entity | None) -> Rejected | None:
    """The first From inside ``signed`` that is unreadable or names someone else."""
    stack: list[tuple[Entity, int]] = [(signed, 1)]
    seen = 0
    while stack:
        entity, depth = stack.pop()
        seen += 1
        if seen > limits.max_mime_parts:
            raise MimeError(f"more than {limits.max_mime_parts} entities in the signed content", too_large=True)
        if depth > limits.max_mime_depth:
            raise MimeError(f"the signed content nests deeper than {limits.max_mime_depth} levels", too_deep=True)
        for value in entity.get_all("From"):
            mailboxes = parse_mailbox_list(value, at_most=1)
            if isinstance(mailboxes, Unreadable):
                return Rejected(
                    RejectReason.SENDER_MALFORMED,
                    f"a From field inside the signed content is not an RFC 5322 mailbox: {mailboxes}",
                )
            for mailbox in mailboxes:
                if mailbox.address != sender:
                    return Rejected(
                        RejectReason.SENDER_AMBIGUOUS,
                        f"the signed content also names {mailbox.address} as a sender, besides {sender}",
                    )
        ctype = entity.content_type
        if ctype.startswith("multipart/"):
            stack.extend((part, depth + 1) for part in reversed(entity.parts(limits)))
        elif ctype in MESSAGE_TYPES:
            child = wrapped if entity is signed and wrapped is not None else message_of(entity, limits)
            stack.append((child, depth + 1))
    return None


def message_of(entity: Entity, limits: Limits) -> Entity:
    """The message a message/rfc822 entity holds, as a window over the same bytes."""
    if entity.transfer_encoding not in IDENTITY_ENCODINGS:
        raise MimeError(
            f"a {entity.content_type} entity with content transfer encoding {entity.transfer_encoding}: "
            "only 7bit, 8bit or binary are allowed (RFC 2046 section 5.2.1)"
        )
    return parse_entity(entity.buf, limits, entity.start, entity.end)
