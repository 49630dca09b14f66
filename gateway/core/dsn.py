"""Delivery Status Notifications (RFC 3464) for our submitters: the failure notices of Direct.

A submitter (a provider's EHR) learns that a message did not reach a
recipient from one DSN per recipient (specs/direct.md items 21, 26-28):

- immediately, when no certificate qualifies (nothing was sent; the human
  part says which sources were asked and why nothing qualified), when the
  receiving HISP refused it (5xx; its reply is the Diagnostic-Code), or when
  the queue gave up after the message's lifetime;
- after the timeout, when the MDNs owed never came.

Why a DSN also for the timeout, when Direct's implementation guide allows a
``failed`` MDN-style notice there: an MDN reports what the *recipient's*
side did (Reporting-UA, Final-Recipient "sent automatically" by it), and on a
timeout that side said nothing; a ``failed`` MDN written by us would put
words in its mouth. A DSN is what a sending MTA writes about its own
attempt (Reporting-MTA is us), so it is honest in every one of these cases,
and EHRs read one kind of failure notice. Action ``failed`` with status
5.4.7 ("delivery time expired", RFC 3463) says the notification did not come
in time.

The message is ``multipart/report; report-type=delivery-status`` (RFC 6522)
with three parts: the words for a person, ``message/delivery-status`` (RFC
3464 section 2), and the original's header section as
``text/rfc822-headers`` (RFC 6522 section 4; the body is not returned: it
may hold medical data the notice does not need). It goes out with MAIL
FROM:<> so nothing answers it, and it is never written about an MDN or a DSN
(``notice_owed``): Direct item 22, RFC 3464 section 2 (no DSN about a DSN).

Pure: bytes and values in, bytes out; no clock (``at``), no I/O.
"""

from __future__ import annotations

import enum
import os
import re
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime

from .certs import utc
from .limits import DEFAULT_LIMITS, Limits
from .mdn import ascii_line, encoded_header, one_line, seven_bit
from .mime import MimeError, canonical, format_headers, parse_entity, split_multipart

MAX_RETURNED_HEADERS = 64 * 1024
"""The original's header section returned in the DSN at most (RFC 6522 section 4 returns
headers only); a submitter's header section is far smaller, a crafted one is cut here."""

MAX_DIAGNOSTIC = 500
"""Diagnostic-Code holds the remote reply (RFC 3464 section 2.3.6), cut like the queue keeps it."""

_STATUS = re.compile(r"^5\.\d{1,3}\.\d{1,3}$")
_HEADER_END = re.compile(rb"\r?\n\r?\n")


class Failure(enum.Enum):
    """Why a recipient did not get the message: chooses the words and the status code."""

    NO_CERTIFICATE = "no-certificate"
    """Direct item 21: no valid certificate for the recipient anywhere; nothing was sent."""
    REFUSED = "refused"
    """The receiving server answered 5xx (RFC 3463 status from its reply when it gave one)."""
    UNDELIVERABLE = "undeliverable"
    """Nowhere to send it, or no key to sign it with: nothing was sent."""
    LIFETIME = "lifetime"
    """The queue retried until the message's lifetime ran out (RFC 5321 4.5.4.1)."""
    TIMED_OUT = "timed-out"
    """Sent, but the recipient's HISP did not confirm in time (Direct item 26)."""


_DEFAULT_STATUS = {
    Failure.NO_CERTIFICATE: "5.7.0",  # RFC 3463 X.7.0 other security status: no certificate qualified
    Failure.REFUSED: "5.0.0",  # X.0.0 when the server's reply carried no enhanced code
    Failure.UNDELIVERABLE: "5.4.4",  # X.4.4 unable to route
    Failure.LIFETIME: "5.4.7",  # X.4.7 delivery time expired
    Failure.TIMED_OUT: "5.4.7",
}

_WORDS = {
    Failure.NO_CERTIFICATE: (
        "No valid certificate was found for this recipient, so the message was NOT sent "
        "(Direct does not send a message it cannot encrypt for the recipient)."
    ),
    Failure.REFUSED: "The recipient's server refused the message.",
    Failure.UNDELIVERABLE: "The message could not be sent to this recipient.",
    Failure.LIFETIME: "The message could not be delivered before its time ran out; no more attempts will be made.",
    Failure.TIMED_OUT: (
        "The message was sent, but the recipient's system did not confirm in time that it was "
        "received and processed. It may still arrive; this gateway no longer waits for it."
    ),
}


@dataclass(frozen=True, slots=True)
class FailedRecipient:
    """One per-recipient block of the report (RFC 3464 section 2.3), always Action: failed."""

    final_recipient: str
    failure: Failure
    explanation: str
    """For a person: what was tried and why it failed (a discovery report, a remote reply)."""
    status: str | None = None
    """An RFC 3463 5.x.x code; the failure's default when None."""
    diagnostic: str | None = None
    """The remote server's reply, when there was one (``smtp; 550 5.1.1 ...``)."""
    remote_mta: str | None = None
    last_attempt: datetime | None = None
    """When it was last tried (for a timeout: when it was sent); the report's time when None."""

    def __post_init__(self) -> None:
        if "@" not in self.final_recipient:
            raise ValueError(f"{self.final_recipient!r}: a Final-Recipient is an address")
        if self.status is not None and not _STATUS.match(self.status):
            raise ValueError(f"{self.status!r}: a failed action carries a permanent 5.x.x status (RFC 3464 2.3.4)")

    @property
    def status_code(self) -> str:
        return self.status or _DEFAULT_STATUS[self.failure]


def header_section(original: bytes) -> bytes:
    """The original's header section (up to the first empty line), CRLF line ends, bounded."""
    found = _HEADER_END.search(original, 0, MAX_RETURNED_HEADERS + 4)
    head = original[: found.start()] if found else original[:MAX_RETURNED_HEADERS]
    return b"\r\n".join(head[:MAX_RETURNED_HEADERS].splitlines()) + b"\r\n"


def _field(head: bytes, name: str) -> str | None:
    """One unfolded header field of ``head``, for the notice's own headers only."""
    lines = head.split(b"\r\n")
    wanted = name.lower().encode() + b":"
    for i, line in enumerate(lines):
        if line.lower().startswith(wanted):
            value = line[len(wanted):]
            for more in lines[i + 1:]:
                if more[:1] not in (b" ", b"\t"):
                    break
                value += b" " + more.strip()
            return one_line(value.decode("ascii", "replace")) or None
    return None


def notice_owed(original: bytes) -> bool:
    """False for an MDN or DSN: a failure notice is never written about a notification
    (Direct item 22; RFC 3464 section 2; RFC 3798 section 3)."""
    content_type = (_field(header_section(original), "Content-Type") or "").lower()
    if not content_type.startswith("multipart/report"):
        return True
    return not re.search(r"report-type\s*=\s*\"?(disposition-notification|delivery-status)", content_type)


def build_dsn(
    original: bytes,
    *,
    to: str,
    recipients: tuple[FailedRecipient, ...],
    reporting_mta: str,
    at: datetime,
    arrived: datetime | None = None,
    envelope_id: str | None = None,
) -> bytes:
    """A complete RFC 3464 failure DSN about ``original`` (the submitted message, or at
    least its header section), addressed to the submitter ``to``, written at ``at``;
    ``arrived`` is when the message was submitted (the report's time when None)."""
    if not recipients:
        raise ValueError("a DSN reports at least one recipient (RFC 3464 section 2.1)")
    if not notice_owed(original):
        raise ValueError("never a DSN about an MDN or a DSN (Direct item 22, RFC 3464 section 2)")
    at = utc(at)
    head = header_section(original)
    message_id = _field(head, "Message-ID")
    subject = _field(head, "Subject")
    reporting_mta = ascii_line(reporting_mta)
    boundary = f"dsn_{os.urandom(10).hex()}"

    per_message: list[tuple[str, str]] = [("Reporting-MTA", f"dns; {reporting_mta}")]
    if envelope_id:
        per_message.append(("Original-Envelope-Id", ascii_line(envelope_id)))
    if message_id:
        # not in RFC 3464's fields, but what Direct's reference implementation writes and
        # what parse_dsn (and the monitor) match on, beside the returned headers
        per_message.append(("X-Original-Message-ID", ascii_line(message_id)))
    per_message.append(("Arrival-Date", format_datetime(utc(arrived) if arrived else at)))
    blocks = [per_message]
    words = [
        f"This is the Direct gateway {reporting_mta}. Your message"
        + (f" {message_id}" if message_id else "")
        + (f" ({one_line(subject)})" if subject else "")
        + " was not delivered to:"
    ]
    for r in recipients:
        block = [
            ("Final-Recipient", f"rfc822; {ascii_line(r.final_recipient)}"),
            ("Action", "failed"),
            ("Status", r.status_code),
        ]
        if r.remote_mta:
            block.append(("Remote-MTA", f"dns; {ascii_line(r.remote_mta)}"))
        if r.diagnostic:
            block.append(("Diagnostic-Code", f"smtp; {ascii_line(r.diagnostic)[:MAX_DIAGNOSTIC]}"))
        block.append(("Last-Attempt-Date", format_datetime(utc(r.last_attempt) if r.last_attempt else at)))
        blocks.append(block)
        words += ["", f"  {one_line(r.final_recipient)}", f"  {_WORDS[r.failure]}"]
        words += [f"    {line.rstrip()}" for line in r.explanation.strip().splitlines() if line.strip()]
    human, cte = seven_bit("\r\n".join(words) + "\r\n")
    first = recipients[0].final_recipient
    headers = [
        ("From", f"Mail Delivery System <mailer-daemon@{reporting_mta}>"),
        ("To", one_line(to)),
        ("Subject", encoded_header(
            f"Delivery failed: {one_line(subject or '') or '(no subject)'}"
            + (f" (to {one_line(first)})" if len(recipients) == 1 else "")
        )),
        ("Date", format_datetime(at)),
        ("Message-ID", f"<{os.urandom(16).hex()}@{reporting_mta}>"),
        *([("In-Reply-To", message_id), ("References", message_id)] if message_id else []),
        ("Auto-Submitted", "auto-replied"),
        ("MIME-Version", "1.0"),
        ("Content-Type", f'multipart/report; report-type=delivery-status; boundary="{boundary}"'),
    ]
    status = "\r\n".join("".join(f"{k}: {v}\r\n" for k, v in block) for block in blocks)
    return (
        format_headers(headers)
        + f"\r\n--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Transfer-Encoding: {cte}\r\n\r\n".encode()
        + human
        + f"\r\n--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n".encode()
        + status.encode("ascii")
        + f"\r\n--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n".encode()
        + head
        + f"\r\n--{boundary}--\r\n".encode()
    )


def returned_message_id(report: bytes, limits: Limits = DEFAULT_LIMITS) -> str | None:
    """The Message-ID in a DSN's returned original (its ``text/rfc822-headers`` or
    ``message/rfc822`` part, RFC 6522 section 3): how a DSN names its message when its
    delivery-status part has no (X-)Original-Message-ID, as RFC 3464 does not require one."""
    try:
        message = parse_entity(canonical(report), limits)
        boundary = message.param("boundary")
        if message.content_type != "multipart/report" or not boundary:
            return None
        for start, end in split_multipart(message, boundary, limits, lenient=True):
            part = parse_entity(message.buf, limits, start, end)
            if part.content_type in ("text/rfc822-headers", "message/rfc822"):
                returned = parse_entity(part.buf, limits, part.start, part.end)
                found = returned.get("Message-ID")
                return one_line(found) if found else None
    except MimeError:
        return None
    return None
