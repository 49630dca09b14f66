"""What a submitted message must be, and what is added before it is queued
(gateway/submit/prepare.py, pure): vectors, and hypothesis on hostile bytes."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.utils import format_datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.limits import DEFAULT_LIMITS, Limits
from gateway.submit import Prepared, Refused, SubmitProblem, address, prepare
from tests.pki import NOW

SENDER = "dr.who@hospital.test"
DOMAIN = "hospital.test"


def _prepare(data: bytes, mail_from: str = SENDER, limits: Limits = DEFAULT_LIMITS):
    return prepare(data, mail_from=mail_from, domain=DOMAIN, at=NOW, limits=limits)


def _fields(payload: bytes) -> list[tuple[str, str]]:
    return [(k, str(v)) for k, v in message_from_bytes(payload, policy=policy.SMTP).items()]


def test_message_id_and_date_are_added_and_bcc_removed():
    data = (b"From: Dr Who <Dr.Who@Hospital.test>\r\nTo: bob@b.test\r\nBcc: secret@c.test,\r\n"
            b" other@d.test\r\nSubject: =?utf-8?q?R=C3=A9f=C3=A9rence?=\r\n\r\nbody\r\n")
    prepared = _prepare(data)
    assert isinstance(prepared, Prepared)
    assert prepared.added == ("Message-ID", "Date") and prepared.bcc_removed == 1
    assert prepared.message_id.startswith("<") and prepared.message_id.endswith("@hospital.test>")
    assert prepared.sender == SENDER and prepared.subject == "Référence" and not prepared.reliable
    fields = dict(_fields(prepared.payload))
    assert "Bcc" not in fields and b"secret@c.test" not in prepared.payload and b"other@d.test" not in prepared.payload
    assert fields["Message-ID"] == prepared.message_id
    assert fields["Date"] == format_datetime(NOW)
    assert prepared.payload.endswith(b"\r\n\r\nbody\r\n")
    # the fields the EHR wrote are kept byte for byte
    assert b"From: Dr Who <Dr.Who@Hospital.test>\r\nTo: bob@b.test\r\nSubject: =?utf-8?q?R=C3=A9f=C3=A9rence?=\r\n" \
        in prepared.payload


def test_an_existing_message_id_and_date_are_kept_and_reliable_delivery_read():
    data = (b"Message-ID: <abc@hospital.test>\r\nDate: Tue, 1 Dec 2026 10:00:00 +0000\r\nFrom: dr.who@hospital.test\r\n"
            b"To: bob@b.test\r\nDisposition-Notification-Options: X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,true\r\n"
            b"\r\nbody\r\n")
    prepared = _prepare(data)
    assert isinstance(prepared, Prepared)
    assert prepared.added == () and prepared.message_id == "<abc@hospital.test>" and prepared.reliable
    assert prepared.payload == data


def test_a_message_of_fields_alone():
    prepared = _prepare(b"From: dr.who@hospital.test\r\nResent-Bcc: x@y.test\r\nTo: bob@b.test\r\n")
    assert isinstance(prepared, Prepared) and prepared.bcc_removed == 1
    assert prepared.payload.endswith(b"From: dr.who@hospital.test\r\nTo: bob@b.test\r\n\r\n")


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"To: bob@b.test\r\n\r\nbody\r\n", SubmitProblem.NO_FROM),
        (b"From: dr.who@hospital.test\r\nFrom: dr.who@hospital.test\r\n\r\n", SubmitProblem.SEVERAL_FROM),
        (b"From: dr.who@hospital.test, nurse@hospital.test\r\n\r\n", SubmitProblem.SEVERAL_FROM),
        (b"From: nurse@hospital.test\r\n\r\n", SubmitProblem.FROM_NOT_SENDER),
        (b"From: =?utf-8?q?dr.who@hospital.test?= <mallory@evil.test>\r\n\r\n", SubmitProblem.FROM_UNREADABLE),
        (b"From: dr.who@hospital.test\r\nMessage-ID: not-an-id\r\n\r\n", SubmitProblem.MESSAGE_ID_MALFORMED),
        (b"From: dr.who@hospital.test\r\nMessage-ID: <a@b>\r\nMessage-ID: <c@d>\r\n\r\n",
         SubmitProblem.MESSAGE_ID_MALFORMED),
        (b"From dr.who@hospital.test\r\n\r\n", SubmitProblem.HEADER_UNREADABLE),
        (b" continued\r\nFrom: dr.who@hospital.test\r\n\r\n", SubmitProblem.HEADER_UNREADABLE),
        (b"From: dr.who@hospital.test\r\nX: y\rz\r\n\r\n", SubmitProblem.HEADER_UNREADABLE),
        (b"\r\nbody only\r\n", SubmitProblem.NO_FROM),
    ],
    ids=["no-from", "two-from-fields", "two-mailboxes", "from-not-sender", "encoded-word-address",
         "message-id-malformed", "two-message-ids", "no-colon", "starts-continued", "bare-cr", "no-header"],
)
def test_refused(data, problem):
    refused = _prepare(data)
    assert isinstance(refused, Refused) and refused.problem is problem


def test_a_header_section_over_the_limit():
    data = b"From: dr.who@hospital.test\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\nbody\r\n"
    refused = _prepare(data, limits=Limits(max_header_bytes=1024))
    assert isinstance(refused, Refused) and refused.problem is SubmitProblem.HEADER_TOO_LARGE


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("bob@b.test", "bob@b.test"),
        ("Bob@B.Test", "bob@b.test"),
        ('"bob smith"@b.test', '"bob smith"@b.test'),
        ("bob", None),
        ("bob@localhost", None),
        ("bob@[192.0.2.1]", None),
        ("bob(comment)@b.test", None),
        ("Bob <bob@b.test>", None),
        ("a@b.test, c@d.test", None),
        ("a@b@c.test", None),
        ("", None),
        ("x" * 250 + "@b.test", None),
    ],
)
def test_direct_addresses(text, expected):
    assert address(text) == expected


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_hostile_bytes_give_a_typed_answer(data):
    result = _prepare(b"From: dr.who@hospital.test\r\n" + data)
    assert isinstance(result, Prepared | Refused)
    if isinstance(result, Prepared):
        assert b"\nbcc:" not in result.payload.lower().split(b"\r\n\r\n", 1)[0]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([b"From: dr.who@hospital.test", b"Bcc: x@y.test\r\n hidden@z.test",
                                 b"bcc: hidden@z.test", b"To: a@b.test\r\n shown@z.test", b"Subject: hi", b"",
                                 b"body"]), max_size=12))
def test_no_bcc_survives_any_arrangement(lines):
    result = _prepare(b"\r\n".join(lines) + b"\r\n")
    if isinstance(result, Prepared):
        head = result.payload.split(b"\r\n\r\n", 1)[0]
        assert b"x@y.test" not in head and b"hidden@z.test" not in head
