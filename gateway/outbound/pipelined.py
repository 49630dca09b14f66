"""One mail transaction in two round trips, to a server that offers PIPELINING (RFC 2920).

aiosmtplib opens and closes our sessions (connect, EHLO, STARTTLS, EHLO, QUIT), but it
sends a command and waits for its reply, one round trip each, and cannot read several
replies that arrive together. So for the transaction itself, MAIL, RCPT and DATA written
at once and then the message, the session's transport is lent to ``_Replies``, a protocol
that reads replies as they come, and handed back to aiosmtplib after: every step on
asyncio's public transport API (``set_protocol``).

What it saves: on a kept session a message took four round trips (MAIL, RCPT, DATA, the
message), each a send and a wake-up of the other process on both sides; now two, and our
own edge answers the three commands in one write. To a server that also offers CHUNKING
(RFC 3030: our edge, Postfix, Exchange), one: MAIL, RCPT, ``BDAT <size> LAST`` and the
message go in one write, with no 354 to wait for in between, and the three replies come
back together. Measured in docs/outbound.md.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque

import aiosmtplib
from aiosmtplib import SMTPResponse

MAX_LINE = 8192
"""aiosmtplib's own limit for a reply line; RFC 5321 4.5.3.1.5 asks for 512."""
MAX_LINES = 100
"""A multiline reply longer than this is not one a transaction needs: a broken or hostile server."""

_PLAIN_ADDRESS = re.compile(r"[!-;=?-~]*")
"""Printable ASCII without space, ``<`` or ``>``: written as it is. Anything else (SMTPUTF8,
characters aiosmtplib refuses as injection) goes the unpipelined way, through aiosmtplib."""


class _Replies(asyncio.Protocol):
    """Reads SMTP replies (RFC 5321 4.2.1) from whatever the server sends, however it is cut."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._scanned = 0  # where the next line starts: bytes are looked at once
        self._lines: list[bytes] = []
        self._ready: deque[SMTPResponse] = deque()
        self._error: aiosmtplib.SMTPException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.lost: Exception | None = None
        self.lost_seen = False

    def data_received(self, data: bytes) -> None:
        if self._error is not None:
            return
        self._buffer += data
        try:
            self._parse()
        except aiosmtplib.SMTPResponseException as error:
            self._error = error
        self._wake()

    def eof_received(self) -> bool:
        self._disconnected(None)
        return False  # the transport closes

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost, self.lost_seen = exc, True
        self._disconnected(exc)

    def _disconnected(self, exc: Exception | None) -> None:
        if self._error is None:
            self._error = aiosmtplib.SMTPServerDisconnected(f"the server closed the session{f': {exc}' if exc else ''}")
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _parse(self) -> None:
        buffer = self._buffer
        while True:
            end = buffer.find(b"\n", self._scanned)
            if end < 0:
                if len(buffer) - self._scanned > MAX_LINE:
                    raise aiosmtplib.SMTPResponseException(-1, "reply line too long")
                return
            line = bytes(buffer[self._scanned : end + 1])
            self._scanned = end + 1
            if len(line) > MAX_LINE or not line[:3].isdigit() or line[3:4] not in (b"-", b" ", b"\r", b"\n"):
                raise aiosmtplib.SMTPResponseException(-1, f"malformed reply line: {line[:64]!r}")
            self._lines.append(line)
            if len(self._lines) > MAX_LINES:
                raise aiosmtplib.SMTPResponseException(-1, "reply of too many lines")
            if line[3:4] == b"-":
                continue
            text = "\n".join(part[4:].strip(b" \t\r\n").decode("utf-8", "surrogateescape") for part in self._lines)
            self._ready.append(SMTPResponse(int(line[:3]), text))
            self._lines = []
            del buffer[: self._scanned]
            self._scanned = 0

    async def next(self) -> SMTPResponse:
        """The next reply; the caller bounds the wait."""
        while True:
            if self._ready:
                return self._ready.popleft()
            if self._error is not None:
                raise self._error
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None


def can_chunk(client: aiosmtplib.SMTP) -> bool:
    """The server offered CHUNKING (RFC 3030) in its latest EHLO (after ``can_pipeline``)."""
    return client.supports_extension("chunking")


def can_pipeline(client: aiosmtplib.SMTP, envelope_from: str, recipient: str) -> bool:
    """The server offered PIPELINING in its latest EHLO, and both addresses go as they are."""
    return (client.transport is not None and client.protocol is not None and client.supports_extension("pipelining")
            and _PLAIN_ADDRESS.fullmatch(envelope_from) is not None and _PLAIN_ADDRESS.fullmatch(recipient) is not None
            and recipient != "")


async def transaction(
    client: aiosmtplib.SMTP, envelope_from: str, recipient: str, wire: bytes, *,
    command_timeout: float, data_timeout: float, kept: bool, chunked: bool = False,
) -> SMTPResponse | None:
    """MAIL, RCPT and DATA in one write, then ``wire`` (the message in transmission form, with its
    final dot): the final reply, or aiosmtplib's exception for what the server refused, as its own
    ``mail``/``rcpt``/``data`` would raise. None when ``kept`` and the session turns out gone
    before MAIL is answered (closed by the peer while idle, or 421): nothing of the message
    was taken, so a fresh session is the same attempt.

    ``chunked`` (the server offers CHUNKING): ``wire`` is the message as it is (CRLF line ends,
    no dots doubled, no final dot), and it goes in the same write as the commands, after
    ``BDAT <size> LAST``. A server reads a chunk's octets whatever it answers (RFC 3030 2), so
    a refused MAIL or RCPT costs the message's bytes on the wire, not the session's sync. The
    message has gone before any reply: a session lost after the server stored it but before
    its replies came is sent again (as a lost reply to the final dot is, RFC 5321 6.1), and
    the receiving gateway takes it as the redelivery it is (the sender's Message-ID)."""
    transport = client.transport
    protocol = client.protocol
    assert isinstance(transport, asyncio.WriteTransport) and protocol is not None
    if transport.is_closing():  # the peer closed it while it was idle
        if kept:
            return None
        raise aiosmtplib.SMTPServerDisconnected("the server closed the session")
    replies = _Replies()
    transport.set_protocol(replies)
    try:
        envelope = b"MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\n" % (envelope_from.encode(), recipient.encode())
        if chunked:
            transport.write(b"%sBDAT %d LAST\r\n%s" % (envelope, len(wire), wire))
        else:
            transport.write(envelope + b"DATA\r\n")
        # chunked, the server may hold MAIL's reply until the message is stored (ours does)
        async with asyncio.timeout(data_timeout if chunked else command_timeout):
            try:
                mail = await replies.next()
            except aiosmtplib.SMTPServerDisconnected:
                if kept:
                    return None
                raise
            if mail.code == 421 and kept:
                return None
            rcpt = await replies.next()
            start = await replies.next()
        if mail.code != 250:
            raise aiosmtplib.SMTPSenderRefused(mail.code, mail.message, envelope_from)
        if rcpt.code not in (250, 251):
            raise aiosmtplib.SMTPRecipientRefused(rcpt.code, rcpt.message, recipient)
        if chunked:
            if start.code != 250:
                raise aiosmtplib.SMTPDataError(start.code, start.message)
            return start
        if start.code != 354:
            raise aiosmtplib.SMTPDataError(start.code, start.message)
        transport.write(wire)
        async with asyncio.timeout(data_timeout):
            done = await replies.next()
        if done.code != 250:
            raise aiosmtplib.SMTPDataError(done.code, done.message)
        return done
    except TimeoutError as timeout:  # this function's own deadlines: the caller's would be a cancellation here
        raise aiosmtplib.SMTPReadTimeoutError("timed out waiting for the server's reply") from timeout
    finally:
        transport.set_protocol(protocol)
        if replies.lost_seen:  # the transport told us, not aiosmtplib: it learns as if it had listened
            protocol.connection_lost(replies.lost)
