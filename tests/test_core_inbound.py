"""open_inbound as a specification: each kind of message in, the typed result out."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from gateway.core import (
    ContentCipher,
    Digest,
    Envelope,
    KeyTransport,
    Limits,
    Observation,
    Opened,
    Rejected,
    RejectReason,
    SealOptions,
    SignatureForm,
    inspect_signature,
    open_inbound,
    seal_outbound,
)
from gateway.core.certs import KeyPair, load_certificates, load_private_key

from . import messages, pki, smime


@dataclass
class World:
    a: pki.Hisp
    b: pki.Hisp
    alice: pki.Issued
    bob: pki.Issued


@pytest.fixture(scope="module")
def w():
    a, b = pki.hisp("a.test"), pki.hisp("b.test")
    return World(a, b, a.address("alice"), b.address("bob"))


# After decryption, failures keep their specific reasons only for content whose
# GCM tag verified; CBC content gets the one opaque DECRYPTION_FAILED
# (tests/test_decryption_oracle.py). These tests encrypt with GCM to see the reasons.
GCM = ContentCipher.AES256_GCM


def signed_wrapped(w, **kw):
    return smime.detached(smime.wrap(messages.plain()), w.alice.pair, **kw)


# ------------------------------------------------------------------ rejections

REJECTIONS = {
    "plain-text": (lambda w: messages.plain(), RejectReason.NOT_ENCRYPTED),
    "signed-only": (lambda w: smime.HEADERS + signed_wrapped(w), RejectReason.NOT_ENCRYPTED),
    "encrypted-not-signed": (
        lambda w: smime.envelope(smime.wrap(messages.plain()), [w.bob.ref], GCM),
        RejectReason.NOT_SIGNED,
    ),
    "not-for-us": (
        lambda w: smime.envelope(signed_wrapped(w), [w.b.address("carol").ref]),
        RejectReason.NO_KEY_FOR_RECIPIENT,
    ),
    "garbage-base64": (
        lambda w: smime.HEADERS
        + b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n"
        + b"Content-Transfer-Encoding: base64\r\n\r\nbm90IGEgQ01TIGJsb2I=\r\n",
        RejectReason.MALFORMED,
    ),
    "signature-part-missing": (
        lambda w: smime.envelope(
            b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; boundary="x"\r\n\r\n'
            b"--x\r\nContent-Type: text/plain\r\n\r\nhi\r\n--x--\r\n",
            [w.bob.ref],
            GCM,
        ),
        RejectReason.MALFORMED,
    ),
    "content-changed-after-signing": (
        lambda w: smime.envelope(signed_wrapped(w).replace(b"Please see", b"Please seE"), [w.bob.ref], GCM),
        RejectReason.DIGEST_MISMATCH,
    ),
}


@pytest.mark.parametrize(("make", "reason"), list(REJECTIONS.values()), ids=list(REJECTIONS))
def test_rejections_are_typed(w, make, reason):
    result = open_inbound(make(w), [w.bob.pair, w.b.org.pair], at=pki.NOW)
    assert isinstance(result, Rejected), result
    assert result.reason is reason, result
    assert result.detail and result.permanent


def test_signature_changed_is_signature_invalid(w):
    entity = signed_wrapped(w)
    head, sig_b64 = entity.rsplit(b"Content-Transfer-Encoding: base64\r\n\r\n", 1)
    der = bytearray(base64.b64decode(sig_b64.split(b"--sig")[0]))
    der[-5] ^= 0x01  # inside the RSA signature value, the last field
    forged = head + b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(bytes(der)).replace(
        b"\n", b"\r\n"
    ) + b"--" + sig_b64.split(b"--", 1)[1]
    result = open_inbound(smime.envelope(forged, [w.bob.ref], GCM), [w.bob.pair], at=pki.NOW)
    assert isinstance(result, Rejected) and result.reason is RejectReason.SIGNATURE_INVALID
    assert result.certificate == w.alice.ref


def test_wrong_key_with_matching_certificate_is_decryption_failed(w):
    impostor = KeyPair(pki.new_key(), w.bob.ref) if False else None
    assert impostor is None
    # Same issuer and serial as Bob's certificate, different key: a rollover gone wrong.
    twin = pki.issue("bob@b.test", issuer=w.b.intermediate, email="bob@b.test", serial=w.bob.cert.serial_number)
    message = smime.envelope(signed_wrapped(w), [w.bob.ref])
    result = open_inbound(message, [twin.pair], at=pki.NOW)
    assert isinstance(result, Rejected) and result.reason is RejectReason.DECRYPTION_FAILED
    assert result.certificate == twin.ref


def test_signer_certificate_not_included_is_named(w):
    from asn1crypto import cms as acms

    entity = signed_wrapped(w)
    head, rest = entity.split(b"Content-Transfer-Encoding: base64\r\n\r\n", 1)
    b64, tail = rest.split(b"--sig", 1)
    info = acms.ContentInfo.load(base64.b64decode(b64))
    info["content"]["certificates"] = []
    stripped = head + b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(info.dump(force=True)).replace(
        b"\n", b"\r\n"
    ) + b"--sig" + tail
    result = open_inbound(smime.envelope(stripped, [w.bob.ref], GCM), [w.bob.pair], at=pki.NOW)
    assert isinstance(result, Rejected) and result.reason is RejectReason.SIGNER_NOT_FOUND


def test_unsupported_content_cipher_is_named(w):
    from asn1crypto import cms as acms

    from gateway.core import cms

    der = cms.encrypt(signed_wrapped(w), [w.bob.ref], ContentCipher.AES128_CBC, KeyTransport.RSA_PKCS1V15)
    info = acms.ContentInfo.load(der)
    info["content"]["encrypted_content_info"]["content_encryption_algorithm"]["algorithm"] = "aes128_ofb"
    result = open_inbound(smime.pkcs7_message(info.dump(force=True)), [w.bob.pair], at=pki.NOW)
    assert isinstance(result, Rejected) and result.reason is RejectReason.UNSUPPORTED_ALGORITHM
    assert "aes128_ofb" in result.detail


def test_too_large_by_named_limit(w):
    sealed = seal_outbound(messages.plain(), w.alice.pair, [w.bob.ref], SealOptions(at=pki.NOW))
    result = open_inbound(sealed.message, [w.bob.pair], Limits(max_message_bytes=1000), at=pki.NOW)
    assert isinstance(result, Rejected) and result.reason is RejectReason.TOO_LARGE


def test_too_deep_by_named_limit(w):
    inner = b"Content-Type: text/plain\r\n\r\nleaf\r\n"
    for i in range(30):
        inner = (
            f'Content-Type: multipart/mixed; boundary="n{i}"\r\n\r\n--n{i}\r\n'.encode() + inner + f"\r\n--n{i}--\r\n".encode()
        )
    msg = smime.envelope(smime.detached(smime.wrap(b"From: alice@a.test\r\nMIME-Version: 1.0\r\n" + inner), w.alice.pair), [w.bob.ref])
    result = open_inbound(msg, [w.bob.pair], Limits(max_mime_depth=16), at=pki.NOW)
    assert isinstance(result, Rejected) and result.reason is RejectReason.TOO_DEEP
    assert isinstance(open_inbound(msg, [w.bob.pair], Limits(max_mime_depth=40), at=pki.NOW), Opened)


def test_too_many_parts_by_named_limit(w):
    parts = b"".join(b"--p\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(20))
    body = b'From: alice@a.test\r\nContent-Type: multipart/mixed; boundary="p"\r\n\r\n' + parts + b"--p--\r\n"
    msg = smime.envelope(smime.detached(smime.wrap(body), w.alice.pair), [w.bob.ref])
    result = open_inbound(msg, [w.bob.pair], Limits(max_mime_parts=10), at=pki.NOW)
    assert isinstance(result, Rejected) and result.reason is RejectReason.TOO_LARGE


# ------------------------------------------------------------------ accepted shapes


def test_opaque_signed_data_is_accepted(w):
    msg = smime.envelope(smime.opaque(smime.wrap(messages.plain()), w.alice.pair), [w.bob.ref])
    opened = open_inbound(msg, [w.bob.pair], at=pki.NOW)
    assert isinstance(opened, Opened), opened
    assert opened.signature.form is SignatureForm.OPAQUE
    assert opened.inner.from_ == ("alice@a.test",)


def test_unwrapped_message_is_accepted_and_noted(w):
    entity = b"Content-Type: text/plain\r\n\r\nnot wrapped\r\n"
    opened = open_inbound(smime.envelope(smime.detached(entity, w.alice.pair), [w.bob.ref]), [w.bob.pair], at=pki.NOW)
    assert isinstance(opened, Opened), opened
    assert not opened.wrapped and opened.has(Observation.NOT_WRAPPED)
    assert opened.inner == opened.outer


def test_our_key_is_chosen_among_several_for_rollover(w):
    old = w.b.address("bob")  # last year's certificate, still on the ring
    msg = smime.envelope(signed_wrapped(w), [old.ref])
    opened = open_inbound(msg, [w.b.org.pair, w.bob.pair, old.pair], at=pki.NOW)
    assert isinstance(opened, Opened) and opened.encryption.recipient == old.ref


@pytest.mark.parametrize(
    ("digest", "cipher", "observations"),
    [
        (Digest.SHA1, ContentCipher.AES128_CBC, {Observation.SHA1_DIGEST}),
        (Digest.SHA256, ContentCipher.DES_EDE3_CBC, {Observation.WEAK_CIPHER}),
        (Digest.SHA256, ContentCipher.AES256_CBC, set()),
    ],
    ids=["sha1-reported", "3des-reported", "clean"],
)
def test_weak_algorithms_are_reported_for_policy(w, digest, cipher, observations):
    from gateway.core import cms

    entity = signed_wrapped(w, digest=digest)
    if cipher.weak:  # our sealer refuses 3DES; build it the way an old peer would
        der = _encrypt_3des(entity, w.bob)
    else:
        der = cms.encrypt(entity, [w.bob.ref], cipher, KeyTransport.RSA_PKCS1V15)
    opened = open_inbound(smime.pkcs7_message(der), [w.bob.pair], at=pki.NOW)
    assert isinstance(opened, Opened), opened
    assert {f.observation for f in opened.findings} == observations


def _encrypt_3des(content: bytes, recipient) -> bytes:
    import subprocess
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        Path(d, "c").write_bytes(content)
        Path(d, "r.pem").write_bytes(recipient.pem)
        return subprocess.run(
            ["openssl", "cms", "-encrypt", "-binary", "-des3", "-outform", "DER", "-in", f"{d}/c", f"{d}/r.pem"],
            check=True,
            capture_output=True,
        ).stdout


@pytest.mark.parametrize(
    ("at", "observation"),
    [
        (pki.NOW + timedelta(days=400), Observation.SIGNER_EXPIRED),
        (pki.NOW - timedelta(days=400), Observation.SIGNER_NOT_YET_VALID),
    ],
    ids=["expired", "not-yet-valid"],
)
def test_signer_validity_at_the_given_time_is_reported(w, at, observation):
    sealed = seal_outbound(messages.plain(), w.alice.pair, [w.bob.ref], SealOptions(at=pki.NOW))
    opened = open_inbound(sealed.message, [w.bob.pair], at=at)
    assert isinstance(opened, Opened) and opened.has(observation)


def test_short_signer_key_is_reported(w):
    weak = pki.address_leaf(w.a.intermediate, "alice@a.test", key_size=1024)
    msg = smime.envelope(smime.detached(smime.wrap(messages.plain()), weak.pair), [w.bob.ref])
    opened = open_inbound(msg, [w.bob.pair], at=pki.NOW)
    assert isinstance(opened, Opened) and opened.has(Observation.SHORT_RSA_KEY)


@pytest.mark.parametrize(
    ("envelope", "mismatch"),
    [
        (Envelope("alice@a.test", ("bob@b.test",)), False),
        (Envelope("mallory@evil.test", ("bob@b.test",)), True),
        (Envelope("alice@a.test", ("bob@b.test", "eve@b.test")), True),
        (None, False),
    ],
    ids=["envelope-agrees", "mail-from-differs", "extra-rcpt", "no-envelope"],
)
def test_envelope_against_inner_headers_is_reported_as_data(w, envelope, mismatch):
    sealed = seal_outbound(messages.plain(), w.alice.pair, [w.bob.ref], SealOptions(at=pki.NOW))
    opened = open_inbound(sealed.message, [w.bob.pair], at=pki.NOW, envelope=envelope)
    assert isinstance(opened, Opened)
    assert opened.has(Observation.HEADER_MISMATCH) is mismatch


def test_outer_from_differing_from_inner_is_reported(w):
    entity = smime.detached(smime.wrap(messages.plain(sender="alice@a.test")), w.alice.pair)
    headers = b"From: mallory@evil.test\r\nTo: bob@b.test\r\nMIME-Version: 1.0\r\n"
    opened = open_inbound(smime.envelope(entity, [w.bob.ref], headers=headers), [w.bob.pair], at=pki.NOW)
    assert opened.has(Observation.HEADER_MISMATCH)


def test_signed_only_accepted_for_diagnosis(w):
    opened = open_inbound(smime.HEADERS + signed_wrapped(w), [], at=pki.NOW, require_encryption=False)
    assert isinstance(opened, Opened) and opened.encryption is None
    assert opened.has(Observation.NOT_ENCRYPTED)


def test_time_must_be_given_and_aware(w):
    with pytest.raises(ValueError):
        open_inbound(b"", [], at=None)
    with pytest.raises(ValueError):
        open_inbound(b"", [], at=datetime(2026, 1, 1))


# ------------------------------------------------------------------ the reference implementation's vectors


@pytest.fixture
def ryan(ri_vectors):
    agent = ri_vectors / "agent"
    return KeyPair(
        load_private_key((agent / "ryanKey.der").read_bytes()),
        load_certificates((agent / "ryan.der").read_bytes())[0],
    )


def test_ri_encrypted_message_opens_and_verifies(ri_vectors, ryan):
    raw = (ri_vectors / "agent" / "EncryptedMessage2.txt").read_bytes()
    gm2552 = load_certificates((ri_vectors / "agent" / "gm2552.der").read_bytes())[0]
    opened = open_inbound(raw, [ryan], at=gm2552.not_before + timedelta(days=1))
    assert isinstance(opened, Opened), opened
    assert opened.encryption.cipher is ContentCipher.AES128_CBC
    assert opened.encryption.key_transport is KeyTransport.RSA_PKCS1V15
    assert opened.signature.digest is Digest.SHA256
    assert opened.signature.signer == gm2552
    assert opened.wrapped and opened.inner.from_ == ("gm2552@securehealthemail.com",)
    assert opened.inner.to == ("ryan@securehealthemail.com",)
    assert opened.findings == ()
    assert [p.content_type for p in opened.parts] == ["text/plain", "image/png"]


def test_ri_message_is_not_for_another_key(ri_vectors, w):
    raw = (ri_vectors / "agent" / "EncryptedMessage2.txt").read_bytes()
    result = open_inbound(raw, [w.bob.pair], at=pki.NOW)
    assert isinstance(result, Rejected) and result.reason is RejectReason.NO_KEY_FOR_RECIPIENT


def test_ri_sha1_1024_bit_expired_signature_is_reported(ri_vectors):
    report = inspect_signature(
        (ri_vectors / "agent" / "msgSig.txt").read_bytes(), datetime(2026, 11, 28, tzinfo=UTC)
    )
    assert not isinstance(report, Rejected), report
    assert report.signature.digest is Digest.SHA1
    assert report.signature.signer.key_bits == 1024
    assert "kristietestdomain.com" in report.signature.signer.subject
    assert not report.content_checked
    assert {f.observation for f in report.findings} == {
        Observation.SHA1_DIGEST,
        Observation.SHORT_RSA_KEY,
        Observation.SIGNER_EXPIRED,
    }


@pytest.mark.parametrize(
    ("offset_of", "patch"),
    [
        (lambda der: 12, lambda der, i: der[:i] + b"\x03" + der[i + 1 :]),  # version INTEGER 3 (v4)
        (
            lambda der: der.index(b"\x04\x02\x30\x00") + 2,  # a leaf's basicConstraints SEQUENCE made a SET
            lambda der, i: der[:i] + b"\x31" + der[i + 1 :],
        ),
    ],
    ids=["x509-version-4", "extension-not-parseable"],
)
def test_a_signer_certificate_that_does_not_parse_is_malformed(w, offset_of, patch):
    from asn1crypto import cms as acms

    entity = signed_wrapped(w)
    head, rest = entity.split(b"Content-Transfer-Encoding: base64\r\n\r\n", 1)
    b64, tail = rest.split(b"--sig", 1)
    info = acms.ContentInfo.load(base64.b64decode(b64))
    signer_der = w.alice.der
    broken = patch(signer_der, offset_of(signer_der))
    raw = info.dump().replace(signer_der, broken)
    forged = head + b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(raw).replace(b"\n", b"\r\n")
    result = open_inbound(smime.envelope(forged + b"--sig" + tail, [w.bob.ref], GCM), [w.bob.pair], at=pki.NOW)
    assert isinstance(result, Rejected), result
    assert result.reason in (RejectReason.MALFORMED, RejectReason.SIGNER_NOT_FOUND)
