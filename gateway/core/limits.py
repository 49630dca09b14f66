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

# CMS structures nest a handful of levels; asn1crypto parses lazily but a
# crafted BER blob can nest constructed OCTET STRINGs arbitrarily.
MAX_CMS_RECIPIENTS = 100
MAX_CMS_CERTIFICATES = 50


@dataclass(frozen=True, slots=True)
class Limits:
    max_message_bytes: int = MAX_MESSAGE_BYTES
    max_mime_depth: int = MAX_MIME_DEPTH
    max_mime_parts: int = MAX_MIME_PARTS
    max_header_bytes: int = MAX_HEADER_BYTES
    max_cms_recipients: int = MAX_CMS_RECIPIENTS
    max_cms_certificates: int = MAX_CMS_CERTIFICATES

    def __post_init__(self) -> None:
        for name in self.__slots__:
            if getattr(self, name) <= 0:
                raise ValueError(f"limit {name} must be positive")


DEFAULT_LIMITS = Limits()
