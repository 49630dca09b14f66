"""The SMTP edge: the protocol layer (server.py, the one aiosmtpd importer) and its interface to the pipeline."""

from .interface import Pipeline, Received, SessionInfo, SmtpReply

__all__ = ["Pipeline", "Received", "SessionInfo", "SmtpReply"]
