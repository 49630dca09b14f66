"""The SMTP server of ``directgw serve``: listening, sessions, pipeline calls, graceful close.

The protocol itself is session.py: a bytes-level ``asyncio.Protocol`` (one
per connection) that speaks SMTP and enforces ``SmtpLimits``. This module
holds what the sessions share: the listener, the admission counts, the
replies encoded once per server (greeting, EHLO), and the pipeline calls.
A pipeline call (``message()``, after the final dot) is the server's task,
not the session's: a session may end under it (a client that vanishes), the
call still runs to its end exactly once, and an exception in it answers
451 4.3.0 and goes to the log, never to the peer.

It replaced aiosmtpd (1.4.6), which cost 5-7x the CPU per message of a
bytes-level layer (shared/PERFORMANCE.md; docs/smtp.md has this edge's
figures), and needed overrides for most of what the edge must do.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from typing import cast

import structlog

from . import auth as sasl
from .admission import Admission
from .interface import Authenticator, Pipeline, Received, SmtpReply, Submission
from .limits import SmtpLimits
from .replies import SHUTTING_DOWN, TRY_LATER
from .session import COMMAND_NAMES, Session, line_limits

log = structlog.get_logger("directgw.smtp")


class SmtpServer:
    """A running SMTP edge: ``port``, ``sessions``, and ``close()`` to stop gracefully."""

    def __init__(
        self,
        pipeline: Pipeline,
        limits: SmtpLimits,
        *,
        hostname: str,
        tls_context: ssl.SSLContext | None,
        loop: asyncio.AbstractEventLoop,
        authenticator: Authenticator | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.limits = limits
        # The submission port: AUTH required, MAIL FROM judged by the pipeline. None on port 25.
        self.authenticator = authenticator
        self.submission = cast(Submission, pipeline) if authenticator is not None else None
        self.hostname = hostname
        self.tls_context = tls_context
        self.loop = loop
        self.admission = Admission(limits.max_sessions, limits.max_sessions_per_client)
        # What every session says the same way, encoded once.
        self.greeting = f"220 {hostname} ESMTP\r\n".encode("ascii")  # no software version
        self.helo_reply = f"250 {hostname}\r\n".encode("ascii")
        self._ehlo = (self._ehlo_lines(tls=False), self._ehlo_lines(tls=True))
        commands = [name for name in COMMAND_NAMES if name != "EXPN"]
        if authenticator is None:
            commands.remove("AUTH")
        if tls_context is None:
            commands.remove("STARTTLS")
        self.help_reply = f"250 2.0.0 Supported commands: {' '.join(commands)}\r\n".encode("ascii")
        self.command_limit = limits.max_command_line - 2  # compared without the CRLF
        self.line_limit = line_limits(limits.max_command_line)
        # No line longer than this is ever kept while it arrives.
        self.longest_line = max(limits.max_command_line + 26, sasl.MAX_AUTH_LINE)
        self.closing = False
        self._sessions: set[Session] = set()
        # Pipeline calls are the server's tasks, not the sessions': a session
        # may end under one (the client vanished), the call must still finish.
        self._inflight: set[asyncio.Task[SmtpReply]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._listener: asyncio.Server | None = None
        self._port = 0

    def _ehlo_lines(self, *, tls: bool) -> bytes:
        lines = [self.hostname, "PIPELINING", f"SIZE {self.limits.max_message_size}", "8BITMIME",
                 "ENHANCEDSTATUSCODES", "CHUNKING"]
        if self.tls_context is not None and not tls:
            lines.append("STARTTLS")
        if self.authenticator is not None and tls:
            # AUTH only over TLS, and never on port 25.
            lines.append("AUTH " + " ".join(sasl.MECHANISMS))
        lines.append("HELP")
        return "".join(
            f"250{' ' if n == len(lines) - 1 else '-'}{line}\r\n" for n, line in enumerate(lines)
        ).encode("ascii")

    def ehlo_reply(self, *, tls: bool) -> bytes:
        return self._ehlo[tls]

    @property
    def port(self) -> int:
        return self._port

    @property
    def sessions(self) -> int:
        return len(self._sessions)

    def farewell(self, reply: SmtpReply) -> bytes:
        # RFC 5321 4.2: a 421 names the server ("421 <domain> Service not available").
        return f"{reply.code} {reply.enhanced} {self.hostname} {reply.text}\r\n".encode("ascii")

    async def close(self, grace: float | None = None) -> None:
        """Stop accepting; let sessions in a transaction finish within ``grace`` seconds; then close.

        Idle sessions get 421 4.3.2 at once, busy ones after their current
        message. Pipeline calls still running after the grace are cancelled
        (the pipeline commits whole or not at all, and the client, without a
        250, sends again)."""
        grace = self.limits.close_grace if grace is None else grace
        self.closing = True
        if self._listener is not None:
            self._listener.close()
        for session in list(self._sessions):
            if not session.in_transaction():
                session.shut(SHUTTING_DOWN)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), grace)
        for session in list(self._sessions):
            session.shut(SHUTTING_DOWN)
        for task in list(self._inflight):
            task.cancel()
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
        if self._listener is not None:
            await self._listener.wait_closed()
        # Let the closed transports deliver connection_lost before returning.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), 1.0)

    # -- bookkeeping for the sessions --

    def _serve(self, listener: asyncio.Server) -> None:
        self._listener = listener
        self._port = int(listener.sockets[0].getsockname()[1])

    def session_opened(self, session: Session) -> None:
        self._sessions.add(session)
        self._idle.clear()

    def session_closed(self, session: Session) -> None:
        self._sessions.discard(session)
        self._check_idle()

    def _check_idle(self) -> None:
        if not self._sessions and not self._inflight:
            self._idle.set()

    def start_message(self, received: Received) -> asyncio.Task[SmtpReply]:
        task = self.loop.create_task(self._message(received))
        self._inflight.add(task)
        self._idle.clear()
        task.add_done_callback(self._message_done)
        return task

    def _message_done(self, task: asyncio.Task[SmtpReply]) -> None:
        self._inflight.discard(task)
        self._check_idle()

    async def _message(self, received: Received) -> SmtpReply:
        try:
            return await self.pipeline.message(received)
        except Exception:
            # A bug or an outage is never a permanent rejection, and the peer
            # never sees internals (STYLE 4): the sender keeps the message and retries.
            log.exception(
                "smtp.pipeline_failed",
                peer=received.session.peer,
                mail_from=received.mail_from,
                recipients=len(received.rcpt_to),
                size=len(received.data),
            )
            return TRY_LATER


async def start_smtp(
    pipeline: Pipeline,
    limits: SmtpLimits | None = None,
    *,
    host: str | None = None,
    port: int | None = None,
    tls_context: ssl.SSLContext | None = None,
    sock: socket.socket | None = None,
    hostname: str | None = None,
    authenticator: Authenticator | None = None,
) -> SmtpServer:
    """Serve SMTP on ``host:port`` or on a listening ``sock`` (see ``listening_socket``).

    ``tls_context`` offers STARTTLS (not required: port 25, RFC 3207 4);
    ``hostname`` names the server in the greeting and in EHLO (default: the
    machine's fully qualified name). With ``authenticator`` this is the
    submission port: use ``start_submission``."""
    if (sock is None) == (host is None and port is None) or (sock is None and port is None):
        raise ValueError("give either host and port, or sock")
    if authenticator is not None and tls_context is None:
        raise ValueError("the submission port needs a TLS certificate: AUTH is offered only over TLS")
    loop = asyncio.get_running_loop()
    if hostname is None:
        hostname = await loop.run_in_executor(None, socket.getfqdn)  # may ask DNS: not on the loop
    server = SmtpServer(
        pipeline, limits or SmtpLimits(), hostname=hostname, tls_context=tls_context, loop=loop,
        authenticator=authenticator,
    )
    if sock is not None:
        listener = await loop.create_server(lambda: Session(server), sock=sock)
    else:
        assert port is not None
        listener = await loop.create_server(lambda: Session(server), host, port, reuse_address=True)
    server._serve(listener)
    log.info("smtp.listening", port=server.port, tls=tls_context is not None, submission=authenticator is not None)
    return server


async def start_submission(
    pipeline: Submission,
    authenticator: Authenticator,
    limits: SmtpLimits | None = None,
    *,
    tls_context: ssl.SSLContext,
    host: str | None = None,
    port: int | None = None,
    sock: socket.socket | None = None,
    hostname: str | None = None,
) -> SmtpServer:
    """The submission port (587, RFC 6409): the same edge, with STARTTLS before AUTH
    (PLAIN, LOGIN), AUTH before MAIL, and MAIL FROM judged by ``pipeline.sender``."""
    return await start_smtp(pipeline, limits, host=host, port=port, tls_context=tls_context, sock=sock,
                            hostname=hostname, authenticator=authenticator)
