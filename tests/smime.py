"""Build S/MIME layers one at a time, to make messages our sealer never would.

``seal_outbound`` always wraps, signs and encrypts; these let a test leave a
layer out, change one, or stack them oddly, using the core's own CMS module.
"""

from __future__ import annotations

import os

from gateway.core import cms
from gateway.core.algorithms import ContentCipher, Digest, KeyTransport
from gateway.core.certs import CertRef, KeyPair
from gateway.core.mime import base64_lines

from .pki import NOW

HEADERS = b"From: alice@a.test\r\nTo: bob@b.test\r\nMessage-ID: <t1@a.test>\r\nMIME-Version: 1.0\r\n"


def wrap(message: bytes) -> bytes:
    return b"Content-Type: message/rfc822\r\n\r\n" + message


def detached(entity: bytes, signer: KeyPair, digest: Digest = Digest.SHA256, chain=()) -> bytes:
    sig = cms.sign(entity, signer, digest, NOW, chain=tuple(chain))
    b = "sig" + os.urandom(4).hex()
    return (
        f'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg={digest.micalg}; boundary="{b}"\r\n\r\n'
        f"--{b}\r\n".encode()
        + entity
        + f"\r\n--{b}\r\nContent-Type: application/pkcs7-signature; name=smime.p7s\r\nContent-Transfer-Encoding: base64\r\n\r\n".encode()
        + base64_lines(sig)
        + f"--{b}--\r\n".encode()
    )


def opaque(entity: bytes, signer: KeyPair, digest: Digest = Digest.SHA256) -> bytes:
    sig = cms.sign(entity, signer, digest, NOW, detached=False)
    return (
        b"Content-Type: application/pkcs7-mime; smime-type=signed-data; name=smime.p7m\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + base64_lines(sig)
    )


def envelope(
    entity: bytes,
    recipients: list[CertRef],
    cipher: ContentCipher = ContentCipher.AES256_CBC,
    transport: KeyTransport = KeyTransport.RSA_PKCS1V15,
    headers: bytes = HEADERS,
) -> bytes:
    der = cms.encrypt(entity, recipients, cipher, transport)
    return pkcs7_message(der, headers)


def pkcs7_message(der: bytes, headers: bytes = HEADERS, smime_type: str = "enveloped-data") -> bytes:
    return (
        headers
        + f"Content-Type: application/pkcs7-mime; smime-type={smime_type}; name=smime.p7m\r\n".encode()
        + b"Content-Transfer-Encoding: base64\r\n\r\n"
        + base64_lines(der)
    )
