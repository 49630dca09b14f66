"""Message Disposition Notifications (RFC 3798, RFC 8098) with Direct's extension.

The receiving HISP answers every accepted message with a ``processed`` MDN,
and, when the sender asked for timely and reliable delivery
(``Disposition-Notification-Options: X-DIRECT-FINAL-DESTINATION-DELIVERY=
optional,true``), with ``dispatched`` once the message reached its final
destination or ``failed`` when it cannot get there (Implementation Guide for
Delivery Notification in Direct, specs/direct.md items 22-28). An MDN is a
plain message here; the caller seals it like any other. Never answer an MDN
or a DSN with an MDN (item 22).

Parsing is lenient, because the reports come from other implementations:
the reference implementation's samples omit the address type in
Final-Recipient and the closing boundary.
"""

from __future__ import annotations

import enum
import os
import quopri
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.header import Header
from email.utils import format_datetime

from .certs import utc
from .limits import DEFAULT_LIMITS, Limits
from .mime import (
    Entity,
    MimeError,
    addresses,
    canonical,
    decode_words,
    format_headers,
    parse_entity,
    split_multipart,
)
from .outcomes import Headers, MessageKind

FINAL_DESTINATION = "X-DIRECT-FINAL-DESTINATION-DELIVERY"
REPORTING_UA_PRODUCT = "directgw"


class Disposition(enum.Enum):
    PROCESSED = "processed"
    DISPATCHED = "dispatched"
    FAILED = "failed"
    DISPLAYED = "displayed"
    DELETED = "deleted"
    DENIED = "denied"


@dataclass(frozen=True, slots=True)
class MdnRequest:
    """What the original message asked for."""

    notify: tuple[str, ...]
    """Where an MDN goes: Disposition-Notification-To, else the sender (Direct sends one regardless)."""
    reliable: bool
    """Timely and reliable delivery requested: dispatched or failed must follow processed."""


def requests_reliable_delivery(options: str | None) -> bool:
    """``X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,true`` in Disposition-Notification-Options
    (RFC 3798 section 2.2 syntax). Anything malformed counts as not requested (ETT MT 40)."""
    if not options:
        return False
    for item in options.split(";"):
        name, sep, value = item.partition("=")
        if not sep or name.strip().upper() != FINAL_DESTINATION:
            continue
        importance, _, values = value.partition(",")
        if importance.strip().lower() in ("optional", "required") and values.strip().lower() == "true":
            return True
    return False


def mdn_request(kind: MessageKind, original: Headers) -> MdnRequest | None:
    """The MDN an accepted message calls for, or None for MDNs and DSNs, which are never answered."""
    if kind is not MessageKind.MESSAGE:
        return None
    notify = original.disposition_notification_to or original.from_
    if not notify:
        return None
    return MdnRequest(notify, requests_reliable_delivery(original.disposition_notification_options))


_SUBJECT_PREFIX = {
    Disposition.PROCESSED: "Processed",
    Disposition.DISPATCHED: "Dispatched",
    Disposition.FAILED: "Failed",
    Disposition.DISPLAYED: "Displayed",
    Disposition.DELETED: "Deleted",
    Disposition.DENIED: "Denied",
}

_HUMAN = {
    Disposition.PROCESSED: "Your message was received, decrypted and its signature verified.",
    Disposition.DISPATCHED: "Your message was delivered to its final destination.",
    Disposition.FAILED: "Your message could not be delivered to its final destination.",
}


def build_mdn(
    disposition: Disposition,
    *,
    original: Headers,
    final_recipient: str,
    reporting_domain: str,
    at: datetime,
    notify: tuple[str, ...] | None = None,
    failure: str | None = None,
    original_recipient: str | None = None,
) -> bytes:
    """A complete MDN message (RFC 3798 section 3), from ``final_recipient`` to the original sender.

    ``failure`` is required for FAILED and says why, in words for the sender.
    ``original_recipient`` is the ORCPT/Original-Recipient the original carried, if any:
    RFC 3798 section 3.2.3 has the field copy that value, never invent it.

    Every value that came from the original (subject, Message-ID, addresses) is
    reduced to one line first: a decoded RFC 2047 subject can hold CR LF, which
    would otherwise inject header fields into our MDN.
    """
    if disposition is Disposition.FAILED and not failure:
        raise ValueError("a failed MDN says why (RFC 3798 section 3.2.7)")
    to = notify or original.disposition_notification_to or original.from_
    if not to:
        raise ValueError("the original message names no sender to notify")
    at = utc(at)
    boundary = f"mdn_{os.urandom(10).hex()}"
    # RFC 3798 section 3.2.5: Original-Message-ID is supplied when the original had a
    # Message-ID; without one the MDN still goes, matched by the sender on other fields.
    message_id = one_line(original.message_id or "")
    final_recipient = one_line(final_recipient)
    reporting_domain = one_line(reporting_domain)
    # Direct's guide pairs "failed" with a Failure field; RFC 3798 section 3.2.6.3
    # says a processing error is the "error" modifier, explained by an Error field
    # (section 3.2.7). Readers of either convention find the reason.
    modifier = "/error" if failure else ""
    report: list[tuple[str, str]] = [("Reporting-UA", f"{reporting_domain}; {REPORTING_UA_PRODUCT}")]
    if original_recipient:
        report.append(("Original-Recipient", f"rfc822;{one_line(original_recipient)}"))
    report += [
        ("Final-Recipient", f"rfc822;{final_recipient}"),
        *([("Original-Message-ID", message_id)] if message_id else []),
        ("Disposition", f"automatic-action/MDN-sent-automatically;{disposition.value}{modifier}"),
    ]
    if disposition is Disposition.DISPATCHED:
        # The Direct extension field marks the notification of final delivery.
        report.append((FINAL_DESTINATION, ""))
    if failure:
        reason = ascii_line(failure)
        report += [("Failure", reason), ("Error", reason)]
    subject = f"{_SUBJECT_PREFIX[disposition]}: {one_line(original.subject or '') or '(no subject)'}"
    human = _HUMAN.get(disposition, f"Disposition: {disposition.value}.")
    if failure:
        human += f"\r\nReason: {one_line(failure)}"
    human_body, human_cte = seven_bit(human)
    headers = [
        ("From", final_recipient),
        ("To", ", ".join(one_line(a) for a in to)),
        ("Subject", encoded_header(subject)),
        ("Date", format_datetime(at)),
        ("Message-ID", f"<{os.urandom(16).hex()}@{reporting_domain}>"),
        *([("In-Reply-To", message_id), ("References", message_id)] if message_id else []),
        ("MIME-Version", "1.0"),
        ("Content-Type", f'multipart/report; report-type=disposition-notification; boundary="{boundary}"'),
    ]
    return (
        format_headers(headers)
        + f"\r\n--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Transfer-Encoding: {human_cte}\r\n\r\n".encode()
        + human_body
        + f"\r\n--{boundary}\r\nContent-Type: message/disposition-notification\r\n\r\n".encode()
        + "".join(f"{k}: {v}\r\n" if v else f"{k}:\r\n" for k, v in report).encode()
        + f"\r\n--{boundary}--\r\n".encode()
    )


def one_line(text: str) -> str:
    """Whitespace (CR and LF included) collapsed: a value that cannot start a new header field."""
    return " ".join(text.split())


def ascii_line(text: str) -> str:
    """Report fields are US-ASCII (RFC 3798 section 3.1.1; UTF-8 needs RFC 6533's
    message/global-disposition-notification, which peers may not read)."""
    return one_line(text).encode("ascii", "replace").decode("ascii")


def encoded_header(text: str) -> str:
    """ASCII as is; otherwise RFC 2047 encoded words, folded with CRLF."""
    if text.isascii():
        return text
    return Header(text, "utf-8", header_name="Subject").encode(linesep="\r\n")


def seven_bit(text: str) -> tuple[bytes, str]:
    """The human-readable part as 7-bit data: the MDN is signed next, and RFC 5751
    section 3.1.2 asks for 7-bit content so that no relay changes the signed bytes."""
    data = text.encode("utf-8")
    if data.isascii():
        return data, "7bit"
    encoded = quopri.encodestring(data.replace(b"\r\n", b"\n"))
    return encoded.rstrip(b"\n").replace(b"\n", b"\r\n"), "quoted-printable"


# --------------------------------------------------------------------------- parsing


class NotAReportReason(enum.Enum):
    NOT_A_REPORT = "not-a-report"
    NO_REPORT_PART = "no-report-part"
    MALFORMED = "malformed"


@dataclass(frozen=True, slots=True)
class NotAReport:
    reason: NotAReportReason
    detail: str


@dataclass(frozen=True, slots=True)
class Mdn:
    disposition: Disposition | None
    """None for a disposition type this parser does not know (the raw text is in ``disposition_text``)."""
    disposition_text: str
    action_mode: str
    sending_mode: str
    modifiers: tuple[str, ...]
    final_recipient: str | None
    original_recipient: str | None
    original_message_id: str | None
    reporting_ua: str | None
    final_destination_delivery: bool
    """The Direct extension field is present: this confirms (or denies) final delivery."""
    failure: str | None
    error: str | None
    from_: tuple[str, ...]
    subject: str | None
    extension_fields: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DsnRecipient:
    final_recipient: str | None
    original_recipient: str | None
    action: str | None
    status: str | None
    diagnostic: str | None

    @property
    def failed(self) -> bool:
        return (self.action or "").lower() == "failed"


@dataclass(frozen=True, slots=True)
class Dsn:
    reporting_mta: str | None
    original_envelope_id: str | None
    original_message_id: str | None
    recipients: tuple[DsnRecipient, ...]
    from_: tuple[str, ...]
    subject: str | None


def _report_part(raw: bytes, report_type: str, part_type: str, limits: Limits) -> tuple[Entity, Entity] | NotAReport:
    """The report (its outer headers) and its machine-readable part."""
    try:
        message = parse_entity(canonical(raw), limits)
        if message.content_type != "multipart/report" or (message.param("report-type") or "").lower() != report_type:
            return NotAReport(NotAReportReason.NOT_A_REPORT, f"not a multipart/report of type {report_type}")
        boundary = message.param("boundary")
        if not boundary:
            return NotAReport(NotAReportReason.MALFORMED, "multipart/report without a boundary")
        for start, end in split_multipart(message, boundary, limits, lenient=True):
            part = parse_entity(message.buf, limits, start, end)
            if part.content_type == part_type:
                return message, part
    except MimeError as exc:
        return NotAReport(NotAReportReason.MALFORMED, str(exc))
    return NotAReport(NotAReportReason.NO_REPORT_PART, f"no {part_type} part")


def _report(
    raw: bytes, report_type: str, part_type: str, limits: Limits
) -> tuple[Entity, list[Entity]] | NotAReport:
    """The report's outer headers and the field blocks of its machine-readable part."""
    found = _report_part(raw, report_type, part_type, limits)
    if isinstance(found, NotAReport):
        return found
    outer, part = found
    try:
        blocks = _blocks(part, limits)
    except MimeError as exc:
        return NotAReport(NotAReportReason.MALFORMED, str(exc))
    if not blocks:
        return NotAReport(NotAReportReason.MALFORMED, f"the {part_type} part is empty")
    return outer, blocks


def _blocks(part: Entity, limits: Limits) -> list[Entity]:
    """The field blocks of a report body (RFC 3464 section 2.1: per-message, then per-recipient)."""
    body = bytes(part.decoded_body())
    blocks = [b for b in re.split(rb"\r\n(?:[ \t]*\r\n)+", body.strip(b"\r\n")) if b.strip()]
    return [parse_entity(b + b"\r\n\r\n", limits) for b in blocks]


def _address_field(value: str | None) -> str | None:
    """``rfc822;addr`` (RFC 3798 section 3.2.4) or a bare address, as the RI writes it."""
    if value is None:
        return None
    _, sep, address = value.partition(";")
    return (address if sep else value).strip().lower() or None


_DISPOSITION = re.compile(
    r"^\s*(?P<action>[\w-]+)\s*/\s*(?P<sending>[\w-]+)\s*;\s*(?P<type>[\w-]+)\s*(?:/\s*(?P<mods>.*))?$"
)


def parse_mdn(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> Mdn | NotAReport:
    report = _report(raw, "disposition-notification", "message/disposition-notification", limits)
    if isinstance(report, NotAReport):
        return report
    outer, (block, *_) = report
    disposition_value = block.get("Disposition")
    if disposition_value is None:
        return NotAReport(NotAReportReason.MALFORMED, "no Disposition field (RFC 3798 section 3.2.6)")
    m = _DISPOSITION.match(disposition_value)
    if m is None:
        return NotAReport(NotAReportReason.MALFORMED, f"unreadable Disposition {disposition_value!r}")
    known = {d.value: d for d in Disposition}
    standard = {
        "disposition", "reporting-ua", "final-recipient", "original-recipient", "original-message-id",
        "failure", "error", "warning", "mdn-gateway",
    }
    subject = outer.get("Subject")
    return Mdn(
        disposition=known.get(m["type"].lower()),
        disposition_text=m["type"],
        action_mode=m["action"],
        sending_mode=m["sending"],
        modifiers=tuple(x.strip() for x in (m["mods"] or "").split(",") if x.strip()),
        final_recipient=_address_field(block.get("Final-Recipient")),
        original_recipient=_address_field(block.get("Original-Recipient")),
        original_message_id=block.get("Original-Message-ID"),
        reporting_ua=block.get("Reporting-UA"),
        final_destination_delivery=block.get(FINAL_DESTINATION) is not None,
        failure=block.get("Failure"),
        error=block.get("Error"),
        from_=addresses(outer.get_all("From")),
        subject=decode_words(subject) if subject is not None else None,
        extension_fields={k: v for k, v in block.fields if k.lower() not in standard},
    )


def parse_dsn(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> Dsn | NotAReport:
    """A delivery status notification (RFC 3464): who failed, with which status."""
    report = _report(raw, "delivery-status", "message/delivery-status", limits)
    if isinstance(report, NotAReport):
        return report
    outer, (per_message, *per_recipient) = report
    original_id = next(
        (v for k, v in per_message.fields if k.lower().endswith("original-message-id")), None
    )
    subject = outer.get("Subject")
    return Dsn(
        reporting_mta=per_message.get("Reporting-MTA"),
        original_envelope_id=per_message.get("Original-Envelope-ID"),
        original_message_id=original_id,
        recipients=tuple(
            DsnRecipient(
                final_recipient=_address_field(b.get("Final-Recipient")),
                original_recipient=_address_field(b.get("Original-Recipient")),
                action=b.get("Action"),
                status=b.get("Status"),
                diagnostic=b.get("Diagnostic-Code"),
            )
            for b in per_recipient
        ),
        from_=addresses(outer.get_all("From")),
        subject=decode_words(subject) if subject is not None else None,
    )
