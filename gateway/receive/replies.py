"""Every SMTP reply the receiving pipeline gives, and why: the one place a 250 or a 554 is chosen.

RFC 3463 enhanced codes: 5.7.1 delivery not authorised, 5.7.5 cryptographic
failure, 5.7.6 cryptographic algorithm not supported, 5.7.7 message integrity
failure, 5.6.0 other media error, 5.3.4 message too big, 4.3.0 other mail
system problem, 4.7.0 other security problem (temporary). Texts are short and
name the check, never internals (STYLE.md item 4): details go to the log and
the audit table.
"""

from __future__ import annotations

from gateway.core.outcomes import RejectReason
from gateway.smtp.interface import SmtpReply
from trust.types import Check

ACCEPTED = SmtpReply(250, "2.6.0", "message accepted for delivery")
DUPLICATE = SmtpReply(250, "2.6.0", "message already delivered")
UNKNOWN_RECIPIENT = SmtpReply(550, "5.1.1", "no such recipient here")
RELAY_DENIED = SmtpReply(550, "5.7.1", "relaying denied: not a domain of this HISP")
INTERNAL = SmtpReply(451, "4.3.0", "temporary local problem, try again later")
STORAGE_UNAVAILABLE = SmtpReply(451, "4.3.0", "message store unavailable, try again later")
HEADER_MISMATCH = SmtpReply(554, "5.7.1", "envelope does not match the signed headers")

_CORE: dict[RejectReason, SmtpReply] = {
    RejectReason.NOT_ENCRYPTED: SmtpReply(554, "5.7.1", "Direct requires S/MIME encrypted mail"),
    RejectReason.NOT_SIGNED: SmtpReply(554, "5.7.1", "Direct requires signed mail"),
    RejectReason.NO_KEY_FOR_RECIPIENT: SmtpReply(554, "5.7.5", "not encrypted for a certificate of this HISP"),
    RejectReason.DECRYPTION_FAILED: SmtpReply(554, "5.7.5", "message could not be decrypted"),
    RejectReason.SIGNER_NOT_FOUND: SmtpReply(554, "5.7.7", "signer certificate not included"),
    RejectReason.SIGNATURE_INVALID: SmtpReply(554, "5.7.7", "signature does not verify"),
    RejectReason.DIGEST_MISMATCH: SmtpReply(554, "5.7.7", "content changed after signing"),
    RejectReason.UNSUPPORTED_ALGORITHM: SmtpReply(554, "5.7.6", "cryptographic algorithm not supported"),
    RejectReason.MALFORMED: SmtpReply(554, "5.6.0", "message structure cannot be read"),
    RejectReason.TOO_LARGE: SmtpReply(552, "5.3.4", "message or one of its parts is too large"),
    RejectReason.TOO_DEEP: SmtpReply(554, "5.6.0", "message nests too deeply"),
    RejectReason.SENDER_MISSING: SmtpReply(554, "5.7.1", "no single From to bind the signer to"),
    RejectReason.SENDER_AMBIGUOUS: SmtpReply(554, "5.7.1", "signed content names more than one sender"),
    RejectReason.SENDER_MALFORMED: SmtpReply(554, "5.7.1", "From is not a valid address"),
    RejectReason.NESTED_LAYER: SmtpReply(554, "5.7.1", "more than one envelope or signature layer"),
}
_CORE_DEFAULT = SmtpReply(554, "5.7.1", "message refused by Direct policy")


def for_rejection(reason: RejectReason) -> SmtpReply:
    """The reply to a message the core refused (every such reason is permanent)."""
    return _CORE.get(reason, _CORE_DEFAULT)


def for_untrusted(check: Check, temporary: bool) -> SmtpReply:
    """The reply to a message whose signer the trust layer did not accept."""
    if temporary:
        return SmtpReply(451, "4.7.0", f"signer trust cannot be established now ({check.value}), try again later")
    return SmtpReply(554, "5.7.1", f"signer not trusted ({check.value})")
