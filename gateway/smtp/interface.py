"""The narrow edge between the SMTP protocol layer and the rest of the gateway.

The protocol layer (``gateway/smtp/server.py`` and ``session.py``, bytes-level
asyncio) speaks SMTP and enforces the session limits; it asks a ``Pipeline``
two questions and turns the answers into replies: may this recipient be
given (RCPT), and what becomes of this message (end of DATA). The pipeline
never sees a socket and the protocol layer never sees a certificate, so the
protocol layer can be measured against another and replaced (shared/PERFORMANCE.md):
it was, aiosmtpd by a layer of our own, without a change here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class SmtpReply:
    """One SMTP reply: the code, the RFC 3463 enhanced status, and a short text for the peer.

    The text never carries internals (tracebacks, SQL, file paths): those go to the log."""

    code: int
    enhanced: str
    text: str

    def __post_init__(self) -> None:
        if not 200 <= self.code <= 599:
            raise ValueError(f"SMTP reply code {self.code} out of range")
        if "\r" in self.text or "\n" in self.text:
            raise ValueError("an SMTP reply text is one line")

    @property
    def positive(self) -> bool:
        return self.code < 400

    @property
    def permanent(self) -> bool:
        return self.code >= 500

    def line(self) -> str:
        """The reply as one line of text, without its CRLF: '250 2.0.0 text'."""
        return f"{self.code} {self.enhanced} {self.text}"


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """What the protocol layer knows of the client when it asks the pipeline."""

    peer: str
    """The client's IP address."""
    helo: str | None
    tls: bool
    authenticated_as: str | None = None
    """The SMTP AUTH identity on the submission port (None on port 25)."""


@dataclass(frozen=True, slots=True)
class Received:
    """One message as the client sent it, after the final dot."""

    session: SessionInfo
    mail_from: str
    """The reverse-path; "" for the null reverse-path <> (RFC 5321 4.5.5: MDNs and DSNs)."""
    rcpt_to: tuple[str, ...]
    """Each accepted recipient once, in the order first named (RCPT for one named again is 250, once)."""
    data: bytes = field(repr=False)
    """The exact bytes between DATA and the final dot, dot-unstuffed, CRLF line ends."""

    def __post_init__(self) -> None:
        if len(set(self.rcpt_to)) < len(self.rcpt_to):  # one delivery per recipient, whoever built it
            object.__setattr__(self, "rcpt_to", tuple(dict.fromkeys(self.rcpt_to)))


class Pipeline(Protocol):
    async def recipient(self, session: SessionInfo, mail_from: str, address: str) -> SmtpReply | None:
        """None accepts the recipient; a reply refuses it (550 5.1.1 for an unknown address)."""

    async def message(self, received: Received) -> SmtpReply:
        """The reply to the final dot. A 250 only once the message is durably stored.

        Called at most once per message. The protocol layer may be cancelled while
        this runs (a client that half-closes after the final dot): the pipeline
        must then leave the store consistent (committed whole or not at all)."""


# -- the submission port (587): SMTP AUTH and the sender check --


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a client gave in AUTH PLAIN or LOGIN. The password never appears in a repr or a log."""

    login: str
    password: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Authenticated:
    identity: str
    """The account name: ``SessionInfo.authenticated_as`` from now on."""


class AuthRefusal(enum.Enum):
    """Why a login failed; the edge turns each into its RFC 4954 reply."""

    INVALID = "invalid"
    """Unknown account or wrong password: one answer for both (535 5.7.8), and the failure is counted."""
    LOCKED_OUT = "locked-out"
    """Too many recent failures from this client address: refused without checking (454 4.7.0)."""
    UNAVAILABLE = "unavailable"
    """The accounts cannot be read now (454 4.7.0: try again)."""


class Authenticator(Protocol):
    async def authenticate(self, peer: str, credentials: Credentials) -> Authenticated | AuthRefusal:
        """Check ``credentials`` from the client at ``peer`` (its IP address), counting failures."""


class Submission(Pipeline, Protocol):
    """The pipeline behind the submission port: it also judges MAIL FROM (the account's domain)."""

    async def sender(self, session: SessionInfo, address: str) -> SmtpReply | None:
        """None accepts the reverse-path; a reply refuses it (550 5.7.1 outside the account's domain).

        Asked only once the session is authenticated (``session.authenticated_as`` is set)."""
