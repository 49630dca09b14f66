"""Valid CMS structures of a sealed Direct message, and the S/MIME around them, for the
structure tests and the TLV fuzzer: each target is one DER blob a test may reshape."""

from __future__ import annotations

import base64

from gateway.core import ContentCipher, KeyTransport, Limits, Opened, Rejected, cms, open_inbound
from gateway.core.algorithms import Digest
from gateway.core.mime import base64_lines

from . import messages, pki, smime

A = pki.hisp("a.test")
B = pki.hisp("b.test")
ALICE, BOB = A.address("alice"), B.address("bob")
WRAPPED = smime.wrap(messages.with_attachment())
SIGNED_ENTITY = smime.detached(WRAPPED, ALICE.pair, chain=[A.intermediate.ref])
_B64 = b"Content-Transfer-Encoding: base64\r\n\r\n"
DETACHED_SIG = base64.b64decode(SIGNED_ENTITY.split(_B64, 1)[1].split(b"--", 1)[0])
OPAQUE_SIG = cms.sign(WRAPPED, ALICE.pair, Digest.SHA256, pki.NOW, detached=False)
CBC = cms.encrypt(SIGNED_ENTITY, [BOB.ref], ContentCipher.AES256_CBC, KeyTransport.RSA_PKCS1V15)
GCM = cms.encrypt(SIGNED_ENTITY, [BOB.ref], ContentCipher.AES128_GCM, KeyTransport.RSA_OAEP_SHA256)


def with_signature(signature: bytes) -> bytes:
    """SIGNED_ENTITY (multipart/signed) with its signature part replaced."""
    head, rest = SIGNED_ENTITY.split(_B64, 1)
    return head + _B64 + base64_lines(signature) + b"--" + rest.split(b"--", 1)[1]


def opaque_entity(signed_data: bytes) -> bytes:
    return (
        b"Content-Type: application/pkcs7-mime; smime-type=signed-data; name=smime.p7m\r\n" + _B64
        + base64_lines(signed_data)
    )


def enveloped_message(der: bytes) -> bytes:
    return smime.pkcs7_message(der)


def detached_message(signature: bytes) -> bytes:
    return smime.envelope(with_signature(signature), [BOB.ref], ContentCipher.AES256_GCM)


def opaque_message(signed_data: bytes) -> bytes:
    return smime.envelope(opaque_entity(signed_data), [BOB.ref], ContentCipher.AES256_GCM)


def open_as_bob(raw: bytes, limits: Limits | None = None) -> Opened | Rejected:
    return open_inbound(raw, [BOB.pair], limits or Limits(), at=pki.NOW)
