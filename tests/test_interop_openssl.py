"""Interoperability with OpenSSL's ``cms``: what it seals we open, what we seal it opens.

OpenSSL is an independent implementation of CMS; a message it makes tests our
inbound against choices we never make ourselves (BER streaming, key
identifiers, OAEP with SHA-1, opaque signatures), and its verdict on our
output tests our outbound.
"""

from __future__ import annotations

import itertools

import pytest

from gateway.core import (
    ContentCipher,
    Digest,
    KeyTransport,
    Observation,
    Opened,
    SealOptions,
    SignatureForm,
    open_inbound,
    seal_outbound,
)

from . import messages, pki
from .interop import OpenSSL

pytestmark = pytest.mark.interop

HEADERS = b"From: alice@a.test\r\nTo: bob@b.test\r\nMessage-ID: <ossl@a.test>\r\n"
CIPHERS = {
    "aes-128-cbc": ContentCipher.AES128_CBC,
    "aes-256-cbc": ContentCipher.AES256_CBC,
    "aes-128-gcm": ContentCipher.AES128_GCM,
    "aes-256-gcm": ContentCipher.AES256_GCM,
}
TRANSPORTS = {None: KeyTransport.RSA_PKCS1V15, "sha1": KeyTransport.RSA_OAEP_SHA1, "sha256": KeyTransport.RSA_OAEP_SHA256}


@pytest.fixture(scope="module")
def world():
    a, b = pki.hisp("a.test"), pki.hisp("b.test")
    return a, b, a.address("alice"), b.address("bob")


@pytest.fixture
def openssl(tmp_path):
    return OpenSSL(tmp_path)


def wrapped() -> bytes:
    return b"Content-Type: message/rfc822\r\n\r\n" + messages.with_attachment()


@pytest.mark.parametrize(
    ("cipher", "oaep_md"), list(itertools.product(CIPHERS, TRANSPORTS)), ids=lambda v: str(v or "pkcs1v15")
)
def test_we_open_what_openssl_seals(world, openssl, cipher, oaep_md):
    _, b, alice, bob = world
    signed = openssl.sign(wrapped(), alice)
    message = HEADERS + openssl.encrypt(signed, [bob, b.org], cipher=cipher, oaep_md=oaep_md)
    opened = open_inbound(message, [bob.pair], at=pki.NOW)
    assert isinstance(opened, Opened), opened
    assert opened.encryption.cipher is CIPHERS[cipher]
    assert opened.encryption.key_transport is TRANSPORTS[oaep_md]
    assert opened.encryption.recipient_count == 2
    assert opened.signature.signer == alice.ref and opened.signature.form is SignatureForm.DETACHED
    assert opened.inner.subject == "Summary of care" and opened.findings == ()


@pytest.mark.parametrize(
    ("options", "check"),
    [
        ({"stream": True}, lambda o: o.encryption.ber),
        ({"keyid": True}, lambda o: not o.encryption.ber),
        ({"cipher": "des-ede3-cbc"}, lambda o: o.has(Observation.WEAK_CIPHER)),
    ],
    ids=["stream-ber", "keyid-recipient", "3des-reported"],
)
def test_openssl_envelope_variants(world, openssl, options, check):
    _, _, alice, bob = world
    message = HEADERS + openssl.encrypt(openssl.sign(wrapped(), alice), [bob], **options)
    opened = open_inbound(message, [bob.pair], at=pki.NOW)
    assert isinstance(opened, Opened), opened
    assert check(opened)


@pytest.mark.parametrize(
    ("sign_options", "digest"),
    [
        ({"detached": False}, Digest.SHA256),
        ({"md": "sha384"}, Digest.SHA384),
        ({"md": "sha512"}, Digest.SHA512),
        ({"keyopts": ["rsa_padding_mode:pss"]}, Digest.SHA256),
    ],
    ids=["opaque", "sha384", "sha512", "rsa-pss"],
)
def test_openssl_signature_variants(world, openssl, sign_options, digest):
    _, _, alice, bob = world
    message = HEADERS + openssl.encrypt(openssl.sign(wrapped(), alice, **sign_options), [bob], stream=True)
    opened = open_inbound(message, [bob.pair], at=pki.NOW)
    assert isinstance(opened, Opened), opened
    assert opened.signature.digest is digest
    expected_form = SignatureForm.OPAQUE if sign_options.get("detached") is False else SignatureForm.DETACHED
    assert opened.signature.form is expected_form


def test_openssl_ecdsa_signer(world, openssl):
    a, _, _, bob = world
    ec_signer = pki.address_leaf(a.intermediate, "alice@a.test", key_kind="ec", key_size=384)
    message = HEADERS + openssl.encrypt(openssl.sign(wrapped(), ec_signer), [bob])
    opened = open_inbound(message, [bob.pair], at=pki.NOW)
    assert isinstance(opened, Opened) and opened.signature.scheme.value == "ecdsa"


@pytest.mark.parametrize(
    ("cipher", "transport"),
    [(c, t) for c in CIPHERS.values() for t in KeyTransport],
    ids=lambda v: v.value,
)
def test_openssl_opens_and_verifies_what_we_seal(world, openssl, cipher, transport):
    a, _, alice, bob = world
    sealed = seal_outbound(
        messages.with_attachment(), alice.pair, [bob.ref],
        SealOptions(at=pki.NOW, cipher=cipher, key_transport=transport),
    )
    decrypted = openssl.decrypt(sealed.message, bob)
    assert b"multipart/signed" in decrypted.split(b"\r\n\r\n", 1)[0]
    content = openssl.verify(decrypted, [a.root, a.intermediate])
    assert content.startswith(b"Content-Type: message/rfc822\r\n\r\n")
    assert (b"Subject: Summary of care" in content and messages.CCDA[:40] in content) or b"ccd.xml" in content


def test_openssl_refuses_our_signature_when_content_changes(world, openssl):
    a, _, alice, bob = world
    sealed = seal_outbound(messages.plain(), alice.pair, [bob.ref], SealOptions(at=pki.NOW))
    decrypted = openssl.decrypt(sealed.message, bob).replace(b"Please see", b"Please seE")
    with pytest.raises(Exception, match="exited"):
        openssl.verify(decrypted, [a.root, a.intermediate])
