"""The failure DSN a submitter gets (gateway.core.dsn): RFC 3464 / RFC 6522 as the
standard library's parser and our own ``parse_dsn`` read it, per failure; never about
an MDN or a DSN; nothing from the original can inject a header field."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta

import pytest

from gateway.core.dsn import (
    FailedRecipient,
    Failure,
    build_dsn,
    header_section,
    notice_owed,
    returned_message_id,
)
from gateway.core.mdn import Disposition, build_mdn, parse_dsn
from gateway.core.outcomes import Headers
from tests import messages

AT = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
EHR = "dr.who@hospital.test"
ORIGINAL = messages.plain(sender=EHR, recipients=("patient@b.test",), subject="Referral for Pat",
                          body=b"Confidential clinical narrative.\r\n",
                          extra_headers=(("Message-ID", "<ref-1@hospital.test>"),))
NO_CERT_REPORT = (
    "no usable certificate for patient@b.test:\n"
    "  asked DNS CERT patient.b.test: no record\n"
    "  asked DNS CERT b.test: no record\n"
    "  asked LDAP _ldap._tcp.b.test: no SRV record"
)

CASES = [
    pytest.param(FailedRecipient("patient@b.test", Failure.NO_CERTIFICATE, NO_CERT_REPORT), "5.7.0", None,
                 ["NOT sent", "asked DNS CERT patient.b.test: no record", "no SRV record"], id="no-certificate"),
    pytest.param(FailedRecipient("patient@b.test", Failure.REFUSED, "b.test refused it",
                                 status="5.7.1", diagnostic="554 5.7.1 signer not trusted (path)",
                                 remote_mta="mx.b.test"),
                 "5.7.1", "smtp; 554 5.7.1 signer not trusted (path)", ["refused"], id="refused-5xx"),
    pytest.param(FailedRecipient("patient@b.test", Failure.LIFETIME, "last error: connection refused"), "5.4.7",
                 None, ["time ran out", "connection refused"], id="lifetime"),
    pytest.param(FailedRecipient("patient@b.test", Failure.TIMED_OUT, "waited 1:00:00 for the processed MDN"),
                 "5.4.7", None, ["did not confirm in time", "waited 1:00:00"], id="timed-out"),
    pytest.param(FailedRecipient("patient@b.test", Failure.UNDELIVERABLE, "b.test publishes a null MX"), "5.4.4",
                 None, ["could not be sent", "null MX"], id="undeliverable"),
]


@pytest.mark.parametrize(("recipient", "status", "diagnostic", "words"), CASES)
def test_a_failure_dsn_reads_back_as_rfc_3464(recipient, status, diagnostic, words):
    raw = build_dsn(ORIGINAL, to=EHR, recipients=(recipient,), reporting_mta="gw.hospital.test", at=AT)
    dsn = parse_dsn(raw)
    assert dsn.reporting_mta == "dns; gw.hospital.test"
    assert dsn.original_message_id == "<ref-1@hospital.test>"
    [r] = dsn.recipients
    assert (r.final_recipient, r.action, r.status, r.diagnostic) == ("patient@b.test", "failed", status, diagnostic)
    assert r.failed

    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed.get_content_type() == "multipart/report"
    assert parsed.get_param("report-type") == "delivery-status"
    assert parsed["To"] == EHR and parsed["In-Reply-To"] == "<ref-1@hospital.test>"
    human, status_part, headers = parsed.iter_parts()
    assert [p.get_content_type() for p in (human, status_part, headers)] == [
        "text/plain", "message/delivery-status", "text/rfc822-headers"]
    text = human.get_content()
    assert all(w in text for w in words), text
    returned = headers.get_payload()  # the original's headers, never its (medical) body
    assert "Subject: Referral for Pat" in returned and "Confidential" not in raw.decode()


def test_several_recipients_in_one_report():
    two = (FailedRecipient("a@b.test", Failure.LIFETIME, "gone"), FailedRecipient("c@b.test", Failure.LIFETIME, "gone"))
    dsn = parse_dsn(build_dsn(ORIGINAL, to=EHR, recipients=two, reporting_mta="gw.test", at=AT))
    assert [r.final_recipient for r in dsn.recipients] == ["a@b.test", "c@b.test"]


def _status_fields(raw: bytes) -> list[dict[str, str]]:
    """The delivery-status part's blocks (per message, then per recipient), as fields."""
    body = raw.split(b"Content-Type: message/delivery-status\r\n\r\n", 1)[1].split(b"\r\n--dsn_", 1)[0]
    return [dict(line.split(": ", 1) for line in block.splitlines())
            for block in body.decode().split("\r\n\r\n") if block.strip()]


@pytest.mark.parametrize(
    ("arrived", "last_attempt", "dates"),
    [
        pytest.param(None, None, ("09:00", "09:00"), id="the-reports-time-when-not-known"),
        pytest.param(AT - timedelta(hours=2), AT - timedelta(hours=1), ("07:00", "08:00"),
                     id="a-timeout-submitted-then-sent-earlier"),
    ],
)
def test_the_dates_say_when_it_arrived_and_was_last_tried(arrived, last_attempt, dates):
    """RFC 3464 2.2.5 and 2.3.7: Arrival-Date is when the message came to us, Last-Attempt-Date when
    it was last tried; a timeout's notice is written an hour after both."""
    raw = build_dsn(ORIGINAL, to=EHR, reporting_mta="gw.test", at=AT, arrived=arrived, recipients=(
        FailedRecipient("p@b.test", Failure.TIMED_OUT, "x", last_attempt=last_attempt),))
    per_message, per_recipient = _status_fields(raw)
    assert (per_message["Arrival-Date"], per_recipient["Last-Attempt-Date"]) == (
        f"Wed, 02 Dec 2026 {dates[0]}:00 +0000", f"Wed, 02 Dec 2026 {dates[1]}:00 +0000")
    assert email.message_from_bytes(raw)["Date"] == "Wed, 02 Dec 2026 09:00:00 +0000"


def _mdn() -> bytes:
    original = Headers(from_=(EHR,), to=("patient@b.test",), cc=(), subject="x", message_id="<m@h>", date=None)
    return build_mdn(Disposition.PROCESSED, original=original, final_recipient="patient@b.test",
                     reporting_domain="b.test", at=AT)


def _dsn() -> bytes:
    return build_dsn(ORIGINAL, to=EHR, recipients=(FailedRecipient("p@b.test", Failure.LIFETIME, "x"),),
                     reporting_mta="gw.test", at=AT)


@pytest.mark.parametrize("notification", [_mdn, _dsn], ids=["about-an-mdn", "about-a-dsn"])
def test_never_a_notice_about_a_notification(notification):
    """Direct item 22, RFC 3464 section 2: no DSN answers an MDN or a DSN."""
    raw = notification()
    assert not notice_owed(raw)
    with pytest.raises(ValueError, match="never a DSN"):
        build_dsn(raw, to=EHR, recipients=(FailedRecipient("p@b.test", Failure.LIFETIME, "x"),),
                  reporting_mta="gw.test", at=AT)


@pytest.mark.parametrize(
    "content_type",
    ["multipart/mixed; boundary=x", "multipart/report; report-type=other; boundary=x", "text/plain"],
)
def test_other_messages_are_owed_a_notice(content_type):
    assert notice_owed(f"From: {EHR}\r\nContent-Type: {content_type}\r\n\r\nbody\r\n".encode())


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [({"status": "4.4.7"}, "permanent 5.x.x"), ({"status": "5.7"}, "permanent 5.x.x"),
     ({"final_recipient": "not-an-address"}, "is an address")],
    ids=["temporary-status", "short-status", "no-address"],
)
def test_a_failed_recipient_checks_itself(kwargs, problem):
    values = {"final_recipient": "p@b.test", "failure": Failure.REFUSED, "explanation": "x"} | kwargs
    with pytest.raises(ValueError, match=problem):
        FailedRecipient(**values)


def test_nothing_from_the_original_or_the_reply_injects_a_header_field():
    original = ORIGINAL.replace(b"Subject: Referral for Pat", b"Subject: =?utf-8?q?a=0D=0ABcc:_x@evil.test?=")
    hostile = FailedRecipient("p@b.test\r\nBcc: y@evil.test", Failure.REFUSED, "x\r\nBcc: z@evil.test",
                              diagnostic="550 no\r\nBcc: w@evil.test")
    raw = build_dsn(original, to=EHR + "\r\nBcc: v@evil.test", recipients=(hostile,), reporting_mta="gw.test", at=AT)
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Bcc"] is None
    status = parsed.get_payload()[1]
    for block in status.get_payload():
        assert block["Bcc"] is None


def test_the_returned_header_section_is_bounded_and_stops_at_the_body():
    assert header_section(b"A: 1\r\nB: 2\r\n\r\nbody") == b"A: 1\r\nB: 2\r\n"
    assert header_section(b"A: 1\nB: 2\n\nbody") == b"A: 1\r\nB: 2\r\n"
    huge = b"X: " + b"y" * 200_000 + b"\r\n\r\nbody"
    assert len(header_section(huge)) <= 64 * 1024 + 2


def test_a_dsn_without_original_message_id_is_matched_by_its_returned_headers():
    """RFC 3464 does not require an Original-Message-ID: the returned headers name the message."""
    raw = _dsn().replace(b"X-Original-Message-ID: <ref-1@hospital.test>\r\n", b"")
    assert parse_dsn(raw).original_message_id is None
    assert returned_message_id(raw) == "<ref-1@hospital.test>"
    assert returned_message_id(ORIGINAL) is None and returned_message_id(b"\x00garbage") is None
