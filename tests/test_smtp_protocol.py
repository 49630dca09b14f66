"""The bytes-level protocol layer (gateway/smtp/session.py): what it decides that aiosmtpd did not.

Command lines ending in a bare LF, bounded memory against over-long lines
and clients that send without reading, pipelined commands answered after a
half-close, the command timeout against a client that trickles bytes, and
arbitrary byte streams, fed in arbitrary pieces to a session on a fake
transport (no sockets: hundreds of conversations a second), which must
always get well-formed replies and never an error in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.smtp import SmtpLimits, SmtpServer, start_smtp
from gateway.smtp.session import Session
from tests.smtp_client import RawSmtp, stuff
from tests.test_smtp_edge import (
    FAST,
    HOSTNAME,
    MESSAGE,
    OURS,
    SENDER,
    RecordingPipeline,
    transaction,
)


@pytest.fixture
async def edge() -> AsyncIterator[Callable[..., Any]]:
    servers: list[SmtpServer] = []

    async def start(pipeline: RecordingPipeline, limits: SmtpLimits = FAST) -> SmtpServer:
        server = await start_smtp(pipeline, limits, host="127.0.0.1", port=0, hostname=HOSTNAME)
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close(grace=0.5)


# -- bare LF and CR in the command phase --


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(b"NOOP\n", id="bare-LF-end"),
        pytest.param(b"MAIL FROM:<alice@sender.test>\n", id="mail-bare-LF"),
        pytest.param(b"NOOP\rRSET\r\n", id="bare-CR-inside"),
        pytest.param(b"NOOP\r\r\n", id="CR-CR-LF"),
    ],
)
async def test_a_command_line_with_a_bare_cr_or_lf_is_refused_and_not_run(edge, line: bytes) -> None:
    # RFC 5321 2.3.8: the edge is strict in both phases (the old aiosmtpd edge
    # took a bare LF as a line end in the command phase).
    server = await edge(RecordingPipeline())
    client = await RawSmtp.session(server.port)
    await client.send(line)
    refused = await client.reply()
    assert (refused.code, refused.enhanced) == (500, "5.5.2")
    # Nothing of it ran: no transaction was opened.
    assert (await client.command(f"RCPT TO:<{OURS}>")).code == 503
    assert (await client.command("NOOP")).code == 250
    await client.close()


# -- bounded memory --


async def test_a_command_line_of_8_mb_is_refused_with_bounded_memory(edge) -> None:
    server = await edge(RecordingPipeline(), SmtpLimits(command_timeout=30))
    wire = b"MAIL FROM:<" + b"a" * (8 * 1024 * 1024) + b"@sender.test>\r\nNOOP\r\n"

    def talk() -> bytes:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            replies = sock.makefile("rb")
            replies.readline()
            sock.sendall(b"EHLO client.test\r\n")
            while replies.readline()[3:4] == b"-":
                pass
            sock.sendall(wire)
            return replies.readline() + replies.readline()

    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        heard = await asyncio.to_thread(talk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert heard.startswith(b"500 5.5.2") and heard.endswith(b"250 2.0.0 OK\r\n")
    # Reads of at most 256 KiB each, none kept: a constant (a read, the buffer it joins,
    # the client thread's own buffers: about 1 MiB measured), far less than the 8 MB line.
    assert peak - before < 2 * 1024 * 1024


async def test_a_client_that_sends_without_reading_is_stopped(edge) -> None:
    # RFC 2920 lets a client send commands without waiting; one that never
    # reads its replies must not make the server buffer without bound.
    pipeline = RecordingPipeline(gate=asyncio.Event())
    server = await edge(pipeline, SmtpLimits(command_timeout=30, data_timeout=30))
    client = await RawSmtp.session(server.port)
    await transaction(client)
    await client.send(stuff(MESSAGE))
    await asyncio.wait_for(pipeline.started.wait(), 5)
    # The pipeline holds the session; the client pipelines on and on.
    flood = b"NOOP\r\n" * (8 * 1024 * 1024 // 6)
    client.writer.write(flood)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(client.writer.drain(), 1.0)  # the server stopped reading
    (session,) = server._sessions
    assert len(session._buffer) < 512 * 1024
    pipeline.gate.set()
    assert (await client.reply()).code == 250
    # The flood is answered in order once the client reads again.
    noops = len(flood) // 6
    answers = await asyncio.wait_for(client.reader.readexactly(noops * len(b"250 2.0.0 OK\r\n")), 30)
    assert answers == b"250 2.0.0 OK\r\n" * noops
    assert (await client.command("QUIT")).code == 221
    await client.close()


# -- half-close, timeouts, unknown commands --


async def test_commands_sent_before_a_half_close_are_all_answered(edge) -> None:
    pipeline = RecordingPipeline(gate=asyncio.Event())
    server = await edge(pipeline)
    client = await RawSmtp.session(server.port)
    await transaction(client)
    await client.send(stuff(MESSAGE) + b"NOOP\r\nQUIT\r\n")
    await asyncio.wait_for(pipeline.started.wait(), 5)
    client.writer.write_eof()
    await asyncio.sleep(0.05)
    pipeline.gate.set()
    assert [(await client.reply()).code for _ in range(3)] == [250, 250, 221]
    assert await client.read_to_end() == b""
    await client.close()


async def test_the_command_timeout_counts_from_the_last_command_not_the_last_byte(edge) -> None:
    server = await edge(RecordingPipeline())
    client = await RawSmtp.session(server.port)
    started = time.monotonic()
    heard = b""
    for byte in b"NOOP NOOP NOOP NOOP":  # a byte every 0.1 s, never a whole line
        client.writer.write(bytes([byte]))
        with contextlib.suppress(TimeoutError):
            heard = await asyncio.wait_for(client.reader.read(1000), 0.1)
        if heard:
            break
    assert heard.startswith(b"421 4.4.2")
    assert time.monotonic() - started < 1.2  # FAST: 0.5 s
    await client.close()


async def test_too_many_unknown_commands_end_the_session(edge) -> None:
    server = await edge(RecordingPipeline())
    client = await RawSmtp.session(server.port)
    for _ in range(4):
        assert (await client.command("GET / HTTP/1.1")).code == 500
    bye = await client.command("Host: mx.hisp.test")
    assert (bye.code, bye.enhanced) == (421, "4.7.0")
    assert await client.read_to_end() == b""
    await client.close()


async def test_every_reply_carries_an_enhanced_code(edge) -> None:
    # RFC 2034 3: advertised, so every reply but the greeting, HELO/EHLO's and 354.
    server = await edge(RecordingPipeline())
    client = await RawSmtp.session(server.port)
    assert "ENHANCEDSTATUSCODES" in (await client.command("EHLO client.test")).lines
    for line in ("NOOP", "RSET", "VRFY bob", "EXPN all", "HELP", "FOO", "MAIL FROM:<a@@b>",
                 "RCPT TO:<bob@hisp.test>", "DATA", "STARTTLS", "AUTH PLAIN", f"MAIL FROM:<{SENDER}> SIZE=x",
                 f"MAIL FROM:<{SENDER}>", "RCPT TO:<nobody@hisp.test>", f"RCPT TO:<{OURS}>", "QUIT"):
        reply = await client.command(line)
        assert reply.enhanced[:1] == str(reply.code)[:1], (line, reply)
    await client.close()


async def test_helo_sessions_take_no_esmtp_parameters(edge) -> None:
    server = await edge(RecordingPipeline())
    client = await RawSmtp.connect(server.port)
    assert (await client.reply()).code == 220
    assert (await client.command("HELO old.client.test")).lines == (HOSTNAME,)
    assert (await client.command(f"MAIL FROM:<{SENDER}> SIZE=10")).code == 501
    assert (await client.command(f"MAIL FROM:<{SENDER}>")).code == 250
    await client.close()


# -- arbitrary bytes, in arbitrary pieces, on a fake transport --


class _Transport(asyncio.Transport):
    """Just enough of a transport for one Session: what it writes, whether it closed or paused."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False
        self.paused = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("192.0.2.7", 2525) if name == "peername" else default


_WORDS = st.sampled_from(
    [b"EHLO c.test", b"HELO x", f"MAIL FROM:<{SENDER}>".encode(), b"MAIL FROM:<>",
     b"MAIL FROM:<a@b> SIZE=99999999999", b"MAIL FROM:<@r:a@[1.2.3.4]> BODY=8BITMIME",
     f"RCPT TO:<{OURS}>".encode(), b"RCPT TO:<victim@elsewhere.example>", b'RCPT TO:<"q"@hisp.test>',
     b"DATA", b".", b"..", b"RSET", b"NOOP", b"VRFY bob", b"HELP", b"AUTH PLAIN AGEAYg==", b"AUTH LOGIN",
     b"STARTTLS", b"QUIT x", b"Subject: x", b"x" * 600]
)
_NOISY = b"\r\n.<>:@ a\x00\xff"
_NOISE = st.binary(max_size=12).map(lambda b: bytes(_NOISY[x % len(_NOISY)] for x in b))
_ENDS = st.sampled_from([b"\r\n", b"\n", b"\r", b"\r\n.\r\n", b"\n.\n"])
_STREAM = st.lists(st.tuples(st.one_of(_WORDS, _NOISE), _ENDS).map(b"".join), min_size=1, max_size=25).map(
    b"".join
)


@settings(max_examples=300, deadline=None)
@given(stream=_STREAM, cuts=st.lists(st.integers(min_value=1, max_value=40), max_size=20))
def test_any_bytes_in_any_pieces_get_well_formed_replies_and_no_error(stream: bytes, cuts: list[int]) -> None:
    async def talk() -> tuple[bytes, RecordingPipeline, list[dict[str, Any]]]:
        pipeline = RecordingPipeline()
        limits = SmtpLimits(max_message_size=64, max_recipients=2, max_command_line=64)
        server = SmtpServer(pipeline, limits, hostname=HOSTNAME, tls_context=None, loop=asyncio.get_running_loop())
        transport = _Transport()
        session = Session(server)
        with structlog.testing.capture_logs() as logs:
            session.connection_made(transport)
            rest = stream + b"\r\n.\r\nQUIT\r\n"
            for cut in [*cuts, len(rest)]:
                if transport.closed:
                    break
                session.data_received(rest[:cut])
                rest = rest[cut:]
                for _ in range(5):
                    await asyncio.sleep(0)  # the pipeline's answers
            session.connection_lost(None)
        return bytes(transport.written), pipeline, logs

    heard, pipeline, logs = asyncio.run(talk())
    assert [entry for entry in logs if entry["log_level"] == "error"] == []
    lines = heard.split(b"\r\n")
    assert lines[-1] == b""
    for line in lines[:-1]:
        assert line[:3].isdigit() and line[3:4] in (b" ", b"-"), line
    for message in pipeline.messages:
        assert message.data.count(b"\n") == message.data.count(b"\r") == message.data.count(b"\r\n")
        assert len(message.data) <= 64
