"""The edge's own SMTP replies: every code the protocol layer says itself (the pipeline's are its own).

Enhanced status codes: RFC 3463. EHLO advertises ENHANCEDSTATUSCODES, so
every reply carries one (RFC 2034 3) except the greeting, the replies to
HELO and EHLO, 354 and the 334 challenges of AUTH.
"""

from __future__ import annotations

from .admission import Refusal
from .data import DataProblem
from .interface import SmtpReply

OK = SmtpReply(250, "2.0.0", "OK")
SENDER_OK = SmtpReply(250, "2.1.0", "Sender OK")
RECIPIENT_OK = SmtpReply(250, "2.1.5", "Recipient OK")
# RFC 5321 4.3.2: 354 carries no enhanced code.
GO_AHEAD = "354 End data with <CR><LF>.<CR><LF>"

BYE = SmtpReply(221, "2.0.0", "Bye")
CANNOT_VRFY = SmtpReply(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery")
READY_FOR_TLS = SmtpReply(220, "2.0.0", "Ready to start TLS")

# Syntax and sequence (RFC 5321 4.2.4, 4.3.2; RFC 3463 X.5.x).
UNRECOGNIZED = SmtpReply(500, "5.5.2", "Command not recognized")
BAD_SYNTAX = SmtpReply(500, "5.5.2", "Syntax error")
LINE_TOO_LONG = SmtpReply(500, "5.5.2", "Line too long (RFC 5321 4.5.3.1.4)")
# RFC 5321 2.3.8: a command line ends with CRLF, and holds no other CR or LF.
BARE_NEWLINE = SmtpReply(500, "5.5.2", "Bare CR or LF not allowed (RFC 5321 2.3.8)")
NOT_ASCII = SmtpReply(500, "5.5.2", "Non-ASCII characters not allowed")
HELO_SYNTAX = SmtpReply(501, "5.5.4", "Syntax: HELO hostname")
EHLO_SYNTAX = SmtpReply(501, "5.5.4", "Syntax: EHLO hostname")
MAIL_SYNTAX = SmtpReply(501, "5.5.4", "Syntax: MAIL FROM:<address> [SP <mail-parameters>]")
RCPT_SYNTAX = SmtpReply(501, "5.5.4", "Syntax: RCPT TO:<address> [SP <rcpt-parameters>]")
BODY_SYNTAX = SmtpReply(501, "5.5.4", "BODY can only be one of 7BIT, 8BITMIME")
RSET_SYNTAX = SmtpReply(501, "5.5.4", "Syntax: RSET")
QUIT_SYNTAX = SmtpReply(501, "5.5.4", "Syntax: QUIT")
VRFY_SYNTAX = SmtpReply(501, "5.5.4", "Syntax: VRFY <address>")
STARTTLS_SYNTAX = SmtpReply(501, "5.5.4", "Syntax: STARTTLS")
DATA_SYNTAX = SmtpReply(501, "5.5.4", "Syntax: DATA")
BDAT_SYNTAX = SmtpReply(501, "5.5.4", "Syntax: BDAT chunk-size [LAST]")
MALFORMED_ADDRESS = SmtpReply(553, "5.1.3", "Malformed address")
UNKNOWN_PARAMETER = SmtpReply(555, "5.5.4", "Parameter not recognized or not implemented")
NEED_HELO = SmtpReply(503, "5.5.1", "Error: send HELO first")
NEED_EHLO = SmtpReply(503, "5.5.1", "Error: send EHLO first")
NEED_MAIL = SmtpReply(503, "5.5.1", "Error: need MAIL command")
NESTED_MAIL = SmtpReply(503, "5.5.1", "Error: nested MAIL command")
NEED_RECIPIENT = SmtpReply(503, "5.5.1", "Error: need RCPT command")
# RFC 3030 3: DATA and BDAT are never mixed in one transaction.
DATA_AFTER_BDAT = SmtpReply(503, "5.5.1", "Error: DATA after BDAT in one transaction")
NOT_IMPLEMENTED = SmtpReply(502, "5.5.1", "Command not implemented")
NO_AUTH = SmtpReply(502, "5.5.1", "AUTH not available")
NO_TLS = SmtpReply(454, "4.7.0", "TLS not available")
TLS_ACTIVE = SmtpReply(503, "5.5.1", "TLS already active")

# RFC 5321 4.5.3.1.10: too many recipients is 452, and the client tries the rest later.
TOO_MANY_RECIPIENTS = SmtpReply(452, "4.5.3", "Too many recipients")
# RFC 1870 6.1, 6.3.
TOO_BIG = SmtpReply(552, "5.3.4", "Message size exceeds fixed maximum message size")
# A bug or an outage is never a permanent rejection, and never shows internals.
TRY_LATER = SmtpReply(451, "4.3.0", "Temporary failure, please try again later")

DATA_REFUSED = {
    DataProblem.BARE_LF: SmtpReply(550, "5.6.0", "Bare LF not allowed (RFC 5321 2.3.8)"),
    DataProblem.BARE_CR: SmtpReply(550, "5.6.0", "Bare CR not allowed (RFC 5321 2.3.8)"),
    DataProblem.LINE_TOO_LONG: SmtpReply(554, "5.6.0", "Line too long (RFC 5321 4.5.3.1.6)"),
}

# 421: the server closes the connection (RFC 5321 3.8); written with the
# server's name (farewell in server.py).
SHUTTING_DOWN = SmtpReply(421, "4.3.2", "Service shutting down")
TIMED_OUT = SmtpReply(421, "4.4.2", "Timeout exceeded")
TOO_MANY_UNRECOGNIZED = SmtpReply(421, "4.7.0", "Too many unrecognized commands")
REFUSED = {
    Refusal.TOO_MANY_SESSIONS: SmtpReply(421, "4.7.0", "Too many sessions, try again later"),
    Refusal.TOO_MANY_FROM_CLIENT: SmtpReply(421, "4.7.0", "Too many sessions from your address"),
}

# SMTP AUTH on the submission port (RFC 4954 6, RFC 3463; 538 and 5.7.11 are RFC 4954's own).
AUTH_OK = SmtpReply(235, "2.7.0", "Authentication successful")
AUTH_INVALID = SmtpReply(535, "5.7.8", "Authentication credentials invalid")
AUTH_LOCKED_OUT = SmtpReply(454, "4.7.0", "Too many failed logins from your address, try again later")
AUTH_UNAVAILABLE = SmtpReply(454, "4.7.0", "Temporary authentication failure")
AUTH_NEEDS_TLS = SmtpReply(538, "5.7.11", "Encryption required for requested authentication mechanism")
AUTH_REQUIRED = SmtpReply(530, "5.7.0", "Authentication required")
AUTH_ALREADY = SmtpReply(503, "5.5.1", "Already authenticated")
AUTH_MECHANISM = SmtpReply(504, "5.5.4", "Unrecognized authentication type")
AUTH_SYNTAX = SmtpReply(501, "5.5.2", "Syntax: AUTH mechanism [initial-response]")
AUTH_CANCELLED = SmtpReply(501, "5.7.0", "Authentication cancelled")
AUTH_NOT_BASE64 = SmtpReply(501, "5.5.2", "Cannot decode response")
AUTH_MALFORMED = SmtpReply(501, "5.5.2", "Malformed credentials")
AUTH_LINE_TOO_LONG = SmtpReply(500, "5.5.6", "Authentication Exchange line is too long")
