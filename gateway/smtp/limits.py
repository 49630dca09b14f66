"""Named bounds on what one SMTP client may cost the edge, each with its source.

The protocol layer (session.py, server.py) enforces them; the configuration's ``[smtp]``
table sets them. Every default is what RFC 5321 asks a server to accept at
least, or what the message core accepts anyway, so a conforming sender is
never refused by a default.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.core.limits import MAX_MESSAGE_BYTES

# The core refuses larger messages anyway (gateway/core/limits.py: 64 MiB of
# S/MIME holds a 45 MiB payload), so the edge advertises the same number as
# SIZE (RFC 1870) and refuses at MAIL, or after the final dot, what is over it.
MAX_MESSAGE_SIZE = MAX_MESSAGE_BYTES

# RFC 5321 4.5.3.1.8: a server MUST buffer at least 100 recipients; over the
# limit it answers 452 4.5.3 (RFC 5321 4.5.3.1.10, RFC 3463 X.5.3) and the
# client sends the rest in another transaction.
MAX_RECIPIENTS = 100

# RFC 5321 4.5.3.1.6: a text line is at most 1000 octets with its CRLF
# (counted after the transparency dot is removed). The signature covers the
# exact bytes, so a longer line cannot be re-wrapped: it is refused.
MAX_LINE_LENGTH = 1000

# RFC 5321 4.5.3.1.4: a command line is at most 512 octets with its CRLF
# (RFC 1870 lets MAIL grow by 26 for SIZE=).
MAX_COMMAND_LINE = 512

# RFC 5321 4.5.3.2.7: a server waits at least 5 minutes for the next command.
COMMAND_TIMEOUT = 300.0

# RFC 5321 4.5.3.2.5: the client waits 3 minutes for each block of DATA to be
# taken; the server waits as long for the next block before giving up.
DATA_TIMEOUT = 180.0

# RFC 5321 4.5.3.2.6: the client waits 10 minutes for the reply to the final
# dot; past that the pipeline's answer would reach nobody, so the edge closes
# the connection (the pipeline still runs to its end).
REPLY_TIMEOUT = 600.0

# Concurrent sessions: each may hold a whole message in memory (up to
# MAX_MESSAGE_SIZE), so this bounds the worst case of memory at about
# 200 x 64 MiB; Postfix's default process limit is 100.
MAX_SESSIONS = 200

# One address may not take every slot (Postfix's smtpd_client_connection_count_limit
# defaults to half its process limit; Direct peers are HISPs that open a few).
MAX_SESSIONS_PER_CLIENT = 20

# systemd sends SIGKILL 90 s after SIGTERM by default (TimeoutStopSec): a
# message in flight gets most of that to finish.
CLOSE_GRACE = 60.0


@dataclass(frozen=True, slots=True)
class SmtpLimits:
    max_message_size: int = MAX_MESSAGE_SIZE
    max_recipients: int = MAX_RECIPIENTS
    max_line_length: int = MAX_LINE_LENGTH
    max_command_line: int = MAX_COMMAND_LINE
    command_timeout: float = COMMAND_TIMEOUT
    data_timeout: float = DATA_TIMEOUT
    reply_timeout: float = REPLY_TIMEOUT
    max_sessions: int = MAX_SESSIONS
    max_sessions_per_client: int = MAX_SESSIONS_PER_CLIENT
    close_grace: float = CLOSE_GRACE

    def __post_init__(self) -> None:
        # RFC 5321 sets floors a server must accept; a configuration under them is a mistake.
        if self.max_recipients < 1:
            raise ValueError("max_recipients must be at least 1")
        if self.max_line_length < 3 or self.max_command_line < 16:
            raise ValueError("line limits too small to carry SMTP")
        if self.max_message_size < 1:
            raise ValueError("max_message_size must be positive")
        for name in ("command_timeout", "data_timeout", "reply_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.close_grace < 0:
            raise ValueError("close_grace must not be negative")
        if self.max_sessions < 1 or self.max_sessions_per_client < 1:
            raise ValueError("session limits must be at least 1")
