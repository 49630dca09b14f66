"""The SMTP edge: the protocol layer (server.py, session.py: bytes-level asyncio) and its interface to the pipeline."""

from .interface import (
    Authenticated,
    Authenticator,
    AuthRefusal,
    Credentials,
    Pipeline,
    Received,
    SessionInfo,
    SmtpReply,
    Submission,
)
from .limits import SmtpLimits
from .server import SmtpServer, start_smtp, start_submission
from .sockets import listening_socket

__all__ = [
    "AuthRefusal",
    "Authenticated",
    "Authenticator",
    "Credentials",
    "Pipeline",
    "Received",
    "SessionInfo",
    "SmtpLimits",
    "SmtpReply",
    "SmtpServer",
    "Submission",
    "listening_socket",
    "start_smtp",
    "start_submission",
]
