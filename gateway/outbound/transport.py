"""Handing sealed bytes to the next server over SMTP (aiosmtplib).

One session per destination: connect and read the greeting, EHLO, STARTTLS
when offered (and a fresh EHLO, RFC 3207 section 4.2), MAIL, RCPT, DATA, then
QUIT, or, with ``[outbound] session_idle``, the session is kept that many
seconds for the next message to the same destination (MAIL, RCPT, DATA over
it; RFC 5321 3.3 allows several transactions per session). A kept session the
peer closed meanwhile, or that answers 421 at MAIL, is replaced by a fresh
one within the same attempt: nothing of the message went over it. To a server
that offers PIPELINING (RFC 2920), MAIL, RCPT and DATA go in one write and
the message follows their replies (``pipelined``): two round trips a message.
The outcome is a value, never an exception:

- ``Sent(code)``: the server took responsibility for the message (2xx after DATA);
- ``Temporary``: 4xx, a refused or dropped connection, a timeout, or STARTTLS
  required by our configuration but not offered (RFC 5321 4.2.1: 4yz is
  "try again"; a dead server may come back);
- ``Permanent``: 5xx at MAIL, RCPT or DATA (RFC 5321 4.2.1: 5yz, "do not
  repeat the exact request").

Destinations are tried in order (RFC 5321 5.1: the next MX when one cannot
be reached or answers 4xx) until one gives ``Sent`` or ``Permanent``.
Every step has a named timeout (``OutboundSettings``), and the whole session
a bound of their sum, which the job's lease outlasts.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import aiosmtplib

from . import pipelined
from .queue import Reason
from .routes import Destination
from .settings import OutboundSettings, TlsMode

MESSAGES_PER_SESSION = 100
"""Messages over one kept session before it is ended and a fresh one opened: under the
per-connection limits servers apply (Exim's smtp_accept_max_per_connection is 1000 by
default), and the peer's EHLO and certificate are read again now and then."""

QUIT_TIMEOUT = 5.0
"""How long a goodbye is waited for: the messages are delivered, nothing depends on the reply."""

MAX_REPLY_TEXT = 500
"""What is kept of a server's reply text: enough to read, bounded against a chatty peer."""


@dataclass(frozen=True, slots=True)
class Sent:
    code: int
    text: str
    destination: Destination


@dataclass(frozen=True, slots=True)
class Temporary:
    reason: Reason
    code: int | None
    text: str
    destination: Destination | None = None


@dataclass(frozen=True, slots=True)
class Permanent:
    reason: Reason
    code: int | None
    text: str
    destination: Destination | None = None


Delivery = Sent | Temporary | Permanent


class Transport(Protocol):
    async def deliver(
        self, destinations: Sequence[Destination], envelope_from: str, recipient: str, data: bytes
    ) -> Delivery: ...


class _TlsMissing(Exception):
    """STARTTLS required, not offered."""


def _tls_context(settings: OutboundSettings) -> ssl.SSLContext:
    if settings.tls_ca_file is not None:
        return ssl.create_default_context(cafile=str(settings.tls_ca_file))
    # opportunistic security (RFC 7435): encrypt without authenticating the server;
    # the message itself is signed and encrypted end to end
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _text(message: str) -> str:
    return " ".join(message.split())[:MAX_REPLY_TEXT]


@dataclass(slots=True)
class _Kept:
    """A session that delivered and was kept open for the next message to the same destination."""

    client: aiosmtplib.SMTP
    sent: int
    idle_since: float


class SmtpTransport:
    """One session per attempt; with ``session_idle`` > 0, a session that delivered is kept for
    that many seconds and the next message to the same destination goes over it (MAIL, RCPT,
    DATA: no connect, greeting, EHLO or TLS handshake). ``close`` ends the kept sessions."""

    def __init__(self, settings: OutboundSettings) -> None:
        self.settings = settings
        self._tls = _tls_context(settings)
        self._kept: dict[Destination, list[_Kept]] = {}
        self._reaper: asyncio.TimerHandle | None = None
        self._quitting: set[asyncio.Task[None]] = set()
        self._closed = False

    async def deliver(
        self, destinations: Sequence[Destination], envelope_from: str, recipient: str, data: bytes
    ) -> Delivery:
        if not destinations:
            return Temporary(Reason.CONNECTION, None, "no destination to try")
        last: Temporary | None = None
        for destination in destinations:
            outcome = await self.deliver_to(destination, envelope_from, recipient, data)
            if not isinstance(outcome, Temporary):
                return outcome
            last = outcome
        assert last is not None
        if len(destinations) > 1:
            return Temporary(last.reason, last.code, f"{len(destinations)} destinations tried; last: {last.text}",
                             last.destination)
        return last

    async def deliver_to(self, destination: Destination, envelope_from: str, recipient: str, data: bytes) -> Delivery:
        kept = self._take(destination)
        if kept is not None:
            outcome = await self._attempt(kept.client, destination, envelope_from, recipient, data, kept.sent)
            if outcome is not None:
                return outcome
            # the kept session had gone (closed by the peer while idle, or 421 at MAIL): nothing
            # of this message was sent over it, so a fresh session is this same attempt
        s = self.settings
        client = aiosmtplib.SMTP(
            hostname=destination.address, port=destination.port, local_hostname=s.helo,
            timeout=s.command_timeout, start_tls=False, use_tls=False,
        )
        outcome = await self._attempt(client, destination, envelope_from, recipient, data, None)
        assert outcome is not None  # only a kept session can turn out stale
        return outcome

    async def _attempt(
        self, client: aiosmtplib.SMTP, destination: Destination, envelope_from: str, recipient: str, data: bytes,
        sent_before: int | None,
    ) -> Delivery | None:
        """One message over ``client`` (fresh when ``sent_before`` is None); None when a kept
        session turned out stale at MAIL."""
        s = self.settings
        keep = False
        try:
            async with asyncio.timeout(s.delivery_timeout):
                if sent_before is None:
                    await self._open(client, destination)
                canonical = canonical_form(data)
                if canonical is not None and pipelined.can_pipeline(client, envelope_from, recipient):
                    chunked = pipelined.can_chunk(client)
                    reply = await pipelined.transaction(
                        client, envelope_from, recipient, canonical if chunked else stuffed(canonical),
                        command_timeout=s.command_timeout, data_timeout=s.data_timeout, kept=sent_before is not None,
                        chunked=chunked)
                    if reply is None:
                        return None
                else:
                    if sent_before is None:
                        await client.mail(envelope_from)
                    elif not await self._mail_over_kept(client, envelope_from):
                        return None
                    await client.rcpt(recipient)
                    reply = await _data(client, data, s.data_timeout)
            keep = await self._after_delivery(client, destination, (sent_before or 0) + 1)
            return Sent(reply.code, f"{destination}: {reply.code} {_text(reply.message)}", destination)
        except _TlsMissing:
            return Temporary(Reason.TLS_UNAVAILABLE, None, f"{destination} does not offer STARTTLS, which is required",
                             destination)
        except aiosmtplib.SMTPResponseException as exc:
            # MAIL, RCPT or DATA refused (SMTPSenderRefused, SMTPRecipientRefused, SMTPDataError), or a bad greeting
            text = f"{destination}: {exc.code} {_text(exc.message)}"
            if 400 <= exc.code < 500:
                return Temporary(Reason.SMTP_TEMPORARY, exc.code, text, destination)
            if 500 <= exc.code < 600:
                return Permanent(Reason.SMTP_PERMANENT, exc.code, text, destination)
            return Temporary(Reason.CONNECTION, exc.code, f"{text} (not a valid SMTP reply)", destination)
        except (aiosmtplib.SMTPTimeoutError, TimeoutError) as exc:
            return Temporary(Reason.TIMEOUT, None, f"{destination}: timed out ({_text(str(exc)) or 'session'})",
                             destination)
        except ssl.SSLError as exc:
            return Temporary(Reason.TLS_UNAVAILABLE, None, f"{destination}: TLS failed: {_text(str(exc))}", destination)
        except (aiosmtplib.SMTPException, OSError) as exc:
            # refused, reset, unreachable, disconnected, STARTTLS errors the library names generically
            return Temporary(Reason.CONNECTION, None, f"{destination}: {_text(str(exc)) or type(exc).__name__}",
                             destination)
        except ValueError as exc:
            # aiosmtplib refuses addresses that could inject SMTP parameters: no attempt can succeed
            return Permanent(Reason.SMTP_PERMANENT, None, f"unusable address: {_text(str(exc))}", destination)
        finally:
            if not keep:
                client.close()

    async def _open(self, client: aiosmtplib.SMTP, destination: Destination) -> None:
        s = self.settings
        await client.connect(timeout=s.connect_timeout)
        await client.ehlo()
        if client.supports_extension("starttls"):
            await client.starttls(tls_context=self._tls, server_hostname=destination.host)
            await client.ehlo()
        elif destination.tls is TlsMode.REQUIRED:
            raise _TlsMissing

    @staticmethod
    async def _mail_over_kept(client: aiosmtplib.SMTP, envelope_from: str) -> bool:
        """MAIL over a kept session; False when the session is gone: the peer closed it while
        it was idle, or answered 421 (RFC 5321 3.8: closing the transmission channel)."""
        try:
            await client.mail(envelope_from)
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code != 421:
                raise
            return False
        except (aiosmtplib.SMTPServerDisconnected, ConnectionError):
            return False
        return True

    async def _after_delivery(self, client: aiosmtplib.SMTP, destination: Destination, sent: int) -> bool:
        """Keep the session for the next message to ``destination`` (True), or say goodbye."""
        idle = self.settings.session_idle
        if idle > 0 and sent < MESSAGES_PER_SESSION and not self._closed and client.is_connected:
            self._kept.setdefault(destination, []).append(_Kept(client, sent, asyncio.get_running_loop().time()))
            if self._reaper is None:
                self._reaper = asyncio.get_running_loop().call_later(idle, self._reap)
            return True
        # the message is delivered; a lost QUIT changes nothing (RFC 5321 4.1.1.10)
        with contextlib.suppress(aiosmtplib.SMTPException, OSError):
            await client.quit(timeout=QUIT_TIMEOUT)
        return False

    def _take(self, destination: Destination) -> _Kept | None:
        """The most recently used live session to ``destination``, if one is kept."""
        kept = self._kept.get(destination)
        now = asyncio.get_running_loop().time()
        while kept:
            session = kept.pop()
            if now - session.idle_since < self.settings.session_idle and session.client.is_connected:
                return session
            self._goodbye(session.client)
        return None

    def _reap(self) -> None:
        """End the sessions idle for ``session_idle``; come back while any is kept."""
        self._reaper = None
        now = asyncio.get_running_loop().time()
        for destination, kept in list(self._kept.items()):
            live = [k for k in kept if now - k.idle_since < self.settings.session_idle and k.client.is_connected]
            for session in kept:
                if session not in live:
                    self._goodbye(session.client)
            if live:
                self._kept[destination] = live
            else:
                del self._kept[destination]
        if self._kept:
            self._reaper = asyncio.get_running_loop().call_later(self.settings.session_idle, self._reap)

    def _goodbye(self, client: aiosmtplib.SMTP) -> None:
        async def quit_() -> None:
            try:
                with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
                    await client.quit(timeout=QUIT_TIMEOUT)
            finally:
                client.close()

        task = asyncio.get_running_loop().create_task(quit_())
        self._quitting.add(task)
        task.add_done_callback(self._quitting.discard)

    async def close(self) -> None:
        """QUIT every kept session (serve's shutdown, after the delivery loop has stopped)."""
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        for kept in self._kept.values():
            for session in kept:
                self._goodbye(session.client)
        self._kept.clear()
        if self._quitting:
            await asyncio.gather(*self._quitting, return_exceptions=True)


def canonical_form(data: bytes) -> bytes | None:
    """``data`` with every line ended by CRLF, the last one too, as BDAT sends it; or None when
    its line ends are not all CRLF (left to aiosmtplib's rewriting).

    What we send is nearly always CRLF throughout already (sealed base64, our own MDNs and
    notices): three counts, against aiosmtplib's two regular expressions over every byte
    (8 ns a byte each; 3-4% of a sending gateway's CPU, docs/outbound.md)."""
    crlf = data.count(b"\r\n")
    if data.count(b"\r") != crlf or data.count(b"\n") != crlf:
        return None
    return data if data.endswith(b"\r\n") else data + b"\r\n"


def stuffed(canonical: bytes) -> bytes:
    """A ``canonical_form`` message as it goes after DATA (RFC 5321 4.5.2: a line's leading period
    doubled, then the final dot)."""
    wire = canonical.replace(b"\r\n.", b"\r\n..")
    if wire.startswith(b"."):
        wire = b"." + wire
    return wire + b".\r\n"


def transmission_form(data: bytes) -> bytes | None:
    """``data`` as it goes after DATA, or None when its line ends are not all CRLF."""
    canonical = canonical_form(data)
    return None if canonical is None else stuffed(canonical)


async def _data(client: aiosmtplib.SMTP, data: bytes, timeout: float) -> aiosmtplib.SMTPResponse:
    """DATA, then the message in transmission form, through aiosmtplib's public protocol calls
    (``execute_command``, ``protocol.write``, ``protocol.read_response``): what ``SMTP.data``
    does, less its rewriting of bytes that need none."""
    wire = transmission_form(data)
    if wire is None or client.protocol is None:
        return await client.data(data, timeout=timeout)
    start = await client.execute_command(b"DATA", timeout=timeout)
    if start.code != 354:
        raise aiosmtplib.SMTPDataError(start.code, start.message)
    protocol = client.protocol
    if protocol is None:  # the connection went between the 354 and now
        raise aiosmtplib.SMTPServerDisconnected("the server closed the session after DATA")
    protocol.write(wire)  # read_response marks a reply as awaited before the loop can run again
    reply = await protocol.read_response(timeout=timeout)
    if reply.code != 250:
        raise aiosmtplib.SMTPDataError(reply.code, reply.message)
    return reply
