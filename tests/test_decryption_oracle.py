"""Decryption gives one opaque outcome (issue 7 section 2; RFC 3218 section 2.3).

CBC content is not authenticated: an attacker who holds one of our sealed
messages can change its ciphertext and watch what ``open_inbound`` answers.
If a bad padding, content that does not parse as MIME, content that is not
signed and a digest that does not match answered differently, each answer
would leak something about the plaintext (a padding oracle, and its MIME
cousins). So after one of our keys was tried, every failure up to a verified
signature is the same rejection: reason, detail and certificate.

The garbage here is real: our own sealed message with ciphertext bytes
changed, and chosen plaintexts encrypted with a real AES key to Bob, so the
padding is valid and only what follows decryption can fail.
"""

from __future__ import annotations

import pytest

from gateway.core import (
    ContentCipher,
    Digest,
    KeyTransport,
    Limits,
    Opened,
    Rejected,
    RejectReason,
    SealOptions,
    cms,
    open_inbound,
    seal_outbound,
)
from gateway.core.outcomes import decryption_failed

from . import messages, pki, smime


@pytest.fixture(scope="module")
def w():
    a, b = pki.hisp("a.test"), pki.hisp("b.test")
    return a.address("alice"), b.address("bob"), a.address("mallory")


def _sealed_der(alice, bob) -> bytes:
    import base64

    sealed = seal_outbound(messages.plain(), alice.pair, [bob.ref], SealOptions(at=pki.NOW))
    assert not isinstance(sealed, Rejected)
    return base64.b64decode(sealed.message.split(b"\r\n\r\n", 1)[1])


def _flip(der: bytes, offset: int, mask: int = 0x01) -> bytes:
    out = bytearray(der)
    out[offset] ^= mask
    return bytes(out)


AES256_CBC_IV = bytes.fromhex("060960864801650304012a0410")  # the OID aes256-CBC, then OCTET STRING (16)


def _iv_offset(der: bytes) -> int:
    """The IV's first byte: changing it changes the first plaintext block, "Content-Type"."""
    return der.index(AES256_CBC_IV) + len(AES256_CBC_IV)


def _bad_padding(w) -> bytes:
    """The last byte of the next-to-last ciphertext block decides the padding length:
    a pad value over 16 is bad padding, whatever the key."""
    alice, bob, _ = w
    return _flip(_sealed_der(alice, bob), -17, 0x80)


def _chosen(content: bytes, bob) -> bytes:
    return cms.encrypt(content, [bob.ref], ContentCipher.AES256_CBC, KeyTransport.RSA_PKCS1V15)


SIGNED_HEAD = b"From: alice@a.test\r\nTo: bob@b.test\r\n\r\nhi\r\n"

# name: der of an enveloped-data to Bob, built from the world (alice, bob, mallory)
TAMPERED = {
    "bad-padding": _bad_padding,
    "first-block-flipped": lambda w: _flip(_sealed_der(w[0], w[1]), -200),
    "middle-block-flipped": lambda w: _flip(_sealed_der(w[0], w[1]), -1000, 0x40),
    "iv-flipped": lambda w: _flip(_sealed_der(w[0], w[1]), _iv_offset(_sealed_der(w[0], w[1]))),
    "not-mime": lambda w: _chosen(bytes(range(256)) * 3, w[1]),
    "empty": lambda w: _chosen(b"", w[1]),
    "not-signed": lambda w: _chosen(smime.wrap(messages.plain()), w[1]),
    "truncated-mime": lambda w: _chosen(smime.detached(smime.wrap(messages.plain()), w[0].pair)[:300], w[1]),
    "header-section-too-large": lambda w: _chosen(b"X: " + b"a" * 200_000 + b"\r\n\r\n", w[1]),
    "header-line-without-a-name": lambda w: _chosen(b"no colon here\r\n\r\nbody", w[1]),
    "broken-cms-signature-part": lambda w: _chosen(
        smime.detached(smime.wrap(messages.plain()), w[0].pair).replace(b"MII", b"MIJ", 1), w[1]
    ),
    "broken-opaque-signed-data": lambda w: _chosen(
        b"Content-Type: application/pkcs7-mime; smime-type=signed-data\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nMIIBAAYJKoZIhvcNAQcCoA==\r\n",
        w[1],
    ),
    "digest-mismatch": lambda w: _chosen(
        smime.detached(smime.wrap(messages.plain()), w[0].pair).replace(b"Please see", b"Please seE"), w[1]
    ),
    "signature-invalid": lambda w: _chosen(_forged_signature(w[0]), w[1]),
    "second-envelope-inside": lambda w: _chosen(
        smime.envelope(smime.detached(smime.wrap(messages.plain()), w[0].pair), [w[1].ref]), w[1]
    ),
}


def _forged_signature(alice) -> bytes:
    """A detached signature whose signature value was changed: SIGNATURE_INVALID when authentic."""
    import base64

    content = smime.wrap(messages.plain())
    der = bytearray(cms.sign(content, alice.pair, Digest.SHA256, pki.NOW))
    der[-5] ^= 0x01
    return (
        b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; boundary="s"\r\n\r\n'
        b"--s\r\n" + content + b"\r\n--s\r\nContent-Type: application/pkcs7-signature\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(bytes(der)).replace(b"\n", b"\r\n") + b"--s--\r\n"
    )


@pytest.fixture(scope="module")
def outcomes(w):
    _, bob, _ = w
    return {
        name: open_inbound(smime.pkcs7_message(make(w)), [bob.pair], Limits(), at=pki.NOW)
        for name, make in TAMPERED.items()
    }


@pytest.mark.parametrize("name", list(TAMPERED))
def test_every_failure_after_decryption_is_the_bad_padding_outcome(w, outcomes, name):
    _, bob, _ = w
    result = outcomes[name]
    assert isinstance(result, Rejected), result
    assert result == outcomes["bad-padding"]
    assert (result.reason, result.detail, result.certificate) == (
        RejectReason.DECRYPTION_FAILED,
        decryption_failed(bob.ref).detail,
        bob.ref,
    )
    assert str(result) == str(outcomes["bad-padding"])


def test_the_untouched_message_still_opens(w):
    alice, bob, _ = w
    opened = open_inbound(smime.pkcs7_message(_sealed_der(alice, bob)), [bob.pair], at=pki.NOW)
    assert isinstance(opened, Opened), opened


# Under AES-GCM the tag was verified (RFC 5084): the content is exactly what its
# encryptor wrote, so what is wrong with it may be said, and a changed ciphertext
# gets only the tag failure.
GCM_REASONS = {
    "not-signed": (lambda w: smime.wrap(messages.plain()), RejectReason.NOT_SIGNED),
    "header-line-without-a-name": (lambda w: b"no colon here\r\n\r\nbody", RejectReason.MALFORMED),
    "second-envelope-inside": (
        lambda w: smime.envelope(smime.detached(smime.wrap(messages.plain()), w[0].pair), [w[1].ref]),
        RejectReason.NESTED_LAYER,
    ),
}


@pytest.mark.parametrize(("make", "reason"), list(GCM_REASONS.values()), ids=list(GCM_REASONS))
def test_authenticated_content_keeps_its_specific_reason(w, make, reason):
    _, bob, _ = w
    der = cms.encrypt(make(w), [bob.ref], ContentCipher.AES256_GCM, KeyTransport.RSA_PKCS1V15)
    result = open_inbound(smime.pkcs7_message(der), [bob.pair], at=pki.NOW)
    assert isinstance(result, Rejected) and result.reason is reason, result


def test_changed_gcm_ciphertext_is_the_same_opaque_failure(w):
    alice, bob, _ = w
    entity = smime.detached(smime.wrap(messages.plain()), alice.pair)
    der = bytearray(cms.encrypt(entity, [bob.ref], ContentCipher.AES256_GCM, KeyTransport.RSA_PKCS1V15))
    der[-40] ^= 0x01  # inside the ciphertext, before the 16-byte tag and its header
    result = open_inbound(smime.pkcs7_message(bytes(der)), [bob.pair], at=pki.NOW)
    assert result == decryption_failed(bob.ref)


# ------------------------------------------------------------------ one envelope, one signature


def test_a_second_signature_layer_under_the_verified_one_is_refused(w):
    """Even intact, an inner signature is a layer nobody held to the policy."""
    alice, bob, mallory = w
    inner = smime.detached(smime.wrap(messages.plain()), mallory.pair)
    outer = smime.detached(inner, alice.pair)
    result = open_inbound(smime.envelope(outer, [bob.ref]), [bob.pair], at=pki.NOW)
    assert isinstance(result, Rejected) and result.reason is RejectReason.NESTED_LAYER, result


def test_a_signed_message_wrapping_another_signed_message_is_refused(w):
    alice, bob, mallory = w
    inner = smime.opaque(smime.wrap(messages.plain()), mallory.pair)
    outer = smime.detached(smime.wrap(b"From: alice@a.test\r\n" + inner), alice.pair)
    result = open_inbound(smime.envelope(outer, [bob.ref]), [bob.pair], at=pki.NOW)
    assert isinstance(result, Rejected) and result.reason is RejectReason.NESTED_LAYER, result


def test_an_envelope_inside_the_signature_is_refused(w):
    alice, bob, _ = w
    enveloped = smime.envelope(smime.wrap(messages.plain()), [bob.ref], headers=b"")
    signed = smime.opaque(enveloped, alice.pair)
    raw = smime.HEADERS + signed
    result = open_inbound(raw, [bob.pair], at=pki.NOW, require_encryption=False)
    assert isinstance(result, Rejected) and result.reason is RejectReason.NESTED_LAYER, result
