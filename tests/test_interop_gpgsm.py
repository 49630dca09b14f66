"""Interoperability with GnuPG's ``gpgsm``: a second independent CMS implementation.

gpgsm writes BER with indefinite lengths and no MIME; these tests wrap its
output the way a mail client would, and feed it our CMS without MIME.
"""

from __future__ import annotations

import pytest

from gateway.core import Opened, SealOptions, SignatureForm, open_inbound, seal_outbound
from gateway.core.limits import DEFAULT_LIMITS
from gateway.core.mime import parse_entity, split_multipart

from . import messages, pki
from .interop import Gpgsm, body_der, multipart_signed, pkcs7_mime

pytestmark = pytest.mark.interop

HEADERS = b"From: alice@a.test\r\nTo: bob@b.test\r\nMessage-ID: <gpgsm@a.test>\r\n"


@pytest.fixture(scope="module")
def world():
    a, b = pki.hisp("a.test"), pki.hisp("b.test")
    return a, b, a.address("alice"), b.address("bob")


@pytest.fixture(scope="module")
def gpgsm(world, tmp_path_factory):
    a, b, alice, bob = world
    peer = Gpgsm(tmp_path_factory.mktemp("gnupg"), roots=[a.root, b.root], cas=[a.intermediate, b.intermediate])
    peer.add_key(alice)
    peer.add_key(bob)
    yield peer
    peer.close()


def wrapped() -> bytes:
    return b"Content-Type: message/rfc822\r\n\r\n" + messages.with_attachment()


def test_we_open_what_gpgsm_signs_detached_and_encrypts(world, gpgsm):
    _, _, alice, bob = world
    entity = wrapped()
    signed = multipart_signed(entity, gpgsm.sign(entity, "alice@a.test"))
    message = pkcs7_mime(gpgsm.encrypt(signed, "bob@b.test"), "enveloped-data", HEADERS)
    opened = open_inbound(message, [bob.pair], at=pki.NOW)
    assert isinstance(opened, Opened), opened
    assert opened.encryption.ber, "gpgsm writes indefinite-length BER"
    assert opened.signature.signer == alice.ref
    assert opened.signature.form is SignatureForm.DETACHED
    assert opened.inner.subject == "Summary of care"


def test_we_open_gpgsm_opaque_signed_data(world, gpgsm):
    _, _, alice, bob = world
    opaque = pkcs7_mime(gpgsm.sign(wrapped(), "alice@a.test", detached=False), "signed-data")
    message = pkcs7_mime(gpgsm.encrypt(opaque, "bob@b.test"), "enveloped-data", HEADERS)
    opened = open_inbound(message, [bob.pair], at=pki.NOW)
    assert isinstance(opened, Opened), opened
    assert opened.signature.form is SignatureForm.OPAQUE and opened.signature.signer == alice.ref


def test_gpgsm_decrypts_and_verifies_what_we_seal(world, gpgsm):
    _, _, alice, bob = world
    sealed = seal_outbound(messages.with_attachment(), alice.pair, [bob.ref], SealOptions(at=pki.NOW))
    decrypted = gpgsm.decrypt(body_der(sealed.message))
    entity = parse_entity(decrypted, DEFAULT_LIMITS)
    (s_start, s_end), (g_start, g_end) = split_multipart(entity, entity.param("boundary"), DEFAULT_LIMITS)
    signature = parse_entity(decrypted, DEFAULT_LIMITS, g_start, g_end).decoded_body()
    content = decrypted[s_start:s_end]
    gpgsm.verify(bytes(signature), content)  # raises PeerError unless "Good signature"
    assert b"Subject: Summary of care" in content
    with pytest.raises(Exception, match="exited"):
        gpgsm.verify(bytes(signature), content.replace(b"Summary", b"Summery"))
