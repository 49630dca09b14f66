"""Named bounds on what one inbound message may cost.

Each number says where it comes from; the SMTP edge and the CLI pass a
``Limits`` to the core, so a site can tighten or relax them in configuration.
"""

from __future__ import annotations

from dataclasses import dataclass

# Direct messages carry C-CDA documents, PDFs and XDM zips. Commercial HISPs
# commonly cap at 25-50 MB; base64 and CMS add about 37%, so 64 MiB of raw
# S/MIME holds a 45 MiB payload.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

# A Direct message is enveloped -> signed -> message/rfc822 -> multipart ->
# parts: depth 5 to 6 in practice. Sixteen leaves room for forwarded mail
# while stopping a "zip bomb" of nested multiparts (Python's email package
# recurses per level).
MAX_MIME_DEPTH = 16

# More parts than any clinical message carries; bounds work per message.
MAX_MIME_PARTS = 1000

# A header section beyond this is abuse, not mail (RFC 5322 puts no limit;
# Postfix's header_size_limit default is 100 KiB).
MAX_HEADER_BYTES = 100 * 1024

# CMS (RFC 5652) counts, checked while the structure is walked, before
# anything is listed or copied (gateway/core/der.py).
#
# Recipients: a Direct message goes to a handful of addresses, each with one or
# two certificates (rollover); a hundred covers a mailing list.
MAX_CMS_RECIPIENTS = 100
# Certificates carried beside a signature: the signer and its intermediates,
# 2-4 in practice; fifty leaves room for cross-certified bundles.
MAX_CMS_CERTIFICATES = 50
# SignerInfos: Direct sends one signer, and only the first is verified (the
# one the sender binding is checked against); RFC 5652 5.1 allows several
# (parallel signatures with different digests during an algorithm move, RFC
# 5752), so a few are tolerated rather than refused, and more is abuse.
MAX_CMS_SIGNERS = 4
# Signed attributes: ours carry four (contentType, signingTime, messageDigest,
# smimeCapabilities); OpenSSL and gpgsm add signingCertificateV2 (RFC 5035),
# cmsAlgorithmProtection (RFC 6211) and encryptionKeyPreference: under ten.
MAX_CMS_SIGNED_ATTRIBUTES = 32
# Streamed (BER) ciphertext arrives as a constructed OCTET STRING cut in
# pieces: OpenSSL's -stream and gpgsm both write 4096-byte pieces (measured
# with openssl cms 3.0 and gpgsm 2.2); Bouncy Castle's stream generators write
# 1000-byte pieces, CER's segment size (X.690 9.2), the smallest we know of. Each piece costs Python work however small it is (two header
# reads and a cipher call, about 3 us), so pieces are bounded by count: this
# many always, plus one per CMS_CHUNK_BYTES of the element. An average piece
# of 512 bytes is half of CER's and an eighth of OpenSSL's, and the most pieces
# a message may hold cost less than decrypting and hashing it (bench/adversarial.py).
MIN_CMS_CHUNKS = 128
CMS_CHUNK_BYTES = 512

# The BER walk (der.Walk): every element header read is a step (about 1.5 us).
# A valid message takes one or two steps per certificate field, recipient
# field or ciphertext piece: ours a few hundred in all, OpenSSL's streamed
# ones two per 4096 bytes. The floor covers the fixed structure of a small
# message at its limits (fifty certificates at ~8 steps, a hundred recipients
# at ~8, 32 signed attributes at ~4); beyond it, one step per 256 bytes keeps
# the walk under what decrypting, hashing and decoding the same bytes cost
# (about 14 ms per MiB), so no shape of BER costs more than a valid message
# of its size. Twice the most ciphertext pieces fit in it.
DER_STEPS_FLOOR = 2048
DER_BYTES_PER_STEP = 256
# Indefinite-length elements whose ends a walk remembers: OpenSSL's and gpgsm's
# streamed messages use five to eight (ContentInfo, content, EnvelopedData,
# EncryptedContentInfo, encryptedContent, and the same inside signed-data).
MAX_BER_INDEFINITE = 256


@dataclass(frozen=True, slots=True)
class Limits:
    max_message_bytes: int = MAX_MESSAGE_BYTES
    max_mime_depth: int = MAX_MIME_DEPTH
    max_mime_parts: int = MAX_MIME_PARTS
    max_header_bytes: int = MAX_HEADER_BYTES
    max_cms_recipients: int = MAX_CMS_RECIPIENTS
    max_cms_certificates: int = MAX_CMS_CERTIFICATES
    max_cms_signers: int = MAX_CMS_SIGNERS
    max_cms_signed_attributes: int = MAX_CMS_SIGNED_ATTRIBUTES
    min_cms_chunks: int = MIN_CMS_CHUNKS
    cms_chunk_bytes: int = CMS_CHUNK_BYTES

    def max_cms_chunks(self, span: int) -> int:
        """How many pieces a ciphertext element of ``span`` bytes may be cut in."""
        return self.min_cms_chunks + span // self.cms_chunk_bytes

    def __post_init__(self) -> None:
        for name in self.__slots__:
            if getattr(self, name) <= 0:
                raise ValueError(f"limit {name} must be positive")


DEFAULT_LIMITS = Limits()
