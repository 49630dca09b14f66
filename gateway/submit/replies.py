"""Every SMTP reply the submission pipeline gives, and why: the one place they are chosen.

RFC 3463: 5.7.1 not authorised (a sender outside the account's domain, a From
that is not the sender), 5.1.3 / 5.1.7 bad destination / sender address
syntax, 5.6.0 a header section that cannot be used, 5.3.4 too big, 4.3.0 a
temporary local problem. Texts name the rule, never internals (STYLE.md item 4).
"""

from __future__ import annotations

from gateway.smtp.interface import SmtpReply

from .prepare import SubmitProblem

NOT_AUTHENTICATED = SmtpReply(530, "5.7.0", "Authentication required")
ACCOUNT_GONE = SmtpReply(550, "5.7.1", "this account may no longer send")
SENDER_OUTSIDE = SmtpReply(550, "5.7.1", "sender address is not in your account's domain")
SENDER_SYNTAX = SmtpReply(553, "5.1.7", "sender address is not a Direct address (local@domain)")
RECIPIENT_SYNTAX = SmtpReply(553, "5.1.3", "recipient address is not a Direct address (local@domain)")
STORAGE_UNAVAILABLE = SmtpReply(451, "4.3.0", "message store unavailable, try again later")
INTERNAL = SmtpReply(451, "4.3.0", "temporary local problem, try again later")


def queued(message: int) -> SmtpReply:
    """The 250: given only after the message, its jobs and their tracking are committed."""
    return SmtpReply(250, "2.6.0", f"queued for delivery as message {message}")


_REFUSED = {
    SubmitProblem.HEADER_UNREADABLE: SmtpReply(554, "5.6.0", "message header section cannot be read"),
    SubmitProblem.HEADER_TOO_LARGE: SmtpReply(552, "5.3.4", "message header section too large"),
    SubmitProblem.NO_FROM: SmtpReply(554, "5.6.0", "message has no From field"),
    SubmitProblem.FROM_UNREADABLE: SmtpReply(554, "5.6.0", "From is not a valid address"),
    SubmitProblem.SEVERAL_FROM: SmtpReply(554, "5.6.0", "exactly one From mailbox is required"),
    SubmitProblem.FROM_NOT_SENDER: SmtpReply(550, "5.7.1", "From must be the MAIL FROM address"),
    SubmitProblem.MESSAGE_ID_MALFORMED: SmtpReply(554, "5.6.0", "Message-ID must be one <id@domain>"),
}


def refused(problem: SubmitProblem) -> SmtpReply:
    return _REFUSED[problem]
