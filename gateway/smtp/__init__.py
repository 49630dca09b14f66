"""The SMTP edge: the protocol layer (server.py, the one aiosmtpd importer) and its interface to the pipeline."""

from .interface import Pipeline, Received, SessionInfo, SmtpReply
from .limits import SmtpLimits
from .server import SmtpServer, start_smtp
from .sockets import listening_socket

__all__ = [
    "Pipeline",
    "Received",
    "SessionInfo",
    "SmtpLimits",
    "SmtpReply",
    "SmtpServer",
    "listening_socket",
    "start_smtp",
]
