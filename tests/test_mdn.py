"""MDNs as the Direct delivery-notification guide describes them: build, parse, never answer one."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core import Headers, MessageKind, Opened, SealOptions, open_inbound, seal_outbound
from gateway.core.mdn import (
    Disposition,
    Dsn,
    Mdn,
    NotAReport,
    NotAReportReason,
    build_mdn,
    mdn_request,
    parse_dsn,
    parse_mdn,
    requests_reliable_delivery,
)

from . import pki

ORIGINAL = Headers(
    from_=("alice@a.test",),
    to=("bob@b.test",),
    cc=(),
    subject="Referral",
    message_id="<m1@a.test>",
    date=None,
    disposition_notification_options="X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,true",
)


@pytest.mark.parametrize(
    ("options", "reliable"),
    [
        ("X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,true", True),
        ("x-direct-final-destination-delivery = required , TRUE", True),
        ("X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,false", False),
        ("X-DIRECT-FINAL-DESTINATION-DELIVERY", False),
        ("X-DIRECT-FINAL-DESTINATION-DELIVERY=;;==,", False),
        ("signed-receipt-protocol=optional,pkcs7-signature", False),
        ("", False),
        (None, False),
    ],
    ids=["requested", "case-and-spaces", "false", "no-value", "garbage", "other-option", "empty", "absent"],
)
def test_timely_reliable_request_and_malformed_options(options, reliable):
    assert requests_reliable_delivery(options) is reliable


@pytest.mark.parametrize("disposition", [Disposition.PROCESSED, Disposition.DISPATCHED, Disposition.FAILED])
def test_build_then_parse_round_trip(disposition):
    failure = "the recipient's mailbox does not exist" if disposition is Disposition.FAILED else None
    raw = build_mdn(
        disposition, original=ORIGINAL, final_recipient="bob@b.test", reporting_domain="b.test",
        at=pki.NOW, failure=failure,
    )
    mdn = parse_mdn(raw)
    assert isinstance(mdn, Mdn), mdn
    assert mdn.disposition is disposition
    assert (mdn.action_mode, mdn.sending_mode) == ("automatic-action", "MDN-sent-automatically")
    assert mdn.final_recipient == "bob@b.test"
    assert mdn.original_message_id == "<m1@a.test>"
    assert mdn.reporting_ua.startswith("b.test;")
    assert mdn.final_destination_delivery is (disposition is Disposition.DISPATCHED)
    assert mdn.failure == failure
    assert mdn.from_ == ("bob@b.test",)
    assert mdn.subject.endswith(": Referral")


def test_mdn_carries_no_disposition_notification_to_and_replies_to_the_original():
    raw = build_mdn(Disposition.PROCESSED, original=ORIGINAL, final_recipient="bob@b.test",
                    reporting_domain="b.test", at=pki.NOW)
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"Disposition-Notification-To" not in raw and b"Disposition-Notification-Options" not in raw
    assert b"To: alice@a.test" in head and b"In-Reply-To: <m1@a.test>" in head
    assert b"report-type=disposition-notification" in head


def test_mdn_goes_to_disposition_notification_to_when_given():
    original = Headers(("alice@a.test",), ("bob@b.test",), (), "x", "<m2@a.test>", None, ("ehr@a.test",), None)
    raw = build_mdn(Disposition.PROCESSED, original=original, final_recipient="bob@b.test",
                    reporting_domain="b.test", at=pki.NOW)
    assert b"To: ehr@a.test\r\n" in raw


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("x\r\nBcc: evil@x.test", "Processed: x Bcc: evil@x.test"),
        ("Überweisung für Bob", "Processed: Überweisung für Bob"),
        ("  spaced\tout  ", "Processed: spaced out"),
        (None, "Processed: (no subject)"),
    ],
    ids=["crlf-injection", "non-ascii", "whitespace", "none"],
)
def test_the_original_subject_becomes_one_ascii_header_line(subject, expected):
    original = Headers(("alice@a.test",), ("bob@b.test",), (), subject, "<m3@a.test>", None)
    raw = build_mdn(Disposition.PROCESSED, original=original, final_recipient="bob@b.test",
                    reporting_domain="b.test", at=pki.NOW)
    assert raw.isascii()
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert not any(line.lower().startswith(b"bcc") for line in head.split(b"\r\n"))
    mdn = parse_mdn(raw)
    assert isinstance(mdn, Mdn) and mdn.subject == expected


@pytest.mark.parametrize(
    ("failure", "reported"),
    [
        ("mailbox unavailable", "mailbox unavailable"),
        ("two\r\nlines", "two lines"),
        ("Empfänger unbekannt", "Empf?nger unbekannt"),
    ],
    ids=["plain", "multi-line", "non-ascii"],
)
def test_failed_carries_the_error_modifier_and_an_ascii_reason(failure, reported):
    raw = build_mdn(Disposition.FAILED, original=ORIGINAL, final_recipient="bob@b.test",
                    reporting_domain="b.test", at=pki.NOW, failure=failure)
    assert raw.isascii(), "RFC 5751 section 3.1.2: 7-bit content before signing"
    mdn = parse_mdn(raw)
    assert isinstance(mdn, Mdn), mdn
    assert mdn.disposition is Disposition.FAILED and mdn.modifiers == ("error",)
    assert mdn.failure == mdn.error == reported


@pytest.mark.parametrize(
    ("original_recipient", "expected"),
    [(None, None), ("Bob@B.test", "bob@b.test")],
    ids=["absent-unless-known", "copied"],
)
def test_original_recipient_is_copied_never_invented(original_recipient, expected):
    raw = build_mdn(Disposition.PROCESSED, original=ORIGINAL, final_recipient="bob@b.test",
                    reporting_domain="b.test", at=pki.NOW, original_recipient=original_recipient)
    mdn = parse_mdn(raw)
    assert isinstance(mdn, Mdn) and mdn.original_recipient == expected
    assert (b"Original-Recipient" in raw) is (original_recipient is not None)


def test_an_original_without_message_id_still_gets_an_mdn():
    original = Headers(("alice@a.test",), ("bob@b.test",), (), "x", None, None)
    raw = build_mdn(Disposition.PROCESSED, original=original, final_recipient="bob@b.test",
                    reporting_domain="b.test", at=pki.NOW)
    mdn = parse_mdn(raw)
    assert isinstance(mdn, Mdn) and mdn.original_message_id is None
    assert b"In-Reply-To" not in raw and b"Original-Message-ID" not in raw


def _report(disposition_field: str | None, report_type: str = "disposition-notification") -> bytes:
    fields = "Final-Recipient: rfc822;bob@b.test\r\nOriginal-Message-ID: <m@a.test>\r\nX-Trace: 7\r\n"
    if disposition_field is not None:
        fields += f"Disposition: {disposition_field}\r\n"
    return (
        f"From: bob@b.test\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type={report_type}; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nhuman\r\n"
        f"--b\r\nContent-Type: message/disposition-notification\r\n\r\n{fields}\r\n--b--\r\n"
    ).encode()


@pytest.mark.parametrize(
    ("field", "disposition", "modes", "modifiers"),
    [
        ("manual-action/MDN-sent-manually; displayed", Disposition.DISPLAYED, ("manual-action", "MDN-sent-manually"), ()),
        ("automatic-action / MDN-sent-automatically ; deleted", Disposition.DELETED,
         ("automatic-action", "MDN-sent-automatically"), ()),
        ("automatic-action/MDN-sent-automatically;denied", Disposition.DENIED,
         ("automatic-action", "MDN-sent-automatically"), ()),
        ("automatic-action/MDN-sent-automatically;failed/error, warning", Disposition.FAILED,
         ("automatic-action", "MDN-sent-automatically"), ("error", "warning")),
        ("automatic-action/MDN-sent-automatically;Processed", Disposition.PROCESSED,
         ("automatic-action", "MDN-sent-automatically"), ()),
        ("automatic-action/MDN-sent-automatically;x-archived", None, ("automatic-action", "MDN-sent-automatically"), ()),
    ],
    ids=["displayed-manual", "deleted-spaced", "denied", "failed-modifiers", "case-insensitive", "unknown-type"],
)
def test_disposition_field_grammar(field, disposition, modes, modifiers):
    """RFC 8098 section 3.2.6: mode "/" mode ";" type ["/" modifier *("," modifier)], with OWS."""
    mdn = parse_mdn(_report(field))
    assert isinstance(mdn, Mdn), mdn
    assert mdn.disposition is disposition
    assert (mdn.action_mode, mdn.sending_mode) == modes
    assert mdn.modifiers == modifiers
    assert mdn.extension_fields == {"X-Trace": "7"}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (_report(None), NotAReportReason.MALFORMED),
        (_report("processed"), NotAReportReason.MALFORMED),
        (_report("automatic-action/MDN-sent-automatically;processed", "delivery-status"), NotAReportReason.NOT_A_REPORT),
        (b"From: a@a.test\r\nContent-Type: text/plain\r\n\r\nhello\r\n", NotAReportReason.NOT_A_REPORT),
        (b"", NotAReportReason.NOT_A_REPORT),
    ],
    ids=["no-disposition", "no-mode", "other-report-type", "plain-message", "empty"],
)
def test_not_an_mdn_is_a_value_with_a_reason(raw, reason):
    result = parse_mdn(raw)
    assert isinstance(result, NotAReport) and result.reason is reason


def test_failed_requires_a_reason():
    with pytest.raises(ValueError, match="says why"):
        build_mdn(Disposition.FAILED, original=ORIGINAL, final_recipient="bob@b.test",
                  reporting_domain="b.test", at=pki.NOW)


@pytest.mark.parametrize(
    ("kind", "answered"),
    [(MessageKind.MESSAGE, True), (MessageKind.MDN, False), (MessageKind.DSN, False)],
    ids=["message", "mdn", "dsn"],
)
def test_never_an_mdn_in_reply_to_an_mdn_or_dsn(kind, answered):
    request = mdn_request(kind, ORIGINAL)
    assert (request is not None) is answered
    if request:
        assert request.reliable and request.notify == ("alice@a.test",)


def test_an_mdn_we_sealed_opens_as_an_mdn_and_asks_for_none():
    a, b = pki.hisp("a.test"), pki.hisp("b.test")
    alice, bob = a.address("alice"), b.address("bob")
    raw = build_mdn(Disposition.PROCESSED, original=ORIGINAL, final_recipient="bob@b.test",
                    reporting_domain="b.test", at=pki.NOW)
    sealed = seal_outbound(raw, bob.pair, [alice.ref], SealOptions(at=pki.NOW))
    opened = open_inbound(sealed.message, [alice.pair], at=pki.NOW)
    assert isinstance(opened, Opened)
    assert opened.kind is MessageKind.MDN
    assert mdn_request(opened.kind, opened.inner) is None
    assert parse_mdn(opened.content.split(b"\r\n\r\n", 1)[1]).disposition is Disposition.PROCESSED


# --------------------------------------------------------------- the reference implementation's samples


@pytest.mark.parametrize(
    ("path", "disposition", "final_delivery"),
    [
        ("agent/MDNMessage.txt", Disposition.PROCESSED, False),
        ("gateway/MDNDispatchedMessage.txt", Disposition.DISPATCHED, True),
    ],
    ids=["processed", "dispatched"],
)
def test_ri_mdn_samples_parse(ri_vectors, path, disposition, final_delivery):
    mdn = parse_mdn((ri_vectors / path).read_bytes())
    assert isinstance(mdn, Mdn), mdn
    assert mdn.disposition is disposition
    assert mdn.final_destination_delivery is final_delivery
    assert mdn.final_recipient == "externuser1@starugh-stateline.com"
    assert mdn.original_message_id == "<9501051053.aa04167@IETF.CNR I.Reston.VA.US>"
    assert mdn.reporting_ua == "starugh-stateline.com;NHIN Direct Security Agent"


def test_ri_dsn_sample_parses(ri_vectors):
    dsn = parse_dsn((ri_vectors / "agent" / "DSNMessage.txt").read_bytes())
    assert isinstance(dsn, Dsn), dsn
    assert dsn.reporting_mta == "dns; Example.ORG"
    assert dsn.original_envelope_id == "QQ314159"
    assert dsn.original_message_id == "<9501051053.aa04167@IETF.CNR I.Reston.VA.US>"
    (carol,) = dsn.recipients
    assert carol.final_recipient == "carol@ivory.edu" and carol.failed and carol.status == "5.0.0"
    assert isinstance(parse_mdn((ri_vectors / "agent" / "DSNMessage.txt").read_bytes()), NotAReport)


def test_ri_reliable_request_is_recognised(ri_vectors):
    from gateway.core.limits import DEFAULT_LIMITS
    from gateway.core.mime import canonical, parse_entity

    raw = (ri_vectors / "gateway" / "PlainUntrustedReliableOutgoingMessage.txt").read_bytes()
    entity = parse_entity(canonical(raw), DEFAULT_LIMITS)
    assert requests_reliable_delivery(entity.get("Disposition-Notification-Options"))
    assert isinstance(parse_mdn(raw), NotAReport)


@settings(max_examples=300, deadline=timedelta(seconds=2))
@given(st.binary(max_size=1500), st.sampled_from(["mdn", "dsn"]))
def test_report_parsers_answer_a_value_for_any_bytes(noise, which):
    raw = SAMPLE[: len(noise) % len(SAMPLE)] + noise
    result = (parse_mdn if which == "mdn" else parse_dsn)(raw)
    assert isinstance(result, Mdn | Dsn | NotAReport)


SAMPLE = build_mdn(
    Disposition.DISPATCHED, original=ORIGINAL, final_recipient="bob@b.test", reporting_domain="b.test", at=pki.NOW
)
