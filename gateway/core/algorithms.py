"""The algorithms Direct messages use, as enums, with their object identifiers.

Only this module and ``cms`` know OIDs; everything else speaks in these names.
Direct (Applicability Statement 1.2+, RFC 8551) requires SHA-256 and AES for
sending; SHA-1 and 3DES are recognised only so that policy can name and refuse
them.
"""

from __future__ import annotations

import enum


class Digest(enum.Enum):
    SHA1 = "sha1"
    SHA256 = "sha256"
    SHA384 = "sha384"
    SHA512 = "sha512"

    @property
    def micalg(self) -> str:
        """The RFC 8551 section 3.5.3 ``micalg`` token."""
        return {"sha1": "sha-1", "sha256": "sha-256", "sha384": "sha-384", "sha512": "sha-512"}[
            self.value
        ]

    @property
    def weak(self) -> bool:
        return self is Digest.SHA1


class SignatureScheme(enum.Enum):
    RSA_PKCS1V15 = "rsa-pkcs1v15"
    RSA_PSS = "rsa-pss"
    ECDSA = "ecdsa"


class ContentCipher(enum.Enum):
    """Content-encryption algorithms (RFC 3565 AES-CBC, RFC 5084 AES-GCM)."""

    AES128_CBC = "aes128-cbc"
    AES192_CBC = "aes192-cbc"
    AES256_CBC = "aes256-cbc"
    AES128_GCM = "aes128-gcm"
    AES192_GCM = "aes192-gcm"
    AES256_GCM = "aes256-gcm"
    DES_EDE3_CBC = "3des-cbc"

    @property
    def key_bytes(self) -> int:
        return _KEY_BYTES[self]

    @property
    def authenticated(self) -> bool:
        """GCM ciphers travel in AuthEnvelopedData (RFC 5083), the rest in EnvelopedData."""
        return self.value.endswith("-gcm")

    @property
    def weak(self) -> bool:
        return self is ContentCipher.DES_EDE3_CBC


_KEY_BYTES = {
    ContentCipher.AES128_CBC: 16,
    ContentCipher.AES192_CBC: 24,
    ContentCipher.AES256_CBC: 32,
    ContentCipher.AES128_GCM: 16,
    ContentCipher.AES192_GCM: 24,
    ContentCipher.AES256_GCM: 32,
    ContentCipher.DES_EDE3_CBC: 24,
}


class KeyTransport(enum.Enum):
    RSA_PKCS1V15 = "rsa-pkcs1v15"
    RSA_OAEP_SHA1 = "rsa-oaep-sha1"
    RSA_OAEP_SHA256 = "rsa-oaep-sha256"
