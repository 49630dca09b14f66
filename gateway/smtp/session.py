"""One SMTP connection, at the byte level: an ``asyncio.Protocol`` over a bytearray.

How it works. ``data_received`` appends to the session's buffer and, unless
the session waits for something, reads it: in the command phase one line at a
time, up to each LF (one ``find`` in C; no coroutine per line), in the DATA
phase with framing.MessageReader (one ``find`` per read, whatever the number
of lines). Most commands are answered at once; the replies of one read go
out in one ``transport.write``, and a multi-line reply is always one write.
Four things wait: RCPT (the pipeline's ``recipient()``), MAIL on the
submission port (``Submission.sender``), AUTH (``Authenticator``) and the
final dot (the pipeline's ``message()``). Each runs as a task; while it runs
the session takes no command, so pipelined commands (RFC 2920) are answered
in order, and what the client sends meanwhile waits in the buffer, which
stops the transport (``pause_reading``) beyond ``_HIGH_WATER``. A transport
whose writes are blocked (``pause_writing``) also stops the session and its
reading: a client that sends without reading cannot make the server buffer
without bound.

``message()`` runs in a task of the server's (server.py), never cancelled by
the session: a client that half-closes after the final dot still reads its
reply (the transport stays open for writing), and one that vanishes leaves
the call to finish once; the reply is written if the transport can carry it.

Bounds: a command line is at most ``max_command_line`` octets with its CRLF
(26 more for MAIL, RFC 1870 6; 12288 for AUTH, RFC 4954 4); a longer one is
dropped while it arrives (the buffer never holds more than the longest
allowed line) and answered 500 once its LF comes. A command line must end
in CRLF and hold no other CR or LF (RFC 5321 2.3.8): one ending in a bare
LF is refused with 500 5.5.2 and not run, like the DATA phase's bare CR and
LF (data.py). Timeouts: ``command_timeout`` from the last command for the
next, ``data_timeout`` from the last bytes received in DATA (RFC 5321
4.5.3.2.5: per block), ``reply_timeout`` for the pipeline's answer; each
ends the session with 421 4.4.2. One timer per session, re-armed only when
a deadline moves earlier.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import TYPE_CHECKING, Any, cast

import structlog

from . import auth as sasl
from .commands import Chunk, Mail, read_bdat, read_mail, read_rcpt
from .data import data_problem, unstuff
from .framing import ChunkedMessage, MessageReader
from .interface import (
    Authenticated,
    Authenticator,
    AuthRefusal,
    Credentials,
    Received,
    SessionInfo,
    SmtpReply,
)
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
    AUTH_REQUIRED,
    AUTH_SYNTAX,
    AUTH_UNAVAILABLE,
    BAD_SYNTAX,
    BARE_NEWLINE,
    BDAT_SYNTAX,
    BYE,
    CANNOT_VRFY,
    DATA_AFTER_BDAT,
    DATA_REFUSED,
    DATA_SYNTAX,
    EHLO_SYNTAX,
    GO_AHEAD,
    HELO_SYNTAX,
    LINE_TOO_LONG,
    NEED_EHLO,
    NEED_HELO,
    NEED_MAIL,
    NEED_RECIPIENT,
    NESTED_MAIL,
    NO_AUTH,
    NO_TLS,
    NOT_ASCII,
    NOT_IMPLEMENTED,
    OK,
    QUIT_SYNTAX,
    READY_FOR_TLS,
    RECIPIENT_OK,
    REFUSED,
    RSET_SYNTAX,
    SENDER_OK,
    SHUTTING_DOWN,
    STARTTLS_SYNTAX,
    TIMED_OUT,
    TLS_ACTIVE,
    TOO_BIG,
    TOO_MANY_RECIPIENTS,
    TOO_MANY_UNRECOGNIZED,
    TRY_LATER,
    UNRECOGNIZED,
    VRFY_SYNTAX,
)

if TYPE_CHECKING:
    from .server import SmtpServer

log = structlog.get_logger("directgw.smtp")

# While the session waits (a pipeline call, blocked writes), the client may
# send on (RFC 2920); beyond this much unread the transport stops reading.
_HIGH_WATER = 64 * 1024

# aiosmtpd's limit, kept: a client that sends this many unknown commands
# (a cross-protocol attack, an HTTP request sent to port 25) is not an SMTP client.
_MAX_UNRECOGNIZED = 5

# RFC 1870 6: with SIZE, the MAIL command line may be 26 octets longer.
_SIZE_PARAMETER_ROOM = 26

_COMMAND, _DATA, _SASL, _GONE, _CHUNK = range(5)

_CRLF = b"\r\n"
_GO_AHEAD = GO_AHEAD.encode("ascii") + _CRLF

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


def wire(reply: SmtpReply) -> bytes:
    """A reply as written: '250 2.0.0 text<CRLF>' (a pipeline's non-ASCII text is replaced, never an error)."""
    return (reply.line() + "\r\n").encode("ascii", "replace")


# The edge's own replies, encoded once.
_W = {reply: wire(reply) for reply in (
    AUTH_ALREADY, AUTH_LINE_TOO_LONG, AUTH_MECHANISM, AUTH_NEEDS_TLS, AUTH_OK, AUTH_REQUIRED,
    AUTH_SYNTAX, AUTH_UNAVAILABLE, BAD_SYNTAX, BARE_NEWLINE, BDAT_SYNTAX, BYE, CANNOT_VRFY,
    DATA_AFTER_BDAT, DATA_SYNTAX, EHLO_SYNTAX, HELO_SYNTAX, LINE_TOO_LONG, NEED_EHLO, NEED_HELO,
    NEED_MAIL, NEED_RECIPIENT, NESTED_MAIL, NO_AUTH, NO_TLS, NOT_ASCII, NOT_IMPLEMENTED, OK, QUIT_SYNTAX, READY_FOR_TLS,
    RECIPIENT_OK, RSET_SYNTAX, SENDER_OK, STARTTLS_SYNTAX, TLS_ACTIVE, TOO_BIG,
    TOO_MANY_RECIPIENTS, TRY_LATER, UNRECOGNIZED, VRFY_SYNTAX,
    *_SASL_REPLY.values(), *_AUTH_REPLY.values(), *DATA_REFUSED.values(),
)}


def _encoded(reply: SmtpReply) -> bytes:
    encoded = _W.get(reply)
    return encoded if encoded is not None else wire(reply)


class Session(asyncio.Protocol):
    """One SMTP connection: the state of RFC 5321 4.1.4's sequence, and the buffer."""

    __slots__ = (
        "_authenticated",
        "_buffer",
        "_chunk",
        "_chunk_left",
        "_chunk_refusal",
        "_chunks",
        "_client",
        "_discarding",
        "_discarding_bdat",
        "_eof",
        "_extended",
        "_helo",
        "_info",
        "_last_received",
        "_loop",
        "_mail_from",
        "_message",
        "_out",
        "_peer",
        "_rcpt_to",
        "_read_paused",
        "_reader",
        "_sasl",
        "_server",
        "_since",
        "_state",
        "_step",
        "_timer",
        "_timer_at",
        "_tls",
        "_transport",
        "_unrecognized",
        "_upgrading",
        "_waiting",
        "_write_paused",
    )

    def __init__(self, server: SmtpServer) -> None:
        self._server = server
        self._loop = server.loop
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._out: list[bytes] = []
        self._state = _COMMAND
        self._peer = ""  # the client's address, for the log
        self._client: str | None = None  # the admitted address, until released
        self._helo: str | None = None
        self._extended = False
        self._tls = False
        self._authenticated: str | None = None
        self._info: SessionInfo | None = None
        self._mail_from: str | None = None
        self._rcpt_to: list[str] = []
        self._reader: MessageReader | None = None
        self._chunks: ChunkedMessage | None = None  # the transaction's BDAT octets so far
        self._chunk: Chunk | None = None  # the BDAT whose octets are being read
        self._chunk_left = 0  # of them, still to come
        self._chunk_refusal: bytes | None = None  # its reply when it is refused: read, not kept
        self._sasl: tuple[str, str | None] | None = None  # (mechanism, LOGIN's name once given)
        self._step: asyncio.Task[bytes | None] | None = None
        self._message: asyncio.Task[SmtpReply] | None = None
        self._waiting = False  # a step or the pipeline runs: no command is taken meanwhile
        self._write_paused = False
        self._read_paused = False
        self._eof = False
        self._discarding = False  # dropping an over-long line until its LF
        self._discarding_bdat = False  # ... a BDAT's: its octets follow it, so the session ends
        self._upgrading = False
        self._unrecognized = 0
        self._since = 0.0  # loop time of the last command (or answer): the command timeout's start
        self._last_received = 0.0  # loop time of the last bytes: the DATA timeout's start
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    # -- the connection --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = self._transport = cast(asyncio.Transport, transport)
        server = self._server
        client = self._peer = _peer_address(transport.get_extra_info("peername"))
        if server.closing:
            self._refuse(SHUTTING_DOWN)
            return
        refusal = server.admission.admit(client)
        if refusal is not None:
            log.info("smtp.refused", peer=client, reason=refusal.value)
            self._refuse(REFUSED[refusal])
            return
        self._client = client
        server.session_opened(self)
        transport.write(server.greeting)
        self._since = self._last_received = self._loop.time()
        self._arm()

    def _refuse(self, reply: SmtpReply) -> None:
        # RFC 5321 3.1: a server that will not serve answers 421 in place of its greeting.
        self._state = _GONE
        assert self._transport is not None
        self._transport.write(self._server.farewell(reply))
        self._transport.close()

    def connection_lost(self, error: Exception | None) -> None:
        self._state = _GONE
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._step is not None:
            self._step.cancel()  # a recipient, sender or login check the client no longer waits for
        if self._client is not None:
            self._server.admission.release(self._client)
            self._client = None
            self._server.session_closed(self)

    def eof_received(self) -> bool:
        # The client has half-closed: what it sent before is still answered,
        # and a half-closed TCP connection can still carry the replies.
        self._eof = True
        if self._state == _GONE or not (self._waiting or self._write_paused):
            return False  # nothing left to answer: the transport closes
        return not self._tls  # TLS cannot half-close (asyncio warns and closes)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._state != _GONE and not self._waiting:
            self._process()

    def data_received(self, data: bytes) -> None:
        if self._state == _GONE:
            return
        self._buffer += data
        self._last_received = self._loop.time()
        if self._waiting or self._write_paused:
            if len(self._buffer) > _HIGH_WATER and not self._read_paused and self._transport is not None:
                self._read_paused = True
                self._transport.pause_reading()
            return
        self._process()

    # -- what the server asks --

    def in_transaction(self) -> bool:
        """Between MAIL and the reply to the final dot: a graceful close waits for it."""
        return (self._mail_from is not None or self._state in (_DATA, _CHUNK) or self._message is not None
                or self._chunks is not None)

    def shut(self, reply: SmtpReply) -> None:
        """Write a 421 after what is pending and close the connection."""
        transport = self._transport
        if self._state == _GONE or transport is None:
            return
        self._state = _GONE
        if self._upgrading:
            transport.close()  # mid-handshake: no cleartext reply
            return
        self._out.append(self._server.farewell(reply))
        self._flush()
        transport.close()

    def session_info(self) -> SessionInfo:
        info = self._info
        if info is None:
            info = self._info = SessionInfo(
                peer=self._peer, helo=self._helo, tls=self._tls, authenticated_as=self._authenticated
            )
        return info

    # -- reading --

    def _process(self) -> None:
        """Answer what the buffer holds, until it runs out or the session must wait."""
        buffer = self._buffer
        while not (self._waiting or self._write_paused):
            state = self._state
            if state == _DATA:
                assert self._reader is not None
                if not self._reader.feed(buffer):
                    break
                self._end_of_data()
                continue
            if state == _CHUNK:
                if self._chunk_left:
                    if not buffer:
                        break
                    self._read_chunk(buffer)
                    if self._chunk_left:
                        break
                self._end_of_chunk()
                continue
            if state == _GONE:
                return
            end = buffer.find(b"\n")
            if end < 0:
                if len(buffer) > self._server.longest_line:
                    if not self._discarding:
                        self._discarding_bdat = buffer[:5].upper() == b"BDAT "
                    del buffer[:]  # RFC 5321 4.5.3.1.4: refused, never kept
                    self._discarding = True
                break
            line = bytes(buffer[: end + 1])
            del buffer[: end + 1]
            self._since = self._loop.time()
            try:
                if self._discarding:
                    self._discarding = False
                    self._too_long()
                elif state == _SASL:
                    self._sasl_response(line)
                else:
                    self._command(line)
            except Exception as error:
                # A bug is never a permanent refusal, and the peer never sees internals (STYLE 4).
                log.error("smtp.session_error", peer=self._peer, exc_info=error)
                self._sasl = None
                if self._state == _SASL:
                    self._state = _COMMAND
                self._out.append(_W[TRY_LATER])
        if self._waiting and (buffer or self._message is not None):
            # Commands pipelined behind the one being waited for (RFC 2920 3.2): the replies so
            # far go out with theirs, in one write, when the step is done and they are answered.
            # So do those before a message being stored: its client sent all of its transaction
            # (MAIL, RCPT, BDAT LAST and the octets in one write) and waits for every reply.
            return
        self._flush()
        if self._state == _GONE or self._waiting:
            return
        if self._server.closing and not self.in_transaction():
            self.shut(SHUTTING_DOWN)
        elif self._eof and not self._write_paused:
            assert self._transport is not None
            self._state = _GONE
            self._transport.close()
        elif self._read_paused and not self._write_paused and self._transport is not None:
            self._read_paused = False
            self._transport.resume_reading()

    def _flush(self) -> None:
        out = self._out
        if not out:
            return
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(out[0] if len(out) == 1 else b"".join(out))
        out.clear()

    def _command(self, line: bytes) -> None:
        length = len(line) - 2  # without its CRLF
        if length < 0 or line[length] != 13 or line.find(b"\r", 0, length) >= 0:
            if line[:5].upper() == b"BDAT ":
                self._unframed()
                return
            self._out.append(_W[BARE_NEWLINE])  # RFC 5321 2.3.8: not run
            return
        space = line.find(b" ", 0, length)
        verb = (line[:length] if space < 0 else line[:space]).upper()
        if length > self._server.line_limit.get(verb, self._server.command_limit):
            if verb == b"BDAT":
                self._unframed()
                return
            self._out.append(_W[LINE_TOO_LONG])
            return
        handler = _COMMANDS.get(verb)
        if handler is None:
            if length == 0:
                self._out.append(_W[BAD_SYNTAX])
                return
            self._unrecognized += 1
            if self._unrecognized >= _MAX_UNRECOGNIZED:
                log.info("smtp.unrecognized", peer=self._peer)
                self.shut(TOO_MANY_UNRECOGNIZED)
                return
            self._out.append(_W[UNRECOGNIZED])
            return
        try:
            argument = "" if space < 0 else line[space + 1 : length].strip().decode("ascii")
        except UnicodeDecodeError:
            if verb == b"BDAT":
                self._unframed()
                return
            self._out.append(_W[NOT_ASCII])
            return
        handler(self, argument)

    def _too_long(self) -> None:
        if self._discarding_bdat:
            self._unframed()
        elif self._state == _SASL:
            self._end_sasl(_W[AUTH_LINE_TOO_LONG])
        else:
            self._out.append(_W[LINE_TOO_LONG])

    # -- waiting --

    def _wait(self, step: Any) -> None:
        """Run ``step`` (a coroutine giving the reply bytes, or None) before the next command."""
        self._waiting = True
        task = self._loop.create_task(step)
        self._step = task
        task.add_done_callback(self._step_done)

    def _step_done(self, task: asyncio.Task[bytes | None]) -> None:
        self._step = None
        if task.cancelled():
            return
        error = task.exception()
        if self._state == _GONE:
            return
        self._waiting = False
        self._since = self._loop.time()
        if error is not None:
            log.error("smtp.session_error", peer=self._peer, exc_info=error)
            self._out.append(_W[TRY_LATER])
        else:
            reply = task.result()
            if reply is not None:
                self._out.append(reply)
        self._process()

    # -- the timer --

    def _deadline(self) -> float:
        limits = self._server.limits
        if self._state in (_DATA, _CHUNK):
            return self._last_received + limits.data_timeout
        if self._message is not None:
            return self._since + limits.reply_timeout
        return self._since + limits.command_timeout

    def _arm(self) -> None:
        deadline = self._deadline()
        if self._timer is None or deadline < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_at(deadline, self._on_timer)
            self._timer_at = deadline

    def _on_timer(self) -> None:
        self._timer = None
        if self._state == _GONE:
            return
        deadline = self._deadline()
        if self._loop.time() < deadline:
            self._timer = self._loop.call_at(deadline, self._on_timer)
            self._timer_at = deadline
            return
        # RFC 5321 4.5.3.2 lets the server close; a 421 tells the client why.
        log.info("smtp.timeout", peer=self._peer,
                 in_data=self._state in (_DATA, _CHUNK) or self._message is not None)
        self.shut(TIMED_OUT)

    # -- commands --

    def _helo_cmd(self, argument: str) -> None:
        if not argument:
            self._out.append(_W[HELO_SYNTAX])
            return
        self._reset(argument, extended=False)
        self._out.append(self._server.helo_reply)

    def _ehlo_cmd(self, argument: str) -> None:
        if not argument:
            self._out.append(_W[EHLO_SYNTAX])
            return
        self._reset(argument, extended=True)
        self._out.append(self._server.ehlo_reply(tls=self._tls))

    def _reset(self, helo: str, *, extended: bool) -> None:
        self._helo = helo
        self._extended = extended
        self._info = None
        self._end_transaction()

    def _end_transaction(self) -> None:
        """The envelope and the chunks so far dropped: a message taken or refused, RSET, EHLO, STARTTLS."""
        self._mail_from, self._rcpt_to, self._chunks = None, [], None

    def _mail_cmd(self, argument: str) -> None:
        server = self._server
        if server.closing:
            self.shut(SHUTTING_DOWN)
            return
        if self._helo is None:
            self._out.append(_W[NEED_HELO])
            return
        if server.authenticator is not None and self._authenticated is None:
            self._out.append(_W[AUTH_REQUIRED])
            return
        mail = read_mail(argument, extended=self._extended, max_size=server.limits.max_message_size)
        if isinstance(mail, SmtpReply):
            self._out.append(_encoded(mail))
            return
        if self._mail_from is not None:
            self._out.append(_W[NESTED_MAIL])
            return
        if server.submission is not None:
            self._wait(self._judge_sender(mail))
            return
        self._mail_from = mail.sender
        self._out.append(_W[SENDER_OK])

    async def _judge_sender(self, mail: Mail) -> bytes:
        assert self._server.submission is not None
        refusal = await self._server.submission.sender(self.session_info(), mail.sender)
        if refusal is not None and not refusal.positive:
            return _encoded(refusal)
        self._mail_from = mail.sender
        return _W[SENDER_OK]

    def _rcpt_cmd(self, argument: str) -> None:
        if self._helo is None:
            self._out.append(_W[NEED_HELO])
            return
        if self._server.authenticator is not None and self._authenticated is None:
            self._out.append(_W[AUTH_REQUIRED])
            return
        if self._mail_from is None:
            self._out.append(_W[NEED_MAIL])
            return
        address = read_rcpt(argument, extended=self._extended)
        if isinstance(address, SmtpReply):
            self._out.append(_encoded(address))
            return
        if address in self._rcpt_to:  # named again: accepted once, delivered once (RFC 5321 4.1.1.3)
            self._out.append(_W[RECIPIENT_OK])
            return
        if len(self._rcpt_to) >= self._server.limits.max_recipients:
            self._out.append(_W[TOO_MANY_RECIPIENTS])
            return
        self._wait(self._ask_recipient(self._mail_from, address))

    async def _ask_recipient(self, mail_from: str, address: str) -> bytes:
        reply = await self._server.pipeline.recipient(self.session_info(), mail_from, address)
        # Never an open relay: a recipient is added only when the pipeline
        # accepts it (None, or a positive reply, whose text the client sees).
        if reply is None:
            self._rcpt_to.append(address)
            return _W[RECIPIENT_OK]
        if reply.positive:
            self._rcpt_to.append(address)
        return _encoded(reply)

    def _data_cmd(self, argument: str) -> None:
        if self._helo is None:
            self._out.append(_W[NEED_HELO])
            return
        if self._server.authenticator is not None and self._authenticated is None:
            self._out.append(_W[AUTH_REQUIRED])
            return
        if not self._rcpt_to:
            self._out.append(_W[NEED_RECIPIENT])
            return
        if self._chunks is not None:
            self._out.append(_W[DATA_AFTER_BDAT])
            return
        if argument:
            self._out.append(_W[DATA_SYNTAX])
            return
        self._out.append(_GO_AHEAD)
        self._reader = MessageReader(self._server.limits.max_message_size)
        self._state = _DATA
        self._last_received = self._loop.time()
        self._arm()

    def _end_of_data(self) -> None:
        assert self._reader is not None and self._mail_from is not None
        self._since = self._loop.time()  # the next command's wait starts now, however long DATA took
        wire_message = self._reader.message()
        self._reader = None
        self._state = _COMMAND
        mail_from, rcpt_to = self._mail_from, tuple(self._rcpt_to)
        self._end_transaction()
        if wire_message is None:
            self._out.append(_W[TOO_BIG])
            return
        data = unstuff(wire_message)
        del wire_message
        self._take_message(mail_from, rcpt_to, data)

    def _take_message(self, mail_from: str, rcpt_to: tuple[str, ...], data: bytes) -> None:
        """The whole message, from DATA or from BDAT's chunks: checked, then handed to the pipeline."""
        problem = data_problem(data, self._server.limits.max_line_length)
        if problem is not None:
            log.info("smtp.data_refused", peer=self._peer, reason=problem.value)
            self._out.append(_W[DATA_REFUSED[problem]])
            return
        received = Received(session=self.session_info(), mail_from=mail_from, rcpt_to=rcpt_to, data=data)
        task = self._server.start_message(received)
        self._message = task
        self._waiting = True
        self._since = self._loop.time()
        self._arm()
        task.add_done_callback(self._answered)

    def _bdat_cmd(self, argument: str) -> None:
        """RFC 3030 2: the octets that follow are read whatever the reply, so a refused chunk
        leaves the session in step with a client that pipelined it; a refusal also ends the
        transaction (its state is "indeterminate"), so chunks still in the pipeline after it
        are read and refused too."""
        chunk = read_bdat(argument)
        if chunk is None:
            self._unframed()
            return
        refusal: SmtpReply | None = None
        if self._helo is None:
            refusal = NEED_HELO
        elif not self._extended:  # CHUNKING is an extension: EHLO, not HELO (RFC 5321 2.2.1)
            refusal = NEED_EHLO
        elif self._server.authenticator is not None and self._authenticated is None:
            refusal = AUTH_REQUIRED
        elif self._mail_from is None:
            refusal = NEED_MAIL
        elif not self._rcpt_to:
            refusal = NEED_RECIPIENT
        elif (self._chunks.size if self._chunks is not None else 0) + chunk.size > self._server.limits.max_message_size:
            refusal = TOO_BIG  # RFC 1870 with RFC 3030: refused at the chunk, whose octets are not kept
        if refusal is not None:
            self._chunk_refusal = _W[refusal]
            self._end_transaction()
        elif self._chunks is None:
            self._chunks = ChunkedMessage()
        self._chunk = chunk
        self._chunk_left = chunk.size
        self._state = _CHUNK
        self._last_received = self._loop.time()
        self._arm()

    def _unframed(self) -> None:
        """A BDAT whose line cannot be read (its size, or the line itself: a bare LF, not ASCII,
        too long): where its octets end is unknown, so nothing after it can be read as a command."""
        self._last_word(_W[BDAT_SYNTAX])

    def _last_word(self, reply: bytes) -> None:
        """``reply`` after what is pending, then the connection closed."""
        self._out.append(reply)
        self._flush()
        self._state = _GONE
        assert self._transport is not None
        self._transport.close()

    def _read_chunk(self, buffer: bytearray) -> None:
        length = min(self._chunk_left, len(buffer))
        self._chunk_left -= length
        if self._chunk_refusal is None and self._chunks is not None:
            self._chunks.take(buffer, length)
        else:
            del buffer[:length]

    def _end_of_chunk(self) -> None:
        chunk, self._chunk = self._chunk, None
        assert chunk is not None
        self._state = _COMMAND
        self._since = self._loop.time()
        refusal, self._chunk_refusal = self._chunk_refusal, None
        if refusal is not None:
            self._out.append(refusal)
            return
        if not chunk.last:
            self._out.append(_encoded(SmtpReply(250, "2.0.0", f"{chunk.size} octets received")))
            return
        chunks, mail_from, rcpt_to = self._chunks, self._mail_from, tuple(self._rcpt_to)
        assert chunks is not None and mail_from is not None
        self._end_transaction()
        self._take_message(mail_from, rcpt_to, chunks.message())

    def _answered(self, task: asyncio.Task[SmtpReply]) -> None:
        self._message = None
        transport = self._transport
        if self._state == _GONE or transport is None or transport.is_closing():
            # Gone before its reply: a message stored anyway will come again (no 250 seen).
            log.info("smtp.reply_undelivered", peer=self._peer, done=not task.cancelled())
            return
        if task.cancelled():
            return  # the server's close after its grace: it shuts this session
        self._waiting = False
        self._since = self._loop.time()
        self._out.append(_encoded(task.result()))
        self._process()

    def _rset_cmd(self, argument: str) -> None:
        if argument:
            self._out.append(_W[RSET_SYNTAX])
            return
        self._end_transaction()
        self._out.append(_W[OK])

    def _noop_cmd(self, argument: str) -> None:
        self._out.append(_W[OK])

    def _quit_cmd(self, argument: str) -> None:
        if argument:
            self._out.append(_W[QUIT_SYNTAX])
            return
        self._last_word(_W[BYE])

    def _vrfy_cmd(self, argument: str) -> None:
        if self._server.authenticator is not None and self._authenticated is None:
            self._out.append(_W[AUTH_REQUIRED])
        elif not argument:
            self._out.append(_W[VRFY_SYNTAX])
        else:
            self._out.append(_W[CANNOT_VRFY])

    def _expn_cmd(self, argument: str) -> None:
        self._out.append(_W[NOT_IMPLEMENTED])

    def _help_cmd(self, argument: str) -> None:
        if self._server.authenticator is not None and self._authenticated is None:
            self._out.append(_W[AUTH_REQUIRED])
        else:
            self._out.append(self._server.help_reply)

    def _starttls_cmd(self, argument: str) -> None:
        context = self._server.tls_context
        if argument:
            self._out.append(_W[STARTTLS_SYNTAX])
            return
        if context is None:
            self._out.append(_W[NO_TLS])
            return
        if self._tls:
            self._out.append(_W[TLS_ACTIVE])
            return
        self._out.append(_W[READY_FOR_TLS])
        self._flush()
        # RFC 3207 4.2 and 5 (CVE-2011-0411): what the client sent after
        # STARTTLS in the clear is dropped, never run after the handshake.
        del self._buffer[:]
        assert self._transport is not None
        self._transport.pause_reading()  # the next bytes are the TLS handshake's
        self._upgrading = True
        self._wait(self._start_tls(context))

    async def _start_tls(self, context: ssl.SSLContext) -> bytes | None:
        assert self._transport is not None
        try:
            transport = await self._loop.start_tls(
                self._transport, self, context, server_side=True,
                ssl_handshake_timeout=self._server.limits.command_timeout,
            )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as error:
            # A failed handshake is the client's (scanners, old TLS): asyncio has closed the connection.
            log.info("smtp.tls_failed", peer=self._peer, error=repr(error))
            self._state = _GONE
            return None
        finally:
            self._upgrading = False
        if transport is None or self._state == _GONE:
            self._state = _GONE
            return None
        self._transport = transport
        # RFC 3207 4.2: the session starts over (no HELO, no transaction, no AUTH).
        self._tls = True
        self._helo = None
        self._extended = False
        self._authenticated = None
        self._info = None
        self._end_transaction()
        return None

    def _auth_cmd(self, argument: str) -> None:
        authenticator = self._server.authenticator
        if authenticator is None:
            self._out.append(_W[NO_AUTH])  # never on port 25
            return
        if self._helo is None:
            self._out.append(_W[NEED_EHLO])
            return
        if not self._tls:
            self._out.append(_W[AUTH_NEEDS_TLS])  # never a password in clear (RFC 4954 4, RFC 8314 3.3)
            return
        if self._authenticated is not None:
            self._out.append(_W[AUTH_ALREADY])  # RFC 4954 4
            return
        words = argument.split()
        if not words or len(words) > 2:
            self._out.append(_W[AUTH_SYNTAX])
            return
        mechanism = words[0].upper()
        if mechanism not in sasl.MECHANISMS:
            self._out.append(_W[AUTH_MECHANISM])
            return
        self._sasl = (mechanism, None)
        self._state = _SASL
        if len(words) == 2:
            self._sasl_step(sasl.response(words[1].encode("ascii")))
        else:
            self._challenge(b"" if mechanism == "PLAIN" else sasl.LOGIN_USERNAME)

    def _challenge(self, prompt: bytes) -> None:
        self._out.append(sasl.challenge(prompt) + _CRLF)

    def _sasl_response(self, line: bytes) -> None:
        if len(line) > sasl.MAX_AUTH_LINE:
            self._end_sasl(_W[AUTH_LINE_TOO_LONG])
            return
        self._sasl_step(sasl.response(line))

    def _sasl_step(self, response: bytes | sasl.SaslProblem) -> None:
        """PLAIN or LOGIN, one response at a time (auth.py reads them)."""
        assert self._sasl is not None
        if isinstance(response, sasl.SaslProblem):
            self._end_sasl(_W[_SASL_REPLY[response]])
            return
        mechanism, name = self._sasl
        if mechanism == "PLAIN":
            credentials = sasl.plain(response)
        elif name is None:
            login = sasl.login_name(response)
            if isinstance(login, sasl.SaslProblem):
                self._end_sasl(_W[_SASL_REPLY[login]])
                return
            self._sasl = (mechanism, login)
            self._challenge(sasl.LOGIN_PASSWORD)
            return
        else:
            credentials = sasl.login_password(name, response)
        if isinstance(credentials, sasl.SaslProblem):
            self._end_sasl(_W[_SASL_REPLY[credentials]])
            return
        self._end_sasl(None)
        assert self._server.authenticator is not None
        self._wait(self._check_credentials(self._server.authenticator, credentials))

    def _end_sasl(self, reply: bytes | None) -> None:
        self._sasl = None
        self._state = _COMMAND
        if reply is not None:
            self._out.append(reply)

    async def _check_credentials(self, authenticator: Authenticator, credentials: Credentials) -> bytes:
        try:
            outcome = await authenticator.authenticate(self._peer, credentials)
        except Exception:
            # never a permanent refusal for our own failure, never internals (STYLE 4)
            log.exception("smtp.auth_failed", peer=self._peer)
            return _W[AUTH_UNAVAILABLE]
        if isinstance(outcome, Authenticated):
            self._authenticated = outcome.identity
            self._info = None
            return _W[AUTH_OK]
        return _W[_AUTH_REPLY[outcome]]


_COMMANDS = {
    b"HELO": Session._helo_cmd,
    b"EHLO": Session._ehlo_cmd,
    b"MAIL": Session._mail_cmd,
    b"RCPT": Session._rcpt_cmd,
    b"DATA": Session._data_cmd,
    b"BDAT": Session._bdat_cmd,
    b"RSET": Session._rset_cmd,
    b"NOOP": Session._noop_cmd,
    b"QUIT": Session._quit_cmd,
    b"VRFY": Session._vrfy_cmd,
    b"EXPN": Session._expn_cmd,
    b"HELP": Session._help_cmd,
    b"STARTTLS": Session._starttls_cmd,
    b"AUTH": Session._auth_cmd,
}

COMMAND_NAMES = tuple(sorted(verb.decode("ascii") for verb in _COMMANDS))


def line_limits(max_command_line: int) -> dict[bytes, int]:
    """The longest command line per verb, without its CRLF, where it differs from ``max_command_line``."""
    command = max_command_line - 2
    return {b"MAIL": command + _SIZE_PARAMETER_ROOM, b"AUTH": sasl.MAX_AUTH_LINE - 2}


def _peer_address(peername: Any) -> str:
    # (host, port) for IPv4, (host, port, flowinfo, scope) for IPv6.
    if isinstance(peername, tuple) and peername:
        return str(peername[0])
    return "unknown"
