"""The EHR's inbox: where the hospital's HISP hands its providers their mail.

In a hospital this is the organization's mail server or the EHR's own SMTP
listener (the domain's ``provider_smtp``). Here it is the project's own SMTP
edge on loopback, keeping what arrives in memory for the story to show.
"""

from __future__ import annotations

import asyncio
import email
import email.message
import email.policy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.core.limits import DEFAULT_LIMITS
from gateway.core.mdn import Dsn, Mdn, NotAReport, parse_dsn, parse_mdn
from gateway.receive.replies import ACCEPTED
from gateway.smtp.interface import Received, SessionInfo, SmtpReply
from gateway.smtp.server import SmtpServer, start_smtp


@dataclass(frozen=True)
class Delivered:
    mail_from: str
    recipients: tuple[str, ...]
    data: bytes = field(repr=False)
    arrived: float = field(default_factory=time.monotonic)

    @property
    def mdn(self) -> Mdn | None:
        found = parse_mdn(self.data, DEFAULT_LIMITS)
        return None if isinstance(found, NotAReport) else found

    @property
    def dsn(self) -> Dsn | None:
        found = parse_dsn(self.data, DEFAULT_LIMITS)
        return None if isinstance(found, NotAReport) else found

    def words(self, limit: int = 12) -> list[str]:
        """The first lines of the text a person reads in a report (its first text/plain part).

        The demo shows its own gateways' notices with the standard library's parser; nothing
        here judges hostile mail, so a second parser cannot mislead a decision."""
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        for part in parsed.walk():
            if part.get_content_type() == "text/plain" and not part.is_multipart():
                text = part.get_content() if isinstance(part, email.message.EmailMessage) else ""
                lines = [line.rstrip() for line in str(text).splitlines() if line.strip()]
                return lines[:limit]
        return []

    def header(self, name: str) -> str | None:
        head = self.data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
        value: str | None = None
        for line in head.split("\r\n"):
            if line[:1] in (" ", "\t") and value is not None:
                value += " " + line.strip()
            elif ":" in line:
                if value is not None:
                    return value
                key, _, rest = line.partition(":")
                if key.strip().lower() == name.lower():
                    value = rest.strip()
        return value


class EhrInbox:
    """A Pipeline that accepts every message and remembers it."""

    def __init__(self) -> None:
        self.received: list[Delivered] = []
        self._arrived = asyncio.Condition()
        self.server: SmtpServer | None = None

    async def start(self) -> int:
        self.server = await start_smtp(self, host="127.0.0.1", port=0, hostname="ehr.hospital.demo")
        return self.server.port

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close(grace=1.0)

    async def recipient(self, session: SessionInfo, mail_from: str, address: str) -> SmtpReply | None:
        return None

    async def message(self, received: Received) -> SmtpReply:
        async with self._arrived:
            self.received.append(Delivered(received.mail_from, received.rcpt_to, received.data))
            self._arrived.notify_all()
        return ACCEPTED

    async def wait_for(self, wanted: Callable[[Delivered], bool], timeout: float) -> Delivered | None:
        """The first message (already here or still to come) that ``wanted`` picks, or None at the timeout."""
        async def first() -> Delivered:
            async with self._arrived:
                while True:
                    for d in self.received:
                        if wanted(d):
                            return d
                    await self._arrived.wait()

        try:
            return await asyncio.wait_for(first(), timeout)
        except TimeoutError:
            return None
