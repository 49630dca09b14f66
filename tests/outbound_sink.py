"""A real SMTP server on loopback for the outbound tests: aiosmtpd, on the
test's own event loop, recording what it accepts and answering what it is
told to (4xx, 5xx, a slow final dot), with or without STARTTLS.

    sink = await start_sink(tls=tls_context)      # port 0: a free one
    sink.data_replies.append("451 4.3.0 busy")    # the next DATA answers this (mail_replies, rcpt_replies too)
    sink = await start_sink(pipelining=True)      # offers PIPELINING (aiosmtpd answers each command alone)
    ... sink.received[0].data ...
    await sink.close()
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from aiosmtpd.smtp import SMTP

from .pki import org_leaf, root


@dataclass(frozen=True)
class Accepted:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes = field(repr=False)
    tls: bool


class _Handler:
    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # aiosmtpd's hook names
        if self.sink.mail_replies:
            return self.sink.mail_replies.pop(0)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # aiosmtpd's hook name
        session.host_name = hostname
        if self.sink.pipelining:  # aiosmtpd reads pipelined commands line by line and answers each alone
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_QUIT(self, server, session, envelope):
        self.sink.quits += 1
        return "221 Bye"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # aiosmtpd calls its hooks by these names
        if self.sink.rcpt_replies:
            return self.sink.rcpt_replies.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        self.sink.data_started.set()
        if self.sink.data_delay:
            await asyncio.sleep(self.sink.data_delay)
        reply = self.sink.data_replies.pop(0) if self.sink.data_replies else "250 2.0.0 stored"
        if reply.startswith("250"):
            self.sink.received.append(
                Accepted(envelope.mail_from, tuple(envelope.rcpt_tos), envelope.original_content,
                         session.ssl is not None)
            )
        return reply


@dataclass
class Sink:
    received: list[Accepted] = field(default_factory=list)
    mail_replies: list[str] = field(default_factory=list)
    rcpt_replies: list[str] = field(default_factory=list)
    data_replies: list[str] = field(default_factory=list)
    data_delay: float = 0.0
    pipelining: bool = False
    """Offer PIPELINING in EHLO."""
    chunks: list[bytes] = field(default_factory=list)
    """What the sessions read, as each read gave it: shows whether commands came in one write."""
    quits: int = 0
    data_started: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0
    _server: asyncio.Server | None = None
    _sessions: list[SMTP] = field(default_factory=list)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for session in self._sessions:  # Python 3.11 has no Server.close_clients
                if session.transport is not None:
                    session.transport.close()
            await self._server.wait_closed()


class _Recording(SMTP):
    def __init__(self, sink: Sink, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._sink = sink

    def data_received(self, data: bytes) -> None:
        self._sink.chunks.append(data)
        super().data_received(data)


async def start_sink(*, tls: ssl.SSLContext | None = None, pipelining: bool = False) -> Sink:
    sink = Sink(pipelining=pipelining)
    handler = _Handler(sink)
    loop = asyncio.get_running_loop()

    def session() -> SMTP:
        protocol = _Recording(sink, handler, hostname="sink.test", tls_context=tls, require_starttls=False, loop=loop)
        sink._sessions.append(protocol)
        return protocol

    server = await loop.create_server(session, "127.0.0.1", 0)
    sink._server = server
    sink.port = server.sockets[0].getsockname()[1]
    return sink


def server_tls(directory: Path, name: str = "sink.test") -> ssl.SSLContext:
    """A server context with a throwaway certificate for ``name``; its CA is
    written to ``directory / "sink-ca.pem"`` for clients that verify."""
    authority = root("Sink CA")
    leaf = org_leaf(authority, name)
    cert, key = directory / "sink.crt", directory / "sink.key"
    cert.write_bytes(leaf.pem)
    key.write_bytes(leaf.key_pem())
    key.chmod(0o600)
    (directory / "sink-ca.pem").write_bytes(authority.pem)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context
