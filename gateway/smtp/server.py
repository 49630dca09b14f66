"""The SMTP protocol layer of ``directgw serve``: aiosmtpd, with what it lacks supplied here.

This is the only module in the project that imports aiosmtpd, so the
protocol layer can be measured against another and replaced
(shared/PERFORMANCE.md). It speaks SMTP, enforces ``SmtpLimits``, and asks
the ``Pipeline`` (interface.py) two questions: may this recipient be given
(RCPT), and what becomes of this message (the final dot). What aiosmtpd
1.4.6 does not do, and where it is done:

- DATA is read by ``_Session.smtp_DATA`` with framing.py, in blocks rather
  than with a coroutine per line: the final dot is ``.<CRLF>`` at a line
  start (RFC 5321 4.1.1.4), bytes must keep coming within ``data_timeout``,
  the size limit holds while reading (552 5.3.4 after the dot, RFC 1870),
  and a bare CR or LF anywhere (SMTP smuggling) refuses the whole message
  (data.py): it is never split into two, and nothing after a false
  terminator runs as a command.
- SIZE is advertised and ``MAIL ... SIZE=`` over it refused at MAIL; more
  recipients than ``max_recipients`` get 452 4.5.3 (handler hooks).
- PIPELINING is advertised (RFC 2920): aiosmtpd reads each command line from
  one buffer, so commands sent together already run in order. AUTH is never
  offered on port 25.
- A client that half-closes after the final dot makes aiosmtpd cancel the
  session. The pipeline's ``message()`` runs in a task of the server's own,
  shielded and referenced, so it runs to its end exactly once; the reply is
  still written if the socket can carry it.
- An exception in the pipeline or the session answers 451 4.3.0 and goes to
  the log; aiosmtpd's default answers a permanent 500 with the exception text.
- Session limits (421 4.7.0 as the greeting), a 421 on timeouts, and a
  graceful close. Worker processes share a port through sockets.py.
- The submission port (``start_submission``): AUTH PLAIN and LOGIN only
  after STARTTLS, MAIL/RCPT/DATA only after AUTH (530 5.7.0), MAIL FROM
  judged by the pipeline (``Submission.sender``). aiosmtpd's authenticator
  is called synchronously on the event loop, and a password check is
  CPU-heavy, so ``smtp_AUTH`` runs the exchange itself (auth.py) and awaits
  the ``Authenticator``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import ssl
from typing import Any, cast

import structlog
from aiosmtpd.smtp import SMTP, Envelope, TLSSetupException, syntax
from aiosmtpd.smtp import Session as AioSession

from . import auth as sasl
from .admission import Admission
from .data import data_problem, unstuff
from .framing import read_message
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
from .paths import simple_path
from .replies import (
    AUTH_ALREADY,
    AUTH_CANCELLED,
    AUTH_INVALID,
    AUTH_LINE_TOO_LONG,
    AUTH_LOCKED_OUT,
    AUTH_MALFORMED,
    AUTH_MECHANISM,
    AUTH_NEEDS_TLS,
    AUTH_NOT_BASE64,
    AUTH_OK,
    AUTH_SYNTAX,
    AUTH_UNAVAILABLE,
    DATA_REFUSED,
    DATA_SYNTAX,
    GO_AHEAD,
    NEED_RECIPIENT,
    NO_AUTH,
    RECIPIENT_OK,
    REFUSED,
    SENDER_OK,
    SHUTTING_DOWN,
    TIMED_OUT,
    TOO_BIG,
    TOO_MANY_RECIPIENTS,
    TRY_LATER,
)

log = structlog.get_logger("directgw.smtp")

# aiosmtpd sizes its StreamReader's buffer limit by this attribute. The DATA
# reader (framing.py) takes up to this many bytes per step (asyncio hands over, by
# LimitOverrunError, what cannot hold the terminator), so a 10 KB message
# costs one step; aiosmtpd's command loop reads at most this much of an
# over-long command line before refusing it (500).
_READ_BLOCK = 64 * 1024

# RFC 1870 6: with SIZE, the MAIL command line may be 26 octets longer.
_SIZE_PARAMETER_ROOM = 26


class SmtpServer:
    """A running SMTP edge: ``port``, and ``close()`` to stop gracefully."""

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
        self.hooks = _Hooks(self)
        # What aiosmtpd finds by reflection at each connection, found once (see _Session.__init__).
        self.hook_table = {
            name[len("handle_") :]: getattr(self.hooks, name)
            for name in dir(self.hooks)
            if name.startswith("handle_")
        }
        self.commands = tuple(
            name[len("smtp_") :] for name in dir(_Session) if name.startswith("smtp_")
        )
        self.closing = False
        self._sessions: set[_Session] = set()
        # Pipeline calls are the server's tasks, not the sessions': a session
        # may be cancelled under one (half-close), the call must still finish.
        self._inflight: set[asyncio.Task[SmtpReply]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._listener: asyncio.Server | None = None
        self._port = 0

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

    def session_opened(self, session: _Session) -> None:
        self._sessions.add(session)
        self._idle.clear()

    def session_closed(self, session: _Session) -> None:
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


class _Hooks:
    """aiosmtpd's handler hooks: what the edge decides at EHLO, MAIL and RCPT."""

    def __init__(self, server: SmtpServer) -> None:
        self._server = server

    async def handle_EHLO(
        self,
        smtp: _Session,
        session: AioSession,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname  # aiosmtpd leaves this to the hook when there is one
        # aiosmtpd lists AUTH once TLS is up; port 25 takes no AUTH, and the
        # submission port offers it only over TLS, as its own line.
        offered = [line for line in responses[:-1] if not line[4:].startswith("AUTH")]
        if self._server.authenticator is not None and smtp.tls_active():
            offered.append("250-AUTH " + " ".join(sasl.MECHANISMS))
        offered.append(f"250-SIZE {self._server.limits.max_message_size}")
        offered.append("250-PIPELINING")
        offered.append(responses[-1])
        return offered

    async def handle_MAIL(
        self,
        smtp: _Session,
        session: AioSession,
        envelope: Envelope,
        address: str,
        options: list[str],
    ) -> str:
        # aiosmtpd has checked the parameters' syntax (SIZE is digits) and upper-cased them.
        for option in options:
            if (
                option.startswith("SIZE=")
                and int(option[5:]) > self._server.limits.max_message_size
            ):
                return TOO_BIG.line()
        if self._server.submission is not None:
            # aiosmtpd has refused MAIL before AUTH (530 5.7.0): the session has an account here.
            refusal = await self._server.submission.sender(smtp.session_info(), _reverse_path(address))
            if refusal is not None and not refusal.positive:
                return refusal.line()
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return SENDER_OK.line()

    async def handle_RCPT(
        self,
        smtp: _Session,
        session: AioSession,
        envelope: Envelope,
        address: str,
        options: list[str],
    ) -> str:
        if len(envelope.rcpt_tos) >= self._server.limits.max_recipients:
            return TOO_MANY_RECIPIENTS.line()
        reply = await self._server.pipeline.recipient(
            smtp.session_info(), _reverse_path(envelope.mail_from), address
        )
        # Never an open relay: a recipient is added only when the pipeline
        # accepts it (None, or a positive reply, whose text the client sees).
        if reply is None:
            reply = RECIPIENT_OK
        if reply.positive:
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(options)
        return reply.line()


class _Session(SMTP):
    """One SMTP connection: aiosmtpd's session with the edge's DATA reader and limits."""

    line_length_limit = _READ_BLOCK

    def __init__(self, server: SmtpServer) -> None:
        # aiosmtpd's SMTP.__init__ finds AUTH mechanisms, handler hooks and
        # commands by reflection (inspect.getmembers, dir) on every
        # connection: 0.3-0.5 ms measured here, as much as the rest of a
        # small message's SMTP handling. What it finds is the same for every
        # session, so it is found once (server.commands, server.hook_table)
        # and the rest of its state is set here as aiosmtpd's __init__ would
        # set it (reference_session): a test compares the two.
        limits = server.limits
        loop = server.loop
        asyncio.StreamReaderProtocol.__init__(
            self,
            asyncio.StreamReader(limit=self.line_length_limit, loop=loop),
            client_connected_cb=self._cb_client_connected,
            loop=loop,
        )
        self.__ident__ = "ESMTP"  # the greeting names no software version
        self.loop = loop
        self.event_handler = server.hooks
        self.data_size_limit = None  # SIZE is advertised and enforced here, with enhanced codes
        self.enable_SMTPUTF8 = False
        self._decode_data = False
        self.hostname = server.hostname
        self.tls_context = server.tls_context
        self.require_starttls = False  # RFC 3207 4: not on a publicly referenced server
        self._timeout_duration = limits.command_timeout
        self._timeout_handle = None
        self._tls_handshake_okay = True
        self._tls_protocol = None
        self._original_transport = None
        self.session = None
        self.envelope = None
        self.transport = None
        self._handler_coroutine = None
        self._auth_require_tls = True
        self._proxy_timeout = None
        self._authenticator = None
        self._auth_callback = None
        # The submission port: MAIL, RCPT and DATA wait for AUTH (aiosmtpd's check_auth_needed: 530 5.7.0).
        self._auth_required = server.authenticator is not None
        self._auth_methods = {}  # aiosmtpd's own AUTH is not used: smtp_AUTH below
        self._handle_hooks = server.hook_table
        self._ehlo_hook_ver = "new"
        self._smtp_methods = {name: getattr(self, "smtp_" + name) for name in server.commands}
        self._enforce_call_limit = False
        self._server = server
        self._client: str | None = None  # the admitted peer address, until released
        self._peer = ""  # the peer address, for the log
        self._refused = False
        self._in_data = False  # from DATA to the reply to the final dot
        self._receiving = False  # reading the message itself (the DATA timeout applies)
        self._last_received = 0.0  # loop time of the last bytes from the client
        self._continued: list[bytes] = []  # the first lines of a multi-line reply (push)
        # aiosmtpd keeps these limits in a dict on the class, shared by every
        # session, and adds 26 to MAIL's at each EHLO; a dict of our own stays put.
        # It compares the command line without its CRLF.
        command = limits.max_command_line - 2
        self.command_size_limits = collections.defaultdict(
            lambda: command, {"MAIL": command + _SIZE_PARAMETER_ROOM, "AUTH": sasl.MAX_AUTH_LINE - 2}
        )

    # -- the connection --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # STARTTLS calls this again with the TLS transport: admission is for the TCP connection only.
        if self._original_transport is None and self._client is None:
            client = self._peer = _peer_address(transport.get_extra_info("peername"))
            if self._server.closing:
                self._refuse(transport, client, SHUTTING_DOWN)
                return
            refusal = self._server.admission.admit(client)
            if refusal is not None:
                log.info("smtp.refused", peer=client, reason=refusal.value)
                self._refuse(transport, client, REFUSED[refusal])
                return
            self._client = client
            self._server.session_opened(self)
        super().connection_made(transport)

    def _refuse(self, transport: asyncio.BaseTransport, client: str, reply: SmtpReply) -> None:
        # RFC 5321 3.1: a server that will not serve answers 421 in place of its greeting.
        self._refused = True
        cast(asyncio.WriteTransport, transport).write(self._server.farewell(reply))
        transport.close()

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused:
            return  # aiosmtpd never started on this connection
        if self._client is not None:
            self._server.admission.release(self._client)
            self._client = None
            self._server.session_closed(self)
        super().connection_lost(error)

    def eof_received(self) -> bool | None:
        if self._refused:
            return False
        return cast("bool | None", super().eof_received())

    def data_received(self, data: bytes) -> None:
        self._last_received = self.loop.time()
        super().data_received(data)

    def _timeout_cb(self) -> None:
        if self._receiving:
            # The DATA timeout counts from the last bytes received (RFC 5321
            # 4.5.3.2.5: per block), whether or not they completed a line.
            idle = self.loop.time() - self._last_received
            if idle < self._server.limits.data_timeout:
                self._reset_timeout(self._server.limits.data_timeout - idle)
                return
        # aiosmtpd closes silently; RFC 5321 4.5.3.2 lets the server close, and a 421 tells the client why.
        self.shut(TIMED_OUT)
        log.info("smtp.timeout", peer=self._peer, in_data=self._in_data)

    def shut(self, reply: SmtpReply) -> None:
        """Write a 421 and close the connection (from outside the session's own task too)."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            cast(asyncio.WriteTransport, transport).write(self._server.farewell(reply))
            transport.close()

    # A method, not a property: aiosmtpd's __init__ reads every attribute of
    # the session (inspect.getmembers) before ours are set.
    def in_transaction(self) -> bool:
        """Between MAIL and the reply to the final dot: a graceful close waits for it."""
        return self._in_data or (self.envelope is not None and bool(self.envelope.mail_from))

    def tls_active(self) -> bool:
        return self._tls_protocol is not None

    def session_info(self) -> SessionInfo:
        assert self.session is not None
        return SessionInfo(
            peer=self._peer,
            helo=self.session.host_name,
            tls=self._tls_protocol is not None,
            # STARTTLS makes aiosmtpd start a new Session: an AUTH never outlives it (RFC 3207 4.2)
            authenticated_as=self.session.auth_data if self.session.authenticated else None,
        )

    async def handle_exception(self, error: Exception) -> str:
        # aiosmtpd's default answers "500 Error: (KeyError) ..." : permanent, and internals shown.
        if isinstance(error, TLSSetupException):
            # A failed handshake is the client's (scanners, old TLS); aiosmtpd closes the connection.
            log.info("smtp.tls_failed", peer=self._peer, error=repr(error.__cause__))
        else:
            log.error("smtp.session_error", peer=self._peer, exc_info=error)
        return TRY_LATER.line()

    async def push(self, status: str | bytes) -> None:
        # aiosmtpd writes each line of a reply on its own (a system call each:
        # the EHLO reply is eight); the lines of one reply go out in one write.
        line = status.encode("ascii") if isinstance(status, str) else status
        if line[3:4] == b"-":
            self._continued.append(line)
            return
        if self._continued:
            self._continued.append(line)
            line = b"\r\n".join(self._continued)
            self._continued.clear()
        self._writer.write(line + b"\r\n")
        await self._writer.drain()

    # -- commands --

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # aiosmtpd's reading of a path is its costliest step per command (paths.py).
        simple = simple_path(arg)
        if simple is not None:
            return simple
        return cast("tuple[str | None, str | None]", super()._getaddr(arg))

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: str | None) -> None:
        if self._server.closing:
            self.shut(SHUTTING_DOWN)
            return
        await super().smtp_MAIL(arg)

    async def smtp_AUTH(self, arg: str) -> None:
        authenticator = self._server.authenticator
        if authenticator is None:
            await self.push(NO_AUTH.line())
            return
        if await self.check_helo_needed("EHLO"):
            return
        assert self.session is not None
        if self._tls_protocol is None:
            reply = AUTH_NEEDS_TLS  # never a password in clear (RFC 4954 4, RFC 8314 3.3)
        elif self.session.authenticated:
            # RFC 4954 4 (and so never inside a transaction: MAIL needs AUTH first)
            reply = AUTH_ALREADY
        else:
            exchanged = await self._sasl_exchange(arg or "")
            if exchanged is None:
                return  # the client left mid-exchange
            if isinstance(exchanged, SmtpReply):
                reply = exchanged
            else:
                reply = await self._check_credentials(authenticator, exchanged)
        await self.push(reply.line())

    async def _sasl_exchange(self, arg: str) -> Credentials | SmtpReply | None:
        """PLAIN or LOGIN, initial response or challenges: the credentials, a refusal, or None (gone)."""
        words = arg.split()
        if not words or len(words) > 2:
            return AUTH_SYNTAX
        mechanism = words[0].upper()
        if mechanism not in sasl.MECHANISMS:
            return AUTH_MECHANISM
        if len(words) == 2:
            first: bytes | sasl.SaslProblem | SmtpReply | None = sasl.response(words[1].encode("ascii", "replace"))
        else:
            first = await self._challenge(b"" if mechanism == "PLAIN" else sasl.LOGIN_USERNAME)
        if first is None or isinstance(first, SmtpReply):
            return first
        if isinstance(first, sasl.SaslProblem):
            return _SASL_REPLY[first]
        if mechanism == "PLAIN":
            plain = sasl.plain(first)
            return _SASL_REPLY[plain] if isinstance(plain, sasl.SaslProblem) else plain
        name = sasl.login_name(first)
        if isinstance(name, sasl.SaslProblem):
            return _SASL_REPLY[name]
        second = await self._challenge(sasl.LOGIN_PASSWORD)
        if second is None or isinstance(second, SmtpReply):
            return second
        if isinstance(second, sasl.SaslProblem):
            return _SASL_REPLY[second]
        login = sasl.login_password(name, second)
        return _SASL_REPLY[login] if isinstance(login, sasl.SaslProblem) else login

    async def _challenge(self, prompt: bytes) -> bytes | sasl.SaslProblem | SmtpReply | None:
        await self.push(sasl.challenge(prompt))
        try:
            line = await self._reader.readline()
        except ValueError:  # over the reader's limit (asyncio has dropped it): RFC 4954 4
            return AUTH_LINE_TOO_LONG
        if not line.endswith(b"\n"):
            if self.transport is not None:
                self.transport.close()
            return None
        if len(line) > sasl.MAX_AUTH_LINE:
            return AUTH_LINE_TOO_LONG
        return sasl.response(line)

    async def _check_credentials(self, authenticator: Authenticator, credentials: Credentials) -> SmtpReply:
        assert self.session is not None
        try:
            outcome = await authenticator.authenticate(self._peer, credentials)
        except Exception:
            # never a permanent refusal for our own failure, never internals (STYLE 4)
            log.exception("smtp.auth_failed", peer=self._peer)
            return AUTH_UNAVAILABLE
        if isinstance(outcome, Authenticated):
            self.session.authenticated = True
            self.session.auth_data = cast(Any, outcome.identity)  # aiosmtpd types it loosely
            return AUTH_OK
        return _AUTH_REPLY[outcome]

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed():
            return
        if self._auth_required and await self.check_auth_needed("DATA"):
            return
        envelope = self.envelope
        assert envelope is not None
        if not envelope.rcpt_tos:
            await self.push(NEED_RECIPIENT.line())
            return
        if arg:
            await self.push(DATA_SYNTAX.line())
            return
        await self.push(GO_AHEAD)
        self._in_data = True
        try:
            await self._data(envelope)
        finally:
            self._in_data = False
        if self._server.closing:
            self.shut(SHUTTING_DOWN)

    async def _data(self, envelope: Envelope) -> None:
        self._reset_timeout(self._server.limits.data_timeout)  # from the last bytes: _timeout_cb
        self._receiving = True
        try:
            wire = await read_message(self._reader, self._server.limits.max_message_size)
        except asyncio.IncompleteReadError:
            # The connection ended inside DATA (aiosmtpd usually cancels us first): nothing to answer.
            if self.transport is not None:
                self.transport.close()
            return
        finally:
            self._receiving = False
        self._set_post_data_state()
        self._reset_timeout()  # back to the command timeout
        if wire is None:
            await self.push(TOO_BIG.line())
            return
        data = unstuff(wire)
        del wire
        problem = data_problem(data, self._server.limits.max_line_length)
        if problem is not None:
            log.info("smtp.data_refused", peer=self._peer, reason=problem.value)
            await self.push(DATA_REFUSED[problem].line())
            return
        received = Received(
            session=self.session_info(),
            mail_from=_reverse_path(envelope.mail_from),
            rcpt_to=tuple(envelope.rcpt_tos),
            data=data,
        )
        await self._answer(received)

    async def _answer(self, received: Received) -> None:
        task = self._server.start_message(received)
        self._reset_timeout(self._server.limits.reply_timeout)
        try:
            reply = await asyncio.shield(task)
        except asyncio.CancelledError:
            # aiosmtpd cancels the session when the client half-closes (EOF)
            # or the connection drops. The message goes on (the task is the
            # server's); a half-closed client can still read its reply.
            delivered = False
            if self.transport is not None and not self.transport.is_closing():
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    late = await asyncio.shield(task)
                    await self.push(late.line())
                    delivered = True
            if not delivered:
                # Gone before its reply: a message stored anyway will come again (no 250 seen).
                log.info("smtp.reply_undelivered", peer=self._peer, done=task.done())
            raise
        self._reset_timeout()
        await self.push(reply.line())


_SASL_REPLY = {
    sasl.SaslProblem.CANCELLED: AUTH_CANCELLED,
    sasl.SaslProblem.NOT_BASE64: AUTH_NOT_BASE64,
    sasl.SaslProblem.MALFORMED: AUTH_MALFORMED,
    sasl.SaslProblem.OTHER_IDENTITY: AUTH_INVALID,
}
_AUTH_REPLY = {
    AuthRefusal.INVALID: AUTH_INVALID,
    AuthRefusal.LOCKED_OUT: AUTH_LOCKED_OUT,
    AuthRefusal.UNAVAILABLE: AUTH_UNAVAILABLE,
}


def reference_session(server: SmtpServer) -> _Session:
    """A session set up by aiosmtpd's own SMTP.__init__, for the test that _Session.__init__ misses nothing."""
    session = _Session.__new__(_Session)
    SMTP.__init__(
        session,
        server.hooks,
        data_size_limit=None,
        hostname=server.hostname,
        ident="ESMTP",
        tls_context=server.tls_context,
        timeout=server.limits.command_timeout,
        auth_exclude_mechanism=("LOGIN", "PLAIN"),
        loop=server.loop,
    )
    return session


def aiosmtpd_path(session: _Session, argument: str) -> tuple[str | None, str | None]:
    """aiosmtpd's own reading of a MAIL/RCPT argument, for the test of paths.simple_path."""
    return cast("tuple[str | None, str | None]", SMTP._getaddr(session, argument))


def _reverse_path(mail_from: str | None) -> str:
    # aiosmtpd gives the null reverse-path (RFC 5321 4.5.5, bounces and MDN-like reports) as "<>".
    if mail_from is None or mail_from == "<>":
        return ""
    return mail_from


def _peer_address(peername: Any) -> str:
    # (host, port) for IPv4, (host, port, flowinfo, scope) for IPv6.
    if isinstance(peername, tuple) and peername:
        return str(peername[0])
    return "unknown"


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
        listener = await loop.create_server(lambda: _Session(server), sock=sock)
    else:
        assert port is not None
        listener = await loop.create_server(
            lambda: _Session(server), host, port, reuse_address=True
        )
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
