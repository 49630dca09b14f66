"""Handing sealed bytes to the next server over SMTP (aiosmtplib).

One session per attempt and destination: connect and read the greeting,
EHLO, STARTTLS when offered (and a fresh EHLO, RFC 3207 section 4.2), MAIL,
RCPT, DATA, QUIT. The outcome is a value, never an exception:

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

from .queue import Reason
from .routes import Destination
from .settings import OutboundSettings, TlsMode

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


class SmtpTransport:
    def __init__(self, settings: OutboundSettings) -> None:
        self.settings = settings
        self._tls = _tls_context(settings)

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
        s = self.settings
        client = aiosmtplib.SMTP(
            hostname=destination.address, port=destination.port, local_hostname=s.helo,
            timeout=s.command_timeout, start_tls=False, use_tls=False,
        )
        try:
            async with asyncio.timeout(s.delivery_timeout):
                return await self._session(client, destination, envelope_from, recipient, data)
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
            client.close()

    async def _session(
        self, client: aiosmtplib.SMTP, destination: Destination, envelope_from: str, recipient: str, data: bytes
    ) -> Delivery:
        s = self.settings
        await client.connect(timeout=s.connect_timeout)
        await client.ehlo()
        if client.supports_extension("starttls"):
            await client.starttls(tls_context=self._tls, server_hostname=destination.host)
            await client.ehlo()
        elif destination.tls is TlsMode.REQUIRED:
            raise _TlsMissing
        await client.mail(envelope_from)
        await client.rcpt(recipient)
        reply = await client.data(data, timeout=s.data_timeout)
        # the message is delivered; a lost QUIT changes nothing (RFC 5321 4.1.1.10)
        with contextlib.suppress(aiosmtplib.SMTPException, OSError):
            await client.quit()
        return Sent(reply.code, f"{destination}: {reply.code} {_text(reply.message)}", destination)
