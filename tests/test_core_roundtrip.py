"""Our sealed output, opened by our own inbound: every cipher and key transport, two recipients."""

from __future__ import annotations

import hashlib
import itertools

import pytest

from gateway.core import (
    ContentCipher,
    Digest,
    KeyTransport,
    MessageKind,
    Observation,
    Opened,
    PartKind,
    Rejected,
    RejectReason,
    SealOptions,
    SignatureForm,
    cms,
    open_inbound,
    seal_outbound,
)
from gateway.core.limits import DEFAULT_LIMITS
from gateway.core.mime import parse_entity

from . import messages, pki

SEND_CIPHERS = [c for c in ContentCipher if not c.weak]


@pytest.fixture(scope="module")
def a():
    return pki.hisp("a.test")


@pytest.fixture(scope="module")
def b():
    return pki.hisp("b.test")


@pytest.fixture(scope="module")
def alice(a):
    return a.address("alice")


@pytest.fixture(scope="module")
def bob(b):
    return b.address("bob")


@pytest.mark.parametrize(
    ("cipher", "transport"),
    list(itertools.product(SEND_CIPHERS, KeyTransport)),
    ids=lambda v: v.value,
)
def test_each_of_two_recipients_opens_what_we_sealed(a, b, alice, bob, cipher, transport):
    carol = b.address("carol")
    msg = messages.with_attachment(recipients=("bob@b.test", "carol@b.test"))
    sealed = seal_outbound(
        msg, alice.pair, [bob.ref, carol.ref], SealOptions(at=pki.NOW, cipher=cipher, key_transport=transport)
    )
    assert not isinstance(sealed, Rejected), sealed
    for reader in (bob, carol):
        opened = open_inbound(sealed.message, [reader.pair], at=pki.NOW)
        assert isinstance(opened, Opened), opened
        assert opened.encryption.cipher is cipher
        assert opened.encryption.key_transport is transport
        assert opened.encryption.recipient == reader.ref
        assert opened.encryption.recipient_count == 2
        assert opened.signature.signer == alice.ref
        assert opened.signature.form is SignatureForm.DETACHED
        assert opened.signature.digest is Digest.SHA256
        assert opened.wrapped
        assert opened.inner.from_ == ("alice@a.test",)
        assert opened.inner.subject == "Summary of care"
        assert opened.inner.message_id == sealed.message_id
        assert opened.findings == ()
        ccda = [p for p in opened.parts if p.kind is PartKind.CCDA]
        assert len(ccda) == 1 and ccda[0].data == messages.CCDA
        assert ccda[0].sha256 == hashlib.sha256(messages.CCDA).hexdigest()


@pytest.mark.parametrize("digest", [Digest.SHA256, Digest.SHA384, Digest.SHA512], ids=lambda d: d.value)
def test_digest_is_selectable_and_named_in_micalg(alice, bob, digest):
    sealed = seal_outbound(messages.plain(), alice.pair, [bob.ref], SealOptions(at=pki.NOW, digest=digest))
    opened = open_inbound(sealed.message, [bob.pair], at=pki.NOW)
    assert opened.signature.digest is digest
    assert f"micalg={digest.micalg};".encode() in decrypted_layer(sealed.message, bob)


def decrypted_layer(message: bytes, reader) -> bytes:
    """The multipart/signed entity inside the envelope (its header carries micalg)."""
    entity = parse_entity(message, DEFAULT_LIMITS)
    return bytes(cms.decrypt(entity.decoded_body(), [reader.pair], DEFAULT_LIMITS).content)


def test_outer_message_hides_subject_and_drops_bcc(alice, bob):
    msg = messages.plain(subject="Patient HIV result", extra_headers=(("Bcc", "spy@c.test"),))
    sealed = seal_outbound(msg, alice.pair, [bob.ref], SealOptions(at=pki.NOW))
    head = sealed.message.split(b"\r\n\r\n", 1)[0]
    assert b"Subject" not in head and b"HIV" not in head
    assert b"Bcc" not in sealed.message
    assert b"smime-type=enveloped-data" in head
    assert head.isascii()
    opened = open_inbound(sealed.message, [bob.pair], at=pki.NOW)
    assert opened.inner.subject == "Patient HIV result"
    assert b"spy@c.test" not in opened.content


def test_subject_exposed_when_configured(alice, bob):
    sealed = seal_outbound(messages.plain(), alice.pair, [bob.ref], SealOptions(at=pki.NOW, expose_subject=True))
    assert b"Subject: Referral" in sealed.message.split(b"\r\n\r\n", 1)[0]


def test_every_sealed_message_gets_a_unique_message_id(alice, bob):
    ids = {
        seal_outbound(messages.plain(), alice.pair, [bob.ref], SealOptions(at=pki.NOW)).message_id
        for _ in range(5)
    }
    assert len(ids) == 5 and all(i.endswith("@a.test>") for i in ids)


def test_submitted_message_id_is_kept(alice, bob):
    msg = messages.plain(extra_headers=(("Message-ID", "<ehr-123@a.test>"),))
    sealed = seal_outbound(msg, alice.pair, [bob.ref], SealOptions(at=pki.NOW))
    assert sealed.message_id == "<ehr-123@a.test>"


def test_gcm_travels_as_auth_enveloped_data(alice, bob):
    sealed = seal_outbound(
        messages.plain(), alice.pair, [bob.ref], SealOptions(at=pki.NOW, cipher=ContentCipher.AES128_GCM)
    )
    assert b"smime-type=authEnveloped-data" in sealed.message


def test_intermediates_travel_with_the_signature(a, alice, bob):
    sealed = seal_outbound(
        messages.plain(), alice.pair, [bob.ref], SealOptions(at=pki.NOW, chain=(a.intermediate.ref,))
    )
    opened = open_inbound(sealed.message, [bob.pair], at=pki.NOW)
    assert opened.signature.certificates == (a.intermediate.ref,)


def test_bare_lf_submission_is_canonicalised(alice, bob):
    msg = messages.plain().replace(b"\r\n", b"\n")
    sealed = seal_outbound(msg, alice.pair, [bob.ref], SealOptions(at=pki.NOW))
    assert isinstance(open_inbound(sealed.message, [bob.pair], at=pki.NOW), Opened)
    as_file = sealed.message.replace(b"\r\n", b"\n")
    assert isinstance(open_inbound(as_file, [bob.pair], at=pki.NOW), Opened)


@pytest.mark.parametrize(
    ("make_recipients", "reason"),
    [
        (lambda b, bob: [], RejectReason.NO_RECIPIENT_CERTIFICATE),
        (
            lambda b, bob: [pki.address_leaf(b.intermediate, "sig@b.test", key_encipherment=False).ref],
            RejectReason.UNSUITABLE_KEY,
        ),
        (
            lambda b, bob: [pki.address_leaf(b.intermediate, "ec@b.test", key_kind="ec", key_size=256).ref],
            RejectReason.UNSUITABLE_KEY,
        ),
    ],
    ids=["no-certificate", "signing-only-certificate", "ec-certificate"],
)
def test_seal_refuses_what_cannot_be_sent(alice, b, bob, make_recipients, reason):
    result = seal_outbound(messages.plain(), alice.pair, make_recipients(b, bob), SealOptions(at=pki.NOW))
    assert isinstance(result, Rejected) and result.reason is reason


def test_seal_refuses_a_sender_certificate_without_digital_signature(a, bob):
    enc_only = pki.address_leaf(a.intermediate, "alice@a.test", digital_signature=False)
    result = seal_outbound(messages.plain(), enc_only.pair, [bob.ref], SealOptions(at=pki.NOW))
    assert isinstance(result, Rejected) and result.reason is RejectReason.UNSUITABLE_KEY


def test_ec_signer_p256_and_p384(a, bob):
    for size in (256, 384):
        signer = pki.address_leaf(a.intermediate, "alice@a.test", key_kind="ec", key_size=size)
        sealed = seal_outbound(messages.plain(), signer.pair, [bob.ref], SealOptions(at=pki.NOW))
        opened = open_inbound(sealed.message, [bob.pair], at=pki.NOW)
        assert isinstance(opened, Opened), opened
        assert opened.signature.scheme.value == "ecdsa"


@pytest.mark.parametrize("weak", [Digest.SHA1, ContentCipher.DES_EDE3_CBC], ids=["sha1", "3des"])
def test_never_sends_sha1_or_3des(weak):
    kw = {"digest": weak} if isinstance(weak, Digest) else {"cipher": weak}
    with pytest.raises(ValueError):
        SealOptions(at=pki.NOW, **kw)


def test_mdn_kind_is_recognised_so_we_never_answer_it(alice, bob):
    report = (
        b"From: alice@a.test\r\nTo: bob@b.test\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=disposition-notification; boundary="r"\r\n\r\n'
        b"--r\r\nContent-Type: text/plain\r\n\r\nprocessed\r\n"
        b"--r\r\nContent-Type: message/disposition-notification\r\n\r\n"
        b"Disposition: automatic-action/MDN-sent-automatically;processed\r\n"
        b"--r--\r\n"
    )
    sealed = seal_outbound(report, alice.pair, [bob.ref], SealOptions(at=pki.NOW))
    opened = open_inbound(sealed.message, [bob.pair], at=pki.NOW)
    assert opened.kind is MessageKind.MDN
    assert not opened.has(Observation.NOT_WRAPPED)


def test_outer_headers_are_ascii_even_for_non_ascii_names(alice, bob):
    msg = "From: José Müller <alice@a.test>\r\nTo: bob@b.test\r\nSubject: Überweisung\r\n\r\nHallo\r\n".encode()
    sealed = seal_outbound(msg, alice.pair, [bob.ref], SealOptions(at=pki.NOW, expose_subject=True))
    head = sealed.message.split(b"\r\n\r\n", 1)[0]
    assert head.isascii() and b"=?utf-8?" in head
    opened = open_inbound(sealed.message, [bob.pair], at=pki.NOW)
    assert opened.inner.subject == "Überweisung"
    assert opened.outer.from_ == ("alice@a.test",)
