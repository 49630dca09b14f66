"""An opened Direct message in plain form, for a provider's mailbox (issue 9).

A provider's EHR reads ordinary mail, not S/MIME: the gateway hands it the
message the sender signed, with the trust decision added on top as header
fields (``X-Direct-Trust``, ``X-Direct-Signer``, ``X-Direct-Sender``), the way
an MTA adds trace fields.

What reaches the provider is what the signature covers, from the same parse
the signature check used (STYLE.md: a second parser could read the bytes
differently): for a wrapped message, the ``message/rfc822`` inside the
signed entity; for an unwrapped one (legal in Direct), the signed entity
under the outer header fields, which the binding check already compared.

Any ``X-Direct-*`` field the sender put in the message is removed first: a
sender must not be able to write our verdict for us.
"""

from __future__ import annotations

from .inbound import entity_headers
from .limits import DEFAULT_LIMITS, Limits
from .mime import canonical, format_headers, parse_entity
from .outcomes import Headers, Opened
from .sender import message_of

OUR_PREFIX = "x-direct-"
"""Header fields in this family are written by the gateway only."""

_ENTITY_FIELDS = ("content-", "mime-version")
"""The outer fields that describe the S/MIME envelope, not the message: replaced by the signed entity's own."""


def _without_ours(head: bytes) -> bytes:
    """The header section without ``X-Direct-*`` fields (and their continuation lines)."""
    kept: list[bytes] = []
    dropping = False
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            if not dropping:
                kept.append(line)
            continue
        dropping = line.lower().startswith(OUR_PREFIX.encode())
        if not dropping:
            kept.append(line)
    return b"\r\n".join(kept)


def plain_message(raw: bytes, opened: Opened, trace: list[tuple[str, str]], limits: Limits = DEFAULT_LIMITS) -> bytes:
    """The message to deliver in plain form: ``trace`` fields first, then the signed message.

    ``raw`` is the message as received (for the outer fields of an unwrapped
    message); ``trace`` names and values must be one-line ASCII (the caller's
    verdict, not the sender's words)."""
    for name, value in trace:
        if not name.lower().startswith(OUR_PREFIX) or not (name + value).isascii() or "\n" in value or "\r" in value:
            raise ValueError(f"{name!r}: trace fields are one-line ASCII X-Direct-* fields")
    content = canonical(opened.content)
    entity = parse_entity(content, limits)
    if opened.wrapped:
        inner = message_of(entity, limits)
        head, body = bytes(inner.buf[inner.header_start:inner.start]), bytes(inner.buf[inner.start:inner.end])
    else:
        outer = parse_entity(canonical(raw), limits)
        fields = [(k, v) for k, v in outer.fields if not k.lower().startswith(_ENTITY_FIELDS)]
        head = format_headers(fields) + bytes(content[:entity.start])
        body = bytes(content[entity.start:entity.end])
    head = _without_ours(head.rstrip(b"\r\n"))
    return format_headers(trace) + head + b"\r\n\r\n" + body


def headers_of(message: bytes, limits: Limits = DEFAULT_LIMITS) -> Headers:
    """The routing and notification headers of a plain message (one we built with
    ``plain_message``), read by the same parser as an opened message's."""
    return entity_headers(parse_entity(canonical(message), limits))
